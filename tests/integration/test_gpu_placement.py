"""Where each trial ran, shown by `hyperfleet status`, `hyperfleet report`, the dashboard's data and the monitor's
metrics, from two real workers pinned to GPUs 0 and 1 (--gpu) running an experiment on the real server."""

import csv
import io
import json
import socket
import subprocess
import sys

import pytest
import yaml
from prometheus_client import CollectorRegistry
from rich.console import Console

from hyperfleet.contract import RUNNING_PER_GPU_METRIC
from hyperfleet.dashboard.data import row
from hyperfleet.experiment_metrics import ExperimentMetrics
from hyperfleet.status import all_statuses, status_table
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_RUNNING, JobStore
from tests.helpers import REPO, jobs, run_cli, start_worker, stop_all, wait_for, worker_env

SPEC = {"name": "on-gpus", "objective": "tests.objectives:slow_quadratic", "algo": "rand", "max_evals": 4,
        "parallelism": 2, "space": {"x": {"uniform": [-2, 6]}, "sleep": {"choice": [4.0]}}}


def rendered(table) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def hyperfleet(*args):
    return subprocess.run([sys.executable, "-m", "hyperfleet", *args], env=worker_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(180)
def test_status_report_dashboard_and_metrics_say_which_gpu_ran_each_trial(mongo_url, tmp_path):
    (path := tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    host = socket.gethostname()
    on = {gpu: f"{host} gpu {gpu}" for gpu in ("0", "1")}
    workers = [start_worker(mongo_url, "--gpu", gpu, "--log-level", "warning") for gpu in on]
    driver = run_cli(mongo_url, path, stdout=subprocess.PIPE, text=True)
    store = JobStore.connect(mongo_url)
    try:
        collection = jobs(mongo_url)
        running = wait_for(lambda: (lambda docs: len(docs) == 2 and docs)(
            list(collection.find({"exp_key": "on-gpus", "state": JOB_STATE_RUNNING}))), timeout=60, step=0.05)
        assert sorted(row(d)["ran_on"] for d in running) == sorted(on.values())  # the dashboard's trial rows
        status = json.loads(hyperfleet("status", "on-gpus", "--mongo", mongo_url, "--json").stdout)
        registry = CollectorRegistry()
        ExperimentMetrics(registry).refresh(store)
        per_gpu = {gpu: registry.get_sample_value(RUNNING_PER_GPU_METRIC, {"host": host, "gpu": gpu}) for gpu in on}
        table = rendered(status_table(all_statuses(store, "on-gpus")))
        driver.communicate(timeout=120)
        # read while both trials ran (each takes 4 s)
        assert status[0]["running_per_gpu"] == {on["0"]: 1, on["1"]: 1}, status
        assert per_gpu == {"0": 1.0, "1": 1.0}
        assert f"running per GPU: on-gpus: {on['0']} (1), {on['1']} (1)" in table, table
        assert "running per GPU" not in rendered(status_table(all_statuses(store, "on-gpus")))  # finished
        ExperimentMetrics(registry := CollectorRegistry()).refresh(store)
        assert registry.get_sample_value(RUNNING_PER_GPU_METRIC, {"host": host, "gpu": "0"}) is None
    finally:
        store.close()
        stop_all(workers)
    assert collection.count_documents({"exp_key": "on-gpus", "state": JOB_STATE_DONE}) == 4
    result = hyperfleet("report", "on-gpus", "--mongo", mongo_url, "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "report" / "trials.csv") as f:
        placed = [(r["ran_on"], r["ran_on_gpu"]) for r in csv.DictReader(f)]
    assert len(placed) == 4 and {h for h, _ in placed} == {host} and {g for _, g in placed} <= {"0", "1"}
    assert "ran_on_gpu" in (tmp_path / "report" / "report.html").read_text()
