"""What the KEDA end-to-end tests (test_kube_autoscaling.py) use: the stack keda-ci on the tests'
single-node cluster, the experiment they queue from outside, how they count workers and how they
report."""

from __future__ import annotations

import contextlib
import datetime
import json
import subprocess
import sys
from pathlib import Path

import pymongo
import yaml

from tests.e2e.kube_scenario import Scenario
from tests.helpers import run_cli, stop_all, wait_for, worker_env

STACK = "keda-ci"
PASSPHRASE = "hyperfleet-keda-ci"  # the test stack's secrets protect nothing of value
TRIALS, MAX_WORKERS, TRIAL_SECONDS = 40, 4, 2
#: workers on this host that help a pool drain what is left of an experiment, once what a test checks is done
DRAIN_HELPERS = 6
EXPERIMENT = {"name": "keda-branin", "objective": "hyperfleet.demo:branin", "algo": "rand", "max_evals": TRIALS,
              "parallelism": TRIALS,  # the whole search is queued at once
              "space": {"x": {"uniform": [-5, 10]}, "y": {"uniform": [0, 15]},
                        "sleep_seconds": {"choice": [TRIAL_SECONDS]}}}


def worker_count(scenario: Scenario) -> tuple[int, int, int]:
    """(the Deployment's spec.replicas, worker pods not terminating, of which Ready)."""
    selector = scenario.selector("worker")
    deployment, = [d for d in scenario.listed("deployments", selector)
                   if d["metadata"]["name"] == f"{scenario.stack.release}-worker"]
    pods = [p for p in scenario.listed("pods", selector) if not p["metadata"].get("deletionTimestamp")]
    ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                    for c in p["status"].get("conditions", []))]
    return deployment["spec"].get("replicas", 1), len(pods), len(ready)


def patch_scaled_object(scenario: Scenario, **spec) -> None:
    """Change the workers' ScaledObject in place (``minReplicaCount=4``), as an operator would with kubectl."""
    scenario.kubectl("patch", "scaledobject", f"{scenario.stack.release}-worker", "--type=merge",
                     "-p", json.dumps({"spec": spec}))


def show_failure(scenario: Scenario, driver: subprocess.Popen | None, cluster) -> None:
    """A failed test's driver stopped and its output, and what the cluster and KEDA say, printed for its report: the
    operator's log lines about this ScaledObject (its scalers' errors) included."""
    if driver:
        if driver.poll() is None:
            driver.kill()
        if driver.stdout and not driver.stdout.closed:  # not read yet by the test
            out, _ = driver.communicate(timeout=30)
            print(f"the driver (exit {driver.returncode}), last lines:\n{(out or '')[-3000:]}")
    print(scenario.diagnostics())
    print(scenario.kubectl("get", "scaledobject,hpa", "-o", "wide", check=False).stdout)
    operator = [line for line in cluster.log_tail("keda-operator", 1_000_000).splitlines() if scenario.stack.release in line]
    print("keda-operator on this ScaledObject (last 60 lines):\n" + "\n".join(operator[-60:]))
    # the operator, a host process, reaches the monitor's Service through kube-proxy's rules on this host: with
    # none for it, the request leaves the machine, and an HTTP 404 from outside is what it reads (docs/testing.md)
    print("kube-proxy (last lines):\n" + cluster.log_tail("kube-proxy", 4000))


def assert_each_done_once(docs: list[dict], trials: int) -> None:
    """The experiment's ``trials`` trials are there, each tid once, and every one DONE: none lost or doubled."""
    assert len(docs) == trials and len({d["tid"] for d in docs}) == trials
    assert [d["tid"] for d in docs if d["state"] != 2] == []


def print_timings(label: str, timings: dict) -> None:
    print(f"\n{label} at {datetime.datetime.now():%H:%M}: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


@contextlib.contextmanager
def forwarded_mongo(scenario: Scenario):
    """The stack's Mongo through ``kubectl port-forward``, as its workers log in: yields (URL, jobs)."""
    with scenario.port_forward(f"svc/{scenario.stack.release}-mongo", "mongo") as port:
        url = scenario._mongo_url(port)
        client = pymongo.MongoClient(url, serverSelectionTimeoutMS=10000)
        try:
            yield url, client.get_default_database()["jobs"]
        finally:
            client.close()


def start_driver(url: str, experiment: dict, folder: Path) -> subprocess.Popen:
    """``hyperfleet run`` of ``experiment`` from outside the cluster, its output kept for the report."""
    path = folder / f"{experiment['name']}.yaml"
    path.write_text(yaml.safe_dump(experiment))
    return run_cli(url, path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@contextlib.contextmanager
def drain_helpers(url: str, exp_key: str, folder: Path, jobs):
    """DRAIN_HELPERS workers on this host, through the port-forward, running ``exp_key``'s trials beside the
    pool (the monitor judges them by their heartbeats): the tens of trials a test leaves take seconds
    instead of a minute. Yields a dict that holds, once they are stopped (each must exit 0 on SIGTERM),
    how many trials they ran ("ran")."""
    helped = {}
    logs = [open(folder / f"helper-{n}.log", "w") for n in range(DRAIN_HELPERS)]
    alive = [folder / f"helper-{n}.alive" for n in range(DRAIN_HELPERS)]
    # the address (its password) in the environment, not on a command line a failure may print
    helpers = [subprocess.Popen([sys.executable, "-m", "hyperfleet", "worker", "--exp-key", exp_key, "--heartbeat-seconds",
                                 "1", "--alive-file", str(path)], env=worker_env(HYPERFLEET_WORKER_MONGO=url),
                                stdout=log, stderr=subprocess.STDOUT)
               for log, path in zip(logs, alive, strict=True)]
    try:
        yield helped
    finally:  # stopped also when the test fails meanwhile (that failure is the one reported)
        # the SIGTERM must find each helper's loop turning: when the pool ran the last trials first, a
        # helper still starting up (seconds under load) would die of it, unhandled, before its code runs
        try:
            wait_for(lambda: all(path.exists() or proc.poll() is not None for path, proc in zip(alive, helpers, strict=True)),
                     timeout=120, step=0.2)
        finally:
            codes = stop_all(helpers)
        for log in logs:
            log.close()
    assert codes == [0] * DRAIN_HELPERS, (codes, [(folder / f"helper-{n}.log").read_text()[-1500:]
                                                  for n in range(DRAIN_HELPERS)])
    helped["ran"] = jobs.count_documents({"exp_key": exp_key, "hyperfleet.worker.pod": {"$exists": False}})
