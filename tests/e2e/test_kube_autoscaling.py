"""Workers that scale with the queue, for real: `pulumi up` of stack keda-ci (workers.autoscaling.mode
keda, min 0, max 4) on the tests' single-node cluster, where KEDA's operator and adapter run
(testbed/kube_cluster). With nothing queued the pool parks at 0; an experiment of 40 trials started from
outside makes it 4; lowering the ScaledObject's maximum to 2 mid-run scales down workers that hold
trials (they hand them back on SIGTERM); when the queue drains the pool goes back to 0. Every trial
ends DONE, exactly once: none is lost on scale-down. In both tests, once what they check is seen, six
workers on this host help the pool drain the rest (keda.drain_helpers): draining was their longest wait.

The monitor, the gauge's source, stopped mid-experiment (a stack of its own): KEDA's fallback holds the
pool (4 workers where the gauge asked for 3), trials keep finishing, and with the monitor back every
trial ends DONE once; stopped again with the pool parked at 0, the fallback wakes it. The two tests
share one file, so they run one after the other: side by side on one KEDA, on a loaded machine, the
scale test once saw its metric unread for 3 minutes.
"""

from __future__ import annotations

import time
import uuid

import pytest
import yaml

from tests.e2e.keda import (EXPERIMENT, MAX_WORKERS, PASSPHRASE, STACK, TRIALS, assert_each_done_once, drain_helpers,
                            forwarded_mongo, patch_scaled_object, print_timings, show_failure, start_driver,
                            worker_count)
from tests.e2e.kube_scenario import Scenario, Stack
from tests.helpers import REPO, wait_for
from tests.pulumi_engine import kube_stack, program_stack


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
            patch_scaled_object(scenario, maxReplicaCount=MAX_WORKERS // 2)
            wait_for(lambda: worker_count(scenario)[:2] == (MAX_WORKERS // 2, MAX_WORKERS // 2), timeout=120, step=0.5)
            with drain_helpers(url, stack.exp_key, tmp_path, jobs) as helped:  # the rest, sooner
                out, _ = driver.communicate(timeout=600)
            assert driver.returncode == 0, out
            drained = time.monotonic()
            docs = list(jobs.find({"exp_key": stack.exp_key}))
        # every trial DONE, once; the scaled-down workers handed theirs back
        assert_each_done_once(docs, TRIALS)
        handed_back = [d for d in docs if any(h["event"] == "handed back" for h in d["hyperfleet"].get("history", []))]
        assert handed_back, "no worker held a trial when it was scaled down"
        assert all("SIGTERM" in h["reason"] for d in handed_back for h in d["hyperfleet"]["history"]
                   if h["event"] == "handed back"), [d["hyperfleet"]["history"] for d in handed_back]
        # the queue drained: back to 0 after the cooldown
        wait_for(lambda: worker_count(scenario)[:2] == (0, 0), timeout=180, step=1)
        timings["drained -> 0 workers"] = time.monotonic() - drained
        timings["trials handed back on scale-down"] = len(handed_back)
        timings["trials left run by this host's workers"] = helped["ran"]
        # the Deployment has no replicas of its own: another `pulumi up` would not fight KEDA
        pulumi("preview", "--expect-no-changes")
        pulumi("destroy", "--yes", "--skip-preview")
        scenario.check_nothing_left()
    except BaseException:
        show_failure(scenario, driver, kube_cluster)
        raise
    print_timings("keda-ci", timings)


# -- KEDA's fallback: the monitor (the gauge's source) goes away mid-experiment ----------------------

# enough trials that the queue lasts while the monitor is down, however slow the machine
FALLBACK_TRIALS, FALLBACK_TRIAL_SECONDS = 120, 3
#: 120 open trials / 40 per worker: the gauge asks for 3 workers at most; the fallback (maxReplicas) holds 4
FALLBACK_PER_WORKER, FALLBACK_MAX = 40, 4


@pytest.fixture
def fallback_stack(kube_cluster, tmp_path):
    """keda-ci's config as a stack of its own (project, state and namespace), workers wanted 3 at most
    by the gauge and 4 by the fallback (maxReplicas, the default); yields (run, Stack)."""
    config = yaml.safe_load((REPO / f"Pulumi.{STACK}.yaml").read_text())["config"]
    namespace = "hyperfleet-keda-fb-" + uuid.uuid4().hex[:6]
    config["hyperfleet:kubernetes"] = {**config["hyperfleet:kubernetes"], "namespace": namespace}
    scaling = config["hyperfleet:workers"]["autoscaling"]
    scaling.update(maxReplicas=FALLBACK_MAX, trialsPerWorker=FALLBACK_PER_WORKER)
    assert "fallbackReplicas" not in scaling  # the default is under test
    stack = Stack(name="keda-fb", namespace=namespace, release="hyperfleet-keda-fb", exp_key="keda-fallback",
                  max_evals=FALLBACK_TRIALS)
    for run in program_stack(tmp_path / "project", stack.name, config, PASSPHRASE, tmp_path / "state",
                             kube_cluster.kubeconfig):
        yield run, stack


def fallback_condition(scenario: Scenario) -> str | None:
    """The ScaledObject's Fallback condition status ("True" while KEDA falls back), or None."""
    from kubernetes import client

    scaled = client.CustomObjectsApi(scenario.api).get_namespaced_custom_object(
        "keda.sh", "v1alpha1", scenario.stack.namespace, "scaledobjects", f"{scenario.stack.release}-worker")
    return next((c["status"] for c in scaled.get("status", {}).get("conditions", []) if c["type"] == "Fallback"), None)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_keda_holds_the_pool_while_the_monitor_is_down_and_no_trial_is_lost(fallback_stack, kube_cluster, tmp_path):
    pulumi, stack = fallback_stack
    scenario = Scenario(stack, pulumi, kube_cluster.kubeconfig, kube_cluster.context, node_exec=[])
    experiment = {**EXPERIMENT, "name": stack.exp_key, "max_evals": FALLBACK_TRIALS, "parallelism": FALLBACK_TRIALS,
                  "space": {**EXPERIMENT["space"], "sleep_seconds": {"choice": [FALLBACK_TRIAL_SECONDS]}}}
    timings, driver, monitor = {}, None, f"deployment/{stack.release}-monitor"
    began = time.monotonic()

    def phase(label):
        timings[f"[{label}]"] = time.monotonic() - began
    try:
        pulumi("up", "--yes", "--skip-preview")
        phase("up")
        spec = scenario.get("scaledobject", f"{stack.release}-worker")["spec"]
        assert spec["fallback"] == {"failureThreshold": 3, "replicas": FALLBACK_MAX, "behavior": "currentReplicasIfHigher"}
        wait_for(lambda: worker_count(scenario)[:2] == (0, 0), timeout=120, step=1)
        with forwarded_mongo(scenario) as (url, jobs):
            phase("parked")
            driver = start_driver(url, experiment, tmp_path)
            wait_for(lambda: worker_count(scenario)[2] >= 2, timeout=180, step=0.5)
            phase("2 ready")
            at_stop = worker_count(scenario)[0]
            assert at_stop < FALLBACK_MAX  # what the gauge asks for, below the fallback's count
            # the metric's source goes away while trials are queued
            scenario.kubectl("scale", monitor, "--replicas=0")
            stopped = time.monotonic()
            wait_for(lambda: not scenario.pods("monitor"), timeout=60, step=0.5)
            done_at_stop = jobs.count_documents({"exp_key": stack.exp_key, "state": 2})
            samples = []

            def sample_until(predicate):
                samples.append(worker_count(scenario))
                return predicate()
            wait_for(lambda: sample_until(lambda: fallback_condition(scenario) == "True"), timeout=90, step=0.5)
            timings["monitor stopped -> KEDA falls back"] = time.monotonic() - stopped
            wait_for(lambda: sample_until(lambda: worker_count(scenario)[2] == FALLBACK_MAX), timeout=120, step=0.5)
            timings[f"monitor stopped -> {FALLBACK_MAX} workers Ready"] = time.monotonic() - stopped
            # past the cooldown (10 s) with the gauge unreadable: never scaled towards 0
            hold_until = time.monotonic() + 20
            wait_for(lambda: sample_until(lambda: time.monotonic() > hold_until), timeout=40, step=0.5)
            assert min(s[0] for s in samples) >= at_stop and min(s[1] for s in samples) >= at_stop, samples
            timings["fewest workers while the monitor was down"] = min(s[1] for s in samples)
            assert jobs.count_documents({"exp_key": stack.exp_key, "state": 0}) > 0, "the queue drained too soon"
            done_while_down = jobs.count_documents({"exp_key": stack.exp_key, "state": 2}) - done_at_stop
            assert done_while_down > 0, "no trial finished while the monitor was down"
            timings["trials finished while the monitor was down"] = done_while_down
            scenario.kubectl("scale", monitor, "--replicas=1")
            wait_for(lambda: fallback_condition(scenario) == "False", timeout=120, step=1)
            timings["monitor back -> fallback off"] = time.monotonic() - stopped
            phase("fallback off")
            # what is left only has to drain (the gauge would ask for 1-2 workers, 40 trials each): the
            # pool held at its maximum for that, then free to park again, and six workers on this host beside
            # it (keda.drain_helpers), so that the tens of 3 s trials left take seconds instead of a minute
            patch_scaled_object(scenario, minReplicaCount=FALLBACK_MAX)
            with drain_helpers(url, stack.exp_key, tmp_path, jobs) as helped:
                out, _ = driver.communicate(timeout=600)
            assert driver.returncode == 0, out
            assert helped["ran"] > 0, "the workers on this host ran none of the trials left"
            timings["trials left run by this host's workers"] = helped["ran"]
            phase("driver done")
            patch_scaled_object(scenario, minReplicaCount=0)
            docs = list(jobs.find({"exp_key": stack.exp_key}))
            assert_each_done_once(docs, FALLBACK_TRIALS)

            # a pool parked at 0 when the monitor goes: the fallback wakes it (the queue is unknown)
            wait_for(lambda: worker_count(scenario)[:2] == (0, 0), timeout=180, step=1)
            phase("parked again")
            scenario.kubectl("scale", monitor, "--replicas=0")
            stopped = time.monotonic()
            wait_for(lambda: not scenario.pods("monitor"), timeout=60, step=0.5)
            second = {**experiment, "name": f"{stack.exp_key}-2", "max_evals": 8, "parallelism": 8}
            driver = start_driver(url, second, tmp_path)
            wait_for(lambda: worker_count(scenario)[2] >= 1, timeout=120, step=0.5)
            timings["parked pool, monitor stopped -> a worker Ready"] = time.monotonic() - stopped
            wait_for(lambda: jobs.count_documents({"exp_key": second["name"], "state": 2}) >= 1, timeout=120, step=0.5)
            scenario.kubectl("scale", monitor, "--replicas=1")
            out, _ = driver.communicate(timeout=600)
            assert driver.returncode == 0, out
            docs = list(jobs.find({"exp_key": second["name"]}))
        assert_each_done_once(docs, second["max_evals"])
        phase("second done")
        pulumi("destroy", "--yes", "--skip-preview")
        scenario.check_nothing_left()
        phase("destroyed")
    except BaseException:
        show_failure(scenario, driver, kube_cluster)
        raise
    print_timings("keda fallback", timings)
