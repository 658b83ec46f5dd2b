"""Container objectives on Kubernetes (runtime/hyperfleet/objectives/kubernetes.py): the chart installed with helm
on the tests' single-node cluster, workers running one pod per trial through the Kubernetes API.

- an 8-trial container experiment with 2 workers ends with 8 DONE, each with its log and out/, and
  no trial pod left; a worker pod deleted mid-trial takes its trial pod with it and hands the trial
  back, which is then finished;
- a crashing objective, one that writes no loss.json, one that outlives its timeout and an image that
  isn't there each end ERROR with their reason;
- the calls a worker makes are exactly what the chart's worker Role grants (made here as the workers'
  ServiceAccount, recorded, and compared with the rendered Role);
- an experiment with a pruning rule: its trial pods print progress lines, the worker follows their log,
  and the poor point's pod is deleted within the bound of the decision (watched through the API).
"""

from __future__ import annotations

import datetime
import json
import threading
import time
import uuid

import pytest

from hyperfleet.store import attachment_entries
from tests.chart.test_chart import CHART
from tests.e2e.kube_scenario import Scenario, Stack
from testbed.kube_server import wait_until

RELEASE = "pods-hyperfleet"  # the helm release and the objects' prefix, as the Pulumi targets name them
MAX_EVALS = 8
SLEEP_SECONDS = 4  # how long a pods-ok trial's objective runs: long enough to delete its worker while it runs
OBJECTIVE = {"image": "hyperfleet/example-objective:test", "pull": "never"}
SPACE = {"x": {"uniform": [-5, 10]}, "y": {"uniform": [0, 15]}}
# one trial each, retries off: each ends ERROR with its reason
BROKEN = {
    "pods-crash": ({"env": {"MODE": "crash"}}, "exited with code 3"),
    "pods-no-loss": ({"env": {"MODE": "no-loss"}}, "exited without writing /hyperfleet/loss.json"),
    "pods-hang": ({"env": {"MODE": "hang"}, "timeout_seconds": 3}, "ran longer than the trial timeout of 3s"),
    "pods-no-image": ({"image": "hyperfleet/no-such-image:test"}, "could not be pulled: ErrImageNeverPull"),
    # the kubelet tries a registry (unreachable here, or without that image elsewhere)
    "pods-unpullable": ({"image": "hyperfleet/no-such-image:test", "pull": "missing"},
                        ("could not be pulled: ErrImagePull", "could not be pulled: ImagePullBackOff")),
}


# the grid's first two points are the same good point (equal curves: neither is worse than the other),
# queued one after the other (parallelism 1: the third is queued once the second runs, and waits for a
# free worker); the third (x=-5, far worse) is worse than the median of the others at a step after the
# warm-up, and its pod is deleted on the spot
PRUNED = {"name": "pods-pruned", "objective": {**OBJECTIVE, "env": {"STEPS": "10", "STEP_SECONDS": "0.5"}},
          "algo": "grid", "parallelism": 1, "pruning": {"rule": "median", "warmup_steps": 2, "min_trials": 1},
          "space": {"x": {"choice": [3.14159, 3.14159, -5.0]}, "y": 2.275}}


def values(runtime_image: str, mongo_image: str) -> dict:
    def image(ref):
        repository, tag = ref.rsplit(":", 1)
        return {"repository": repository, "tag": tag}

    experiments = [{"name": "pods-ok", "objective": {**OBJECTIVE, "env": {"SLEEP_SECONDS": str(SLEEP_SECONDS)}}, "algo": "rand",
                    "max_evals": MAX_EVALS, "parallelism": 2, "space": SPACE}]
    experiments += [{"name": name, "objective": {**OBJECTIVE, **extra}, "algo": "rand", "max_evals": 1, "space": SPACE}
                    for name, (extra, _) in BROKEN.items()]
    experiments.append(PRUNED)
    return {
        "fullnameOverride": RELEASE,
        "image": {**image(runtime_image), "pullPolicy": "IfNotPresent"},
        "mongo": {"image": {**image(mongo_image), "pullPolicy": "IfNotPresent"}, "persistence": {"size": "1Gi"}},
        "workers": {"replicas": 2, "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
        "monitor": {"graceSeconds": 5, "intervalSeconds": 0.5},
        "driver": {"resources": {"requests": {"cpu": "50m", "memory": "128Mi"}}},
        "experiments": experiments,
    }


@pytest.fixture(scope="module")
def release(kube_cluster, helm, objective_image, docker_worker_image, test_mongo_image, tmp_path_factory):
    kube_cluster.load_images([objective_image])
    tmp_path = tmp_path_factory.mktemp("trial-pods")
    namespace = "pods-" + uuid.uuid4().hex[:8]
    values_path = tmp_path / "values.json"  # JSON quotes every key: PyYAML would write y unquoted (issue of YAML 1.1)
    values_path.write_text(json.dumps(values(docker_worker_image, test_mongo_image)))
    target = ["--kubeconfig", kube_cluster.kubeconfig, "--kube-context", kube_cluster.context, "-n", namespace]
    helm("install", RELEASE, str(CHART), "-f", str(values_path), "--create-namespace", "--wait", "--timeout", "3m",
         *target)
    scenario = Scenario(Stack(name="pods", namespace=namespace, release=RELEASE, exp_key="pods-ok",
                              max_evals=MAX_EVALS), pulumi=None, kubeconfig=kube_cluster.kubeconfig,
                        context=kube_cluster.context, node_exec=[])
    yield scenario
    helm("uninstall", RELEASE, "--wait", *target, check=False)
    scenario.kubectl("delete", "namespace", namespace, "--wait=false", "-n", "default", check=False)


def trial_pods(scenario: Scenario) -> list[dict]:
    return scenario.get("pods", "-l", "app.kubernetes.io/component=trial")["items"]


class PodDeletions(threading.Thread):
    """Watches the trial pods of one experiment through the API: when each (by tid) left it."""

    def __init__(self, scenario: Scenario, exp_key: str):
        super().__init__(daemon=True)
        from kubernetes import client, config

        self.api = client.CoreV1Api(config.new_client_from_config(config_file=scenario.kubeconfig,
                                                                  context=scenario.context))
        self.namespace, self.exp_key = scenario.stack.namespace, exp_key
        self.deleted: dict[int, datetime.datetime] = {}
        self.ended: Exception | None = None

    def run(self):
        from kubernetes import watch

        try:
            for event in watch.Watch().stream(self.api.list_namespaced_pod, self.namespace,
                                              label_selector="app.kubernetes.io/component=trial"):
                pod = event["object"]
                if event["type"] == "DELETED" and (pod.metadata.annotations or {}).get(
                        "hyperfleet.io/exp-key") == self.exp_key:
                    self.deleted[int(pod.metadata.labels["hyperfleet.io/tid"])] = datetime.datetime.now(
                        datetime.timezone.utc)
        except Exception as err:  # noqa: BLE001 - the namespace goes at the end of the module
            self.ended = err


def events_of(doc: dict, worker: str) -> list[str]:
    """The events ``worker`` (a worker pod) wrote into the trial's history, or the monitor wrote for it."""
    return [e["event"] for e in doc["hyperfleet"].get("history", []) if (e.get("owner") or "").startswith(worker + ":")]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_trial_pods_run_the_experiment_report_each_failure_and_go_with_their_worker(release):
    scenario = release
    deletions = PodDeletions(scenario, PRUNED["name"])
    deletions.start()
    with scenario.database() as jobs:
        # a worker pod deleted mid-trial: its trial pod goes, its trial is handed back. A trial that ended
        # before the deletion reached its worker (the kubelet is slow on a loaded machine) tests nothing:
        # the next trial pod is tried, up to 3 times
        tried = set()
        for _ in range(3):
            pod = wait_until(lambda: next((p for p in trial_pods(scenario) if p["status"].get("phase") == "Pending"
                                           and p["metadata"]["annotations"]["hyperfleet.io/exp-key"] == "pods-ok"
                                           and p["metadata"]["labels"]["hyperfleet.io/worker-pod"] not in tried),
                                          None), 120, "a trial pod of pods-ok running its objective")
            worker = pod["metadata"]["labels"]["hyperfleet.io/worker-pod"]
            tid = int(pod["metadata"]["labels"]["hyperfleet.io/tid"])
            tried.add(worker)
            started = time.monotonic()
            scenario.kubectl("delete", "pod", worker, "--wait=false")
            wait_until(lambda pod=pod: pod["metadata"]["name"] not in {p["metadata"]["name"] for p in trial_pods(scenario)},
                       90, f"the trial pod of the deleted worker {worker} to go")
            gone_seconds = time.monotonic() - started
            # the worker writes its hand-back as it stops (or the monitor its requeue): an event of this worker
            # in the trial's history (which may hold an earlier holder's already), unless it finished the trial first
            doc = wait_until(lambda tid=tid, worker=worker: (d := jobs.find_one({"exp_key": "pods-ok", "tid": tid})) and (
                events_of(d, worker) or (d["state"] == 2 and d["hyperfleet"]["worker"].get("pod") == worker))
                and d, 90, f"the hand-back of trial {tid}, or its end on {worker}")
            if events_of(doc, worker):
                break
        else:
            pytest.fail(f"each of the 3 trials ended before its worker's deletion reached it: {sorted(tried)}")
        assert events_of(doc, worker)[0] in ("handed back", "requeued"), doc["hyperfleet"]["history"]

        # the broken experiments' drivers exit 1 (no trial succeeded) and are retried: only pods-ok completes
        scenario.kubectl("wait", "--for=condition=complete", "job", "-l", "hyperfleet.io/exp-key=pods-ok",
                         "--timeout=600s", timeout=620)
        done = list(jobs.find({"exp_key": "pods-ok"}))
        assert [d["state"] for d in done] == [2] * MAX_EVALS, [(d["tid"], d["state"], d.get("error")) for d in done]
        assert len({d["tid"] for d in done}) == MAX_EVALS
        for d in done:
            assert {name for name, _ in attachment_entries(d)} == {"container.log", "out.tar"}, d["tid"]
            assert isinstance(d["result"]["loss"], float) and "branin_x" in d["result"]
        # reserved -> result written, less the objective's own 2 s: what a trial pod costs
        overheads = sorted((d["refresh_time"] - d["book_time"]).total_seconds() - SLEEP_SECONDS for d in done)
        # the handed-back trial ran again, on another worker, to its end
        again = jobs.find_one({"exp_key": "pods-ok", "tid": tid})
        assert again["hyperfleet"]["attempts"] >= 2 and again["hyperfleet"]["worker"]["pod"] != worker, \
            again["hyperfleet"]

        for name, (_, reason) in BROKEN.items():
            trial = wait_until(lambda name=name: jobs.find_one({"exp_key": name, "state": 3}), 120,
                               f"the trial of {name} to fail")
            reasons = reason if isinstance(reason, tuple) else (reason,)
            assert any(r in trial["error"][1] for r in reasons), (name, trial["error"])
        crash = jobs.find_one({"exp_key": "pods-crash", "state": 3})
        assert "training diverged" in crash["error"][1]  # the log's last lines are in the message

        # the pruning experiment: the poor point stopped after the warm-up, its pod deleted at once
        pruned_run = wait_until(lambda: (lambda docs: len(docs) == 3 and all(d["state"] == 2 for d in docs) and docs)(
            list(jobs.find({"exp_key": PRUNED["name"]}, sort=[("tid", 1)]))), 300, "the pruning experiment to finish")
        good, bad = pruned_run[:2], pruned_run[2]
        assert bad["misc"]["vals"] == {"x": [2]} and bad["result"]["pruned"] is True, bad
        assert bad["hyperfleet"]["pruned"]["rule"] == "median" and 2 <= bad["hyperfleet"]["pruned"]["step"] < 9
        assert [("pruned" in d["result"], d["hyperfleet"]["progress"]["steps"] >= 7) for d in good] == [(False, True)] * 2, \
            [(d["result"], d["hyperfleet"].get("progress")) for d in good]
        wait_until(lambda: bad["tid"] in deletions.deleted, 30, f"the pruned trial pod's deletion to be seen ({deletions.ended})")
        pruned_gone = (deletions.deleted[bad["tid"]]
                       - bad["hyperfleet"]["pruned"]["at"].replace(tzinfo=datetime.timezone.utc)).total_seconds()
        assert pruned_gone < 2.5, pruned_gone

    wait_until(lambda: not trial_pods(scenario), 30, "no trial pod left")
    print(f"\ntrial pods: worker pod deleted to its trial pod gone {gone_seconds:.1f} s; per-trial overhead "
          f"(reserved to result, less the objective) median {overheads[len(overheads) // 2]:.2f} s, "
          f"max {overheads[-1]:.2f} s; a pruned trial's pod gone {pruned_gone:.2f} s after the decision")


class Recording:
    """A CoreV1Api that notes which API calls the trial-pod code makes."""

    VERBS = {"create_namespaced_pod": ("pods", "create"), "read_namespaced_pod": ("pods", "get"),
             "list_namespaced_pod": ("pods", "list"), "delete_namespaced_pod": ("pods", "delete"),
             "read_namespaced_pod_log": ("pods/log", "get")}

    def __init__(self, api):
        self.api, self.used = api, set()

    def __getattr__(self, name):
        self.used.add(self.VERBS[name])  # a call not in the table fails here: add it, and to PERMISSIONS
        return getattr(self.api, name)


def as_service_account(scenario: Scenario, account: str):
    """A CoreV1Api authenticated as ``account`` of the release's namespace (a token from TokenRequest)."""
    from kubernetes import client, config

    token = scenario.kubectl("create", "token", account).stdout.strip()
    configuration = client.Configuration()
    config.load_kube_config(config_file=scenario.kubeconfig, context=scenario.context,
                            client_configuration=configuration)
    configuration.cert_file = configuration.key_file = None
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.CoreV1Api(client.ApiClient(configuration))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_workers_role_grants_exactly_the_calls_trial_pods_make(release, monkeypatch):
    from hyperfleet.objectives import ContainerObjective
    from hyperfleet.objectives import kubernetes as trial_pods
    from hyperfleet.objectives.contract import ContainerTrialError

    scenario = release
    role = scenario.get("role", f"{scenario.stack.release}-worker")
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {(r, v) for r, verbs in trial_pods.PERMISSIONS.items() for v in verbs}

    # a worker that stays: a trial pod owned by one being deleted would be collected with it
    worker = next(p for p in scenario.pods("worker") if not p["metadata"].get("deletionTimestamp"))
    monkeypatch.setenv(trial_pods.POD_NAME_ENV, worker["metadata"]["name"])
    monkeypatch.setenv(trial_pods.POD_UID_ENV, worker["metadata"]["uid"])
    monkeypatch.setenv(trial_pods.POD_NAMESPACE_ENV, scenario.stack.namespace)
    monkeypatch.setenv(trial_pods.RUNTIME_IMAGE_ENV, worker["spec"]["containers"][0]["image"])
    api = Recording(as_service_account(scenario, f"{scenario.stack.release}-worker"))
    attachments: dict = {}
    objective = ContainerObjective(image=OBJECTIVE["image"], pull="never")
    result = trial_pods.run_trial_pod(objective, {"x": 3.14159, "y": 2.275}, "rbac", 1, attachments, "rbac:1", api=api)
    assert abs(result["loss"] - 0.397887) < 1e-3 and set(attachments) == {"container.log", "out.tar"}
    with pytest.raises(ContainerTrialError, match="ran longer than the trial timeout"):
        trial_pods.run_trial_pod(ContainerObjective(image=OBJECTIVE["image"], pull="never", env=(("MODE", "hang"),),
                                                    timeout_seconds=2), {"x": 0, "y": 0}, "rbac", 2, {}, "rbac:1",
                                 api=api)
    assert trial_pods.remove_owned_pods("rbac:1", api=api) == 0
    assert api.used == granted
