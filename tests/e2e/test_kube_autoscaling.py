"""Workers that scale with the queue, for real: `pulumi up` of stack keda-ci (workers.autoscaling.mode
keda, min 0, max 4) on the tests' single-node cluster, where KEDA's operator and adapter run
(testbed/kube_cluster). With nothing queued the pool parks at 0; an experiment of 40 trials started from
outside makes it 4; lowering the ScaledObject's maximum to 2 mid-run scales down workers that hold
trials (they hand them back on SIGTERM); when the queue drains the pool goes back to 0. Every trial
ends DONE, exactly once: none is lost on scale-down. (KEDA's fallback: test_kube_keda_fallback.py.)
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.e2e.keda import (EXPERIMENT, MAX_WORKERS, PASSPHRASE, STACK, TRIALS, forwarded_mongo, print_timings, show_failure,
                            start_driver, worker_count)
from tests.e2e.kube_scenario import Scenario, Stack
from tests.helpers import REPO, wait_for
from tests.pulumi_engine import kube_stack


@pytest.fixture
def pulumi(kube_cluster, tmp_path):
    yield from kube_stack(REPO, STACK, PASSPHRASE, tmp_path / "state", kube_cluster.kubeconfig)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_keda_scales_workers_from_zero_to_max_and_back_without_losing_a_trial(pulumi, kube_cluster, tmp_path):
    config = yaml.safe_load((REPO / f"Pulumi.{STACK}.yaml").read_text())["config"]
    stack = Stack(name=STACK, namespace=config["hyperfleet:kubernetes"]["namespace"], release=f"hyperfleet-{STACK}",
                  exp_key=EXPERIMENT["name"], max_evals=TRIALS)
    scenario = Scenario(stack, pulumi, kube_cluster.kubeconfig, kube_cluster.context, node_exec=[])
    timings, driver = {}, None
    try:
        pulumi("up", "--yes", "--skip-preview")
        scaled = scenario.get("scaledobject", f"{stack.release}-worker")  # KEDA's CRD took it
        assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, MAX_WORKERS)
        # nothing queued: KEDA parks the pool
        wait_for(lambda: worker_count(scenario)[:2] == (0, 0), timeout=120, step=1)
        with forwarded_mongo(scenario) as (url, jobs):
            driver = start_driver(url, EXPERIMENT, tmp_path)
            wait_for(lambda: jobs.find_one({"exp_key": stack.exp_key}), timeout=60, step=0.05)
            queued = time.monotonic()
            wait_for(lambda: worker_count(scenario)[1] >= 1, timeout=120, step=0.25)
            timings["queue -> first worker pod"] = time.monotonic() - queued
            wait_for(lambda: worker_count(scenario)[2] >= 1, timeout=120, step=0.25)
            timings["queue -> first worker Ready"] = time.monotonic() - queued
            wait_for(lambda: worker_count(scenario)[2] == MAX_WORKERS, timeout=180, step=0.5)
            timings[f"queue -> {MAX_WORKERS} workers Ready"] = time.monotonic() - queued
            assert jobs.count_documents({"exp_key": stack.exp_key, "state": 0}) > 0, "the queue drained too soon"
            # scale down with work in flight: the workers that go get SIGTERM while they hold trials
            scenario.kubectl("patch", "scaledobject", f"{stack.release}-worker", "--type=merge",
                             "-p", json.dumps({"spec": {"maxReplicaCount": MAX_WORKERS // 2}}))
            wait_for(lambda: worker_count(scenario)[:2] == (MAX_WORKERS // 2, MAX_WORKERS // 2), timeout=120, step=0.5)
            out, _ = driver.communicate(timeout=600)
            assert driver.returncode == 0, out
            drained = time.monotonic()
            docs = list(jobs.find({"exp_key": stack.exp_key}))
        # every trial DONE, once; the scaled-down workers handed theirs back
        assert len(docs) == TRIALS and len({d["tid"] for d in docs}) == TRIALS
        assert [d["tid"] for d in docs if d["state"] != 2] == []
        handed_back = [d for d in docs if any(h["event"] == "handed back" for h in d["hyperfleet"].get("history", []))]
        assert handed_back, "no worker held a trial when it was scaled down"
        assert all("SIGTERM" in h["reason"] for d in handed_back for h in d["hyperfleet"]["history"]
                   if h["event"] == "handed back"), [d["hyperfleet"]["history"] for d in handed_back]
        # the queue drained: back to 0 after the cooldown
        wait_for(lambda: worker_count(scenario)[:2] == (0, 0), timeout=180, step=1)
        timings["drained -> 0 workers"] = time.monotonic() - drained
        timings["trials handed back on scale-down"] = len(handed_back)
        # the Deployment has no replicas of its own: another `pulumi up` would not fight KEDA
        pulumi("preview", "--expect-no-changes")
        pulumi("destroy", "--yes")
        scenario.check_nothing_left()
    except BaseException:
        show_failure(scenario, driver)
        raise
    print_timings("keda-ci", timings)
