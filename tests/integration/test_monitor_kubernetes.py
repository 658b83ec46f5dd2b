"""The monitor's pod liveness against the real test API server: workers that say they run in pods
(HYPERFLEET_POD_NAME/NAMESPACE, as the chart sets them), Pod objects whose status the tests patch the
way a kubelet would, and a real `hyperfleet monitor --liveness kubernetes` process.

The heartbeat grace is far longer than the test, so only the pod check can explain a recovery."""

from __future__ import annotations

import pytest
from kubernetes import client

from hyperfleet.liveness import KubernetesLiveness
from hyperfleet.monitor import Reaper
from hyperfleet.settings import MonitorSettings
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_RUNNING
from testbed.kube_server import gone, wait_until
from tests.helpers import enqueue_slow_trial, requeue_time, start_monitor, start_worker, stop_all, wait_for, worker_env

WORKER_LABELS = {"app.kubernetes.io/instance": "t", "app.kubernetes.io/component": "worker"}
SELECTOR = ",".join(f"{k}={v}" for k, v in WORKER_LABELS.items())


def create_pod(core, namespace: str, name: str, phase: str = "Running", finalizers=None):
    core.create_namespaced_pod(namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=WORKER_LABELS, finalizers=finalizers),
        spec=client.V1PodSpec(containers=[client.V1Container(name="worker", image="hyperfleet/runtime:test")])))
    set_phase(core, namespace, name, phase)


def set_phase(core, namespace: str, name: str, phase: str):
    """What the kubelet reports: Running, or Failed/Succeeded once the container has ended."""
    core.patch_namespaced_pod_status(name, namespace, {"status": {"phase": phase}})


def running_trial_of(store, pod: str):
    return store.jobs.find_one({"state": JOB_STATE_RUNNING, "hyperfleet.worker.pod": pod})


def start_pod_worker(mongo_url, namespace, pod):
    env = worker_env(HYPERFLEET_POD_NAME=pod, HYPERFLEET_POD_NAMESPACE=namespace)
    return start_worker(mongo_url, "--heartbeat-seconds", "0.3", "--log-level", "warning", env=env)


@pytest.mark.timeout(180)
def test_monitor_requeues_the_trial_of_a_deleted_pod_and_leaves_the_live_one(
        store, mongo_url, kube_server, kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    create_pod(core, namespace, "worker-a")
    create_pod(core, namespace, "worker-b")
    for _ in range(2):
        enqueue_slow_trial(store, sleep=4.0)
    env = worker_env(KUBECONFIG=kube_server.kubeconfig)
    monitor = start_monitor(mongo_url, "--liveness", "kubernetes", "--namespace", namespace,
                            "--label-selector", SELECTOR, "--grace-seconds", "120", "--interval-seconds", "0.2",
                            "--health-port", "0", env=env)
    victim = start_pod_worker(mongo_url, namespace, "worker-a")
    survivor = start_pod_worker(mongo_url, namespace, "worker-b")
    try:
        lost = wait_for(lambda: running_trial_of(store, "worker-a"))
        kept = wait_for(lambda: running_trial_of(store, "worker-b"))
        # the node evicts the pod: its container dies and the Pod object goes away
        victim.kill()
        victim.wait()
        core.delete_namespaced_pod("worker-a", namespace)
        wait_until(lambda: gone(lambda: core.read_namespaced_pod("worker-a", namespace)), 30, "pod deletion")
        detected = requeue_time(store, lost["_id"], timeout=20)
        back = store.jobs.find_one({"_id": lost["_id"]})
        assert back["hyperfleet"]["history"][-1]["reason"] == f"pod {namespace}/worker-a is gone"
        # the pod check, not the heartbeat grace (120 s): 5.8 s once, on a loaded machine
        assert detected < 30, f"requeued {detected:.1f}s after the pod was deleted"
        # the trial of the pod that still runs was never touched, and finishes with its worker
        done = wait_for(lambda: store.jobs.find_one({"_id": kept["_id"], "state": JOB_STATE_DONE}), timeout=30)
        assert done["hyperfleet"]["worker"]["pod"] == "worker-b"
        assert "history" not in done["hyperfleet"] or all(h["event"] != "requeued" for h in done["hyperfleet"]["history"])
        # then the surviving pod's worker takes up the recovered trial and finishes it
        final = wait_for(lambda: store.jobs.find_one({"_id": lost["_id"], "state": JOB_STATE_DONE}), timeout=30)
        assert final["hyperfleet"]["worker"]["pod"] == "worker-b"
        assert final["hyperfleet"]["attempts"] == 2
    finally:
        stop_all([monitor, victim, survivor])


def fake_running_trial(store, pod: str, namespace: str):
    """A RUNNING trial booked by a worker in ``pod``, heartbeat fresh: only the pod can tell it is lost."""
    tid = enqueue_slow_trial(store)
    store.jobs.update_one({"tid": tid}, {
        "$set": {"state": JOB_STATE_RUNNING, "owner": [f"{pod}:1"],
                 "hyperfleet.worker": {"host": pod, "pid": 1, "pod": pod, "namespace": namespace}},
        "$currentDate": {"book_time": True, "refresh_time": True}})
    return store.jobs.find_one({"tid": tid})


@pytest.mark.timeout(120)
def test_pod_phases_as_the_kubelet_reports_them(store, mongo_url, kube_server, kube_api, namespace):
    """Failed and Succeeded pods have lost their trial; Pending, Running and terminating pods keep it;
    a pod of another namespace is not this monitor's to judge."""
    core = client.CoreV1Api(kube_api)
    cases = {"failed": "Failed", "succeeded": "Succeeded", "pending": "Pending", "running": "Running",
             "terminating": "Running"}
    trials = {}
    for name, phase in cases.items():
        create_pod(core, namespace, name, phase,
                   finalizers=["hyperfleet.io/test-hold"] if name == "terminating" else None)
        trials[name] = fake_running_trial(store, name, namespace)
    # deletion starts; the finalizer keeps the Pod, as a kubelet does during the grace period
    core.delete_namespaced_pod("terminating", namespace)
    trials["elsewhere"] = fake_running_trial(store, "some-pod", "another-namespace")

    settings = MonitorSettings(mongo_url=mongo_url, grace_seconds=120, interval_seconds=0.2)
    liveness = KubernetesLiveness(namespace, SELECTOR, core_api=core)
    report = Reaper(store, settings, checks=[liveness]).sweep()
    assert liveness.enabled
    assert report.requeued == 2
    for name, doc in trials.items():
        after = store.jobs.find_one({"_id": doc["_id"]})
        lost = name in ("failed", "succeeded")
        assert (after["state"] != JOB_STATE_RUNNING) == lost, name
        if lost:
            assert after["hyperfleet"]["history"][-1]["reason"] == f"pod {namespace}/{name} is {cases[name]}"
    core.patch_namespaced_pod("terminating", namespace, {"metadata": {"finalizers": None}})
    wait_until(lambda: gone(lambda: core.read_namespaced_pod("terminating", namespace)), 30, "pod deletion")
    assert Reaper(store, settings, checks=[liveness]).sweep().requeued == 1  # now it is gone
