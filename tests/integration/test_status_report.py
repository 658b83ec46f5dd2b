"""`hyperfleet status` and `hyperfleet report` on an experiment that really ran on the real server."""

import csv
import json
import subprocess
import sys
import time

import pytest
import yaml

from hyperfleet.status import experiment_status
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_ERROR, JobStore
from tests.helpers import REPO, enqueue_slow_trial, jobs, run_cli, start_worker, stop_all, wait_for, worker_env

SPEC = {"name": "mixed", "objective": "tests.objectives:mixed", "algo": "rand", "max_evals": 16, "seed": 3,
        "parallelism": 2, "space": {"x": {"uniform": [-2, 6]}, "lr": {"loguniform": [1e-5, 1e-1]},
                                    "opt": {"choice": ["sgd", "adam"]}}}


def hyperfleet(*args, **kw):
    return subprocess.run([sys.executable, "-m", "hyperfleet", *args], env=worker_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture
def finished_experiment(mongo_url, tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    workers = [start_worker(mongo_url, "--log-level", "warning") for _ in range(2)]
    try:
        driver = run_cli(mongo_url, path, stdout=subprocess.PIPE, text=True)
        driver.communicate(timeout=120)
    finally:
        stop_all(workers)
    docs = list(jobs(mongo_url).find({"exp_key": "mixed"}))
    assert len(docs) == 16
    return docs


@pytest.mark.timeout(180)
def test_status_counts_best_rate_and_eta(mongo_url, finished_experiment):
    docs = finished_experiment
    done = [d for d in docs if d["state"] == JOB_STATE_DONE]
    errors = [d for d in docs if d["state"] == JOB_STATE_ERROR]
    assert done and errors  # x > 4 fails: a quarter of the range
    store = JobStore.connect(mongo_url)
    status = experiment_status(store, "mixed")
    store.close()
    best = min(done, key=lambda d: d["result"]["loss"])
    assert (status.done, status.error, status.new, status.running) == (len(done), len(errors), 0, 0)
    assert status.max_evals == 16 and status.complete and status.eta_seconds == 0
    assert status.best_loss == best["result"]["loss"] and status.best_tid == best["tid"]
    assert status.trials_per_minute > 0

    table = hyperfleet("status", "--mongo", mongo_url)
    assert table.returncode == 0 and "mixed" in table.stdout and "done" in table.stdout
    as_json = json.loads(hyperfleet("status", "mixed", "--mongo", mongo_url, "--json").stdout)
    assert as_json[0]["finished"] == 16 and as_json[0]["best_loss"] == best["result"]["loss"]
    watched = hyperfleet("status", "mixed", "--watch", "--mongo", mongo_url, "--interval-seconds", "0.2")
    assert watched.returncode == 0 and "16/16" in watched.stdout

    missing = hyperfleet("status", "nope", "--mongo", mongo_url)
    assert missing.returncode == 1 and "no experiment 'nope'" in missing.stderr


@pytest.mark.timeout(180)
def test_watch_follows_a_running_experiment_and_exits_when_it_completes(mongo_url, tmp_path):
    """--watch on an experiment that is still running: it stays while trials are open and exits 0 once
    the last one finishes, its last line the complete count."""
    spec = {"name": "watched", "objective": "tests.objectives:slow_quadratic", "algo": "rand", "max_evals": 6,
            "parallelism": 1, "space": {"x": {"uniform": [0, 6]}, "sleep": {"choice": [0.4]}}}
    (path := tmp_path / "watched.yaml").write_text(yaml.safe_dump(spec))
    worker = start_worker(mongo_url, "--log-level", "warning")
    driver = run_cli(mongo_url, path, stdout=subprocess.DEVNULL)
    try:
        collection = jobs(mongo_url)
        wait_for(lambda: collection.count_documents({"exp_key": "watched"}) > 0, 60)
        watch = subprocess.Popen([sys.executable, "-m", "hyperfleet", "status", "watched", "--watch", "--mongo", mongo_url,
                                  "--interval-seconds", "0.2"], env=worker_env(), cwd=REPO, stdout=subprocess.PIPE, text=True)
        finished_while_watched = []
        while watch.poll() is None:
            finished_while_watched.append(collection.count_documents({"exp_key": "watched", "state": JOB_STATE_DONE}))
            time.sleep(0.1)
        # it exited: every trial is done (an early exit would leave some open right now)
        assert collection.count_documents({"exp_key": "watched", "state": JOB_STATE_DONE}) == 6
        assert min(finished_while_watched) < 6, "the experiment ended before the watch started"
        assert driver.wait(60) == 0
        out, _ = watch.communicate(timeout=30)
        assert watch.returncode == 0 and "6/6" in out, out
        assert collection.count_documents({"exp_key": "watched", "state": JOB_STATE_DONE}) == 6
    finally:
        driver.kill()
        stop_all([worker])


def test_status_json_says_what_a_script_sizing_the_workers_needs(store, mongo_url):
    for _ in range(3):
        enqueue_slow_trial(store, "sizing")
    store.reserve("test:1", {"host": "test", "pid": 1}, "sizing")
    (status,) = json.loads(hyperfleet("status", "sizing", "--mongo", mongo_url, "--json").stdout)
    assert (status["queued"], status["running"], status["open"], status["complete"]) == (2, 1, 3, False)


@pytest.mark.timeout(180)
def test_report_writes_plots_page_and_exports(mongo_url, finished_experiment, tmp_path):
    out = tmp_path / "report"
    result = hyperfleet("report", "mixed", "--mongo", mongo_url, "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert len(rows) == 16 and {"tid", "state", "loss", "x", "lr", "opt"} <= set(rows[0])
    assert {r["opt"] for r in rows} <= {"sgd", "adam"} and all(1e-5 <= float(r["lr"]) <= 1e-1 for r in rows)
    failed = [r for r in rows if r["state"] == "error"]
    assert failed and all(float(r["x"]) > 4 and "out of range" in r["error"] and r["loss"] == "" for r in failed)
    exported = json.loads((out / "trials.json").read_text())
    assert exported["max_evals"] == 16 and len(exported["trials"]) == 16 and exported["spec"]["name"] == "mixed"
    for png in ("loss_by_trial.png", "loss_vs_params.png"):
        data = (out / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<h1>mixed</h1>" in page
    best = min(float(r["loss"]) for r in rows if r["loss"])
    assert f"best loss {best:.6g}" in page

    missing = hyperfleet("report", "nope", "--mongo", mongo_url, "--out", str(tmp_path / "x"))
    assert missing.returncode == 1 and "experiment 'nope' has no trials (experiments: mixed)" in missing.stderr
