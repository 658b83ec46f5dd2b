"""Container objectives on the real dockerd: params.json in, loss.json out, logs and out/ kept."""

import datetime
import io
import re
import subprocess
import tarfile
import threading
import types
import uuid

import pytest
import yaml

from hyperfleet.contract import EXP_KEY_LABEL, OWNER_LABEL
from hyperfleet.objectives import ContainerObjective
from hyperfleet.objectives import docker as docker_objective
from hyperfleet.objectives.abandoned import abandon
from hyperfleet.objectives.contract import ContainerTrialError
from hyperfleet.objectives.docker import remove_owned_containers, run_container_trial
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, JobStore
from tests.helpers import REPO, jobs, run_cli, start_worker, stop_all, trial_containers, wait_for


def experiment_containers(exp_key: str) -> list[str]:
    """This machine's trial containers of ``exp_key``: other files' tests run trial containers at the same time."""
    return trial_containers(f"{EXP_KEY_LABEL}={exp_key}")


@pytest.mark.timeout(120)
def test_one_trial_through_params_and_loss_files(objective_image):
    attachments = {}
    result = run_container_trial(ContainerObjective(image=objective_image, pull="never"), {"x": 3.14159, "y": 2.275},
                                 "unit", 7, attachments)
    assert result["status"] == "ok" and abs(result["loss"] - 0.397887) < 1e-3 and result["branin_x"] == 3.14159
    assert b"trial 7: params" in attachments["container.log"] and b"loss 0.39" in attachments["container.log"]
    with tarfile.open(fileobj=io.BytesIO(attachments["out.tar"])) as tar:
        assert [m.name for m in tar if m.isfile()] == ["out/curve.txt"]
    assert experiment_containers("unit") == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode, message", [
    ("no-loss", "exited without writing /hyperfleet/loss.json; last lines of its log:\n.*without writing a loss"),
    ("crash", "exited with code 3; last lines of its log:\n.*training diverged"),
    ("hang", "ran longer than the trial timeout of 2s and was killed"),
])
def test_a_broken_container_is_an_error_with_its_log_tail(objective_image, mode, message):
    attachments = {}
    objective = ContainerObjective(image=objective_image, env=(("MODE", mode),), timeout_seconds=2, pull="never")
    with pytest.raises(ContainerTrialError, match="(?s)" + message):
        run_container_trial(objective, {"x": 1.0, "y": 1.0}, "unit", 1, attachments)
    assert b"trial 1: params" in attachments["container.log"]
    assert experiment_containers("unit") == []


@pytest.mark.timeout(60)
def test_an_image_that_does_not_exist_is_an_error_with_the_engines_message(objective_image):
    objective = ContainerObjective(image="hyperfleet/no-such-image:1", pull="never")
    with pytest.raises(ContainerTrialError, match="No such image: hyperfleet/no-such-image:1"):
        run_container_trial(objective, {"x": 1.0}, "unit", 1, {})


@pytest.mark.timeout(120)
def test_a_gpu_trial_on_an_engine_without_the_nvidia_toolkit_is_an_error_with_the_engines_message(objective_image):
    """The worker's GPU reaches the engine as a device request (--gpus device=1); this engine has no nvidia device
    driver (no NVIDIA Container Toolkit), so it refuses to start the container, and the trial says so."""
    objective = ContainerObjective(image=objective_image, pull="never")
    with pytest.raises(ContainerTrialError, match=r"refused trial container .*could not select device driver"):
        run_container_trial(objective, {"x": 1.0, "y": 1.0}, "unit", 1, {}, gpu="1")
    assert experiment_containers("unit") == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_container_experiment_end_to_end_with_2_workers(objective_image, mongo_url, tmp_path):
    spec = yaml.safe_load((REPO / "examples/experiments/branin-container.yaml").read_text())
    spec["objective"]["image"] = objective_image
    spec["max_evals"] = 8
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    workers = [start_worker(mongo_url, "--log-level", "warning") for _ in range(2)]
    try:
        driver = run_cli(mongo_url, path, stdout=subprocess.PIPE, text=True)
        out, _ = driver.communicate(timeout=240)
        assert driver.returncode == 0, out
    finally:
        stop_all(workers)
    docs = list(jobs(mongo_url).find({"exp_key": "branin-container"}))
    assert len(docs) == 8 and all(d["state"] == JOB_STATE_DONE for d in docs)
    assert out.startswith("branin-container: 8 trials, 8 done, 0 failed; best loss")
    store = JobStore.connect(mongo_url)
    for doc in docs:
        attachments = store.trial_attachments(doc)
        assert f"trial {doc['tid']}: params".encode() in attachments["container.log"]
        assert "out.tar" in attachments
        assert doc["result"]["branin_x"] == doc["misc"]["vals"]["x"][0]
    store.close()
    assert experiment_containers("branin-container") == []
    # reserved -> result written (the objective itself takes milliseconds): what a trial container costs,
    # the figure tests/e2e/test_kube_trial_pods.py prints for a trial pod
    overheads = sorted((d["refresh_time"] - d["book_time"]).total_seconds() for d in docs)
    print(f"\ntrial containers: per-trial overhead median {overheads[len(overheads) // 2]:.2f} s, "
          f"max {overheads[-1]:.2f} s")


@pytest.mark.timeout(180)
def test_a_container_without_loss_json_is_retried_then_error_with_its_log_kept(objective_image, mongo_url, tmp_path):
    spec = {"name": "broken", "algo": "rand", "max_evals": 1, "retries": 1, "space": {"x": {"uniform": [0, 1]}},
            "objective": {"image": objective_image, "env": {"MODE": "no-loss"}, "pull": "never"}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    workers = [start_worker(mongo_url, "--log-level", "warning")]
    try:
        driver = run_cli(mongo_url, path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = driver.communicate(timeout=120)
    finally:
        stop_all(workers)
    assert driver.returncode == 1 and "1 trials, 0 done, 1 failed; no trial succeeded" in err
    doc = jobs(mongo_url).find_one({"exp_key": "broken"})
    assert doc["state"] == JOB_STATE_ERROR and doc["hyperfleet"]["objective_failures"] == 2
    assert "without writing /hyperfleet/loss.json" in doc["error"][1] and "without writing a loss" in doc["error"][1]
    assert [h["event"] for h in doc["hyperfleet"]["history"]] == ["retried"]
    store = JobStore.connect(mongo_url)
    assert b"finished without writing a loss" in store.trial_attachments(doc)["container.log"]
    store.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["--no-subprocesses", "--subprocesses"])
def test_a_worker_stopped_mid_trial_removes_its_trial_container_and_hands_the_trial_back(objective_image, mongo_url,
                                                                                        tmp_path, mode):
    """The trial container carries the owner of the worker that reserved the trial (from the trial, in
    the worker's thread or its evaluation child), and the worker removes what it owns when it hands back."""
    spec = {"name": "long", "algo": "rand", "max_evals": 1, "space": {"x": {"uniform": [0, 1]}},
            "objective": {"image": objective_image, "env": {"SLEEP_SECONDS": "60"}, "pull": "never"}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    worker = start_worker(mongo_url, mode, "--log-level", "warning")
    driver = run_cli(mongo_url, path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        running = wait_for(lambda: jobs(mongo_url).find_one({"exp_key": "long", "state": JOB_STATE_RUNNING}), 60)
        owner = running["owner"][0]
        container = wait_for(lambda: trial_containers(f"{OWNER_LABEL}={owner}"), 60)
        assert len(container) == 1, container
        assert stop_all([worker]) == [0]
        assert trial_containers(f"{OWNER_LABEL}={owner}") == []
        doc = jobs(mongo_url).find_one({"exp_key": "long"})
        assert doc["state"] == JOB_STATE_NEW and doc["hyperfleet"]["history"][-1]["event"] == "handed back"
    finally:
        stop_all([worker])
        driver.kill()
        driver.wait()


@pytest.mark.timeout(120)
def test_a_container_created_while_its_trial_is_given_up_is_removed_and_the_thread_creates_no_other(objective_image):
    """With --no-subprocesses the worker gives a trial up (abandon) while its thread may be creating the
    trial container, then removes its owner's containers: that create ends first, so the removal finds
    its container, and the abandoned thread is refused any create after."""
    client = docker_objective.docker_client()
    entered, release = threading.Event(), threading.Event()

    def held_create(*args, **kwargs):  # the engine's own create, held until the test lets it go
        entered.set()
        release.wait(60)
        return client.containers.create(*args, **kwargs)

    held = types.SimpleNamespace(images=client.images, containers=types.SimpleNamespace(create=held_create))
    owner = f"abandon:{uuid.uuid4().hex[:8]}"
    objective = ContainerObjective(image=objective_image, env=(("SLEEP_SECONDS", "60"),), pull="never")
    errors = []

    def evaluate(engine):
        try:
            run_container_trial(objective, {"x": 1.0, "y": 1.0}, "abandon", 1, {}, owner=owner, client=engine)
        except ContainerTrialError as err:
            errors.append(str(err))

    thread = threading.Thread(target=evaluate, args=(held,), daemon=True)
    thread.start()
    assert entered.wait(30)
    removed = []
    giving_up = threading.Thread(target=lambda: (abandon(thread), removed.append(remove_owned_containers(owner))))
    giving_up.start()
    giving_up.join(2)  # a removal that did not wait for the create would list no container now
    release.set()
    giving_up.join(60)
    assert removed == [1]
    assert trial_containers(f"{OWNER_LABEL}={owner}") == []
    thread.join(60)
    assert len(errors) == 1 and "refused trial container" in errors[0], errors  # its container went under it

    later = threading.Thread(target=evaluate, args=(client,), daemon=True)
    abandon(later)
    later.start()
    later.join(60)
    assert len(errors) == 2 and re.fullmatch(r"trial container hyperfleet-trial-abandon-1-\w+ not created: "
                                             r"the worker gave its trial up", errors[1]), errors
    assert trial_containers(f"{OWNER_LABEL}={owner}") == []


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", ["--no-subprocesses", "--subprocesses"])
def test_a_pruned_trial_container_is_stopped_and_removed_within_the_bound(objective_image, mongo_url, tmp_path, mode):
    """The example objective prints 20 progress lines, one every 0.3 s. The first trial (near branin's
    optimum) runs whole; the second (a poor point) is worse than the median at step 0 and is pruned:
    its container is removed within a second of the decision (bound 2.5 s), its log is kept, and the
    trial is DONE with its last reported loss, pruned, and not retried."""
    spec = {"name": "pruned", "algo": "grid", "parallelism": 1, "pruning": {"rule": "median", "min_trials": 1}, "retries": 1,
            "space": {"x": {"choice": [3.14159, -5.0]}, "y": 2.275},
            "objective": {"image": objective_image, "env": {"STEPS": "20", "STEP_SECONDS": "0.3"}, "pull": "never"}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**spec, "max_evals": 2}))
    worker = start_worker(mongo_url, mode, "--log-level", "warning")
    driver = run_cli(mongo_url, path, stdout=subprocess.PIPE, text=True)
    try:
        pruned = wait_for(lambda: jobs(mongo_url).find_one({"exp_key": "pruned", "hyperfleet.pruned": {"$exists": True}}),
                          timeout=120)
        wait_for(lambda: trial_containers(f"hyperfleet.tid={pruned['tid']}") == [], timeout=30)
        gone_after = (datetime.datetime.now(datetime.timezone.utc)
                      - pruned["hyperfleet"]["pruned"]["at"].replace(tzinfo=datetime.timezone.utc)).total_seconds()
        out, _ = driver.communicate(timeout=120)
    finally:
        assert stop_all([worker]) == [0]
        driver.kill()
        driver.wait()
    print(f"\npruned trial container ({mode}) gone {gone_after:.2f} s after the decision")
    assert gone_after < 2.5
    assert out.startswith("pruned: 2 trials, 2 done, 0 failed"), out
    docs = {d["tid"]: d for d in jobs(mongo_url).find({"exp_key": "pruned"})}
    good, bad = sorted(docs.values(), key=lambda d: d["tid"])
    assert bad["tid"] == pruned["tid"] and bad["misc"]["vals"] == {"x": [1]}  # the grid's second point
    assert bad["state"] == JOB_STATE_DONE and bad["hyperfleet"]["pruned"]["step"] == 0
    assert bad["hyperfleet"]["attempts"] == 1 and "history" not in bad["hyperfleet"]  # never retried (retries: 1)
    assert bad["result"]["pruned"] is True and bad["result"]["loss"] == bad["hyperfleet"]["progress"]["loss"]
    assert "pruned" not in good["result"] and good["hyperfleet"]["progress"]["steps"] >= 15  # lines read while it ran
    store = JobStore.connect(mongo_url)
    assert b"hyperfleet-progress: {\"step\": 0" in store.trial_attachments(bad)["container.log"]
    assert b"\"step\": 19" not in store.trial_attachments(bad)["container.log"]
    store.close()
    assert experiment_containers("pruned") == []
