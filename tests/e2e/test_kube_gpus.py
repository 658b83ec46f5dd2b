"""GPUs per trial on Kubernetes, for real on the tests' single-node cluster (testbed/kube_cluster): the node
advertises 2 ``nvidia.com/gpu`` (its status capacity patched through the status subresource, as a device
plugin would report them: the scheduler then counts them as it counts real GPUs; no GPU is behind them), and
a container experiment whose trial pods each ask ``resources: {gpu: 1}`` runs with 4 workers:

- never more than 2 trial pods hold a GPU at once (every pod event watched and recorded);
- the others wait Pending (unschedulable: not enough nvidia.com/gpu) and then run;
- every trial ends DONE exactly once, each on its first attempt: a worker whose trial pod waits keeps
  the trial's heartbeat going, so the monitor (a 5 s grace here, less than the wait) never takes it;
- each trial records the node its worker ran on.

The node's patch is undone at the end.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from hyperfleet.contract import K8S_COMPONENT_LABEL, K8S_GPU_RESOURCE, ROLE_TRIAL
from tests.chart.test_chart import CHART
from hyperfleet.store import JOB_STATE_ERROR
from tests.e2e.kube_scenario import JOB_STATE_DONE, Scenario, Stack
from tests.e2e.test_kube_trial_pods import OBJECTIVE, SPACE, values as trial_pod_values
from testbed.kube_server import wait_until

RELEASE = "gpus-hyperfleet"
GPUS, WORKERS, MAX_EVALS, SLEEP_SECONDS, GRACE_SECONDS = 2, 4, 6, 4, 5
EXP_KEY = "gpus"


def values(runtime_image: str, mongo_image: str) -> dict:
    """The trial-pod test's values, with one experiment whose trial pods each ask one GPU, 4 workers, and a monitor
    whose grace is shorter than a trial pod's wait for a GPU."""
    base = trial_pod_values(runtime_image, mongo_image)
    experiment = {"name": EXP_KEY, "objective": {**OBJECTIVE, "env": {"SLEEP_SECONDS": str(SLEEP_SECONDS)},
                                                 "resources": {"gpu": 1}},
                  "algo": "rand", "max_evals": MAX_EVALS, "parallelism": WORKERS, "space": SPACE}
    return {**base, "fullnameOverride": RELEASE, "experiments": [experiment],
            "workers": {**base["workers"], "replicas": WORKERS},
            "monitor": {"graceSeconds": GRACE_SECONDS, "intervalSeconds": 0.5}}


class PodWatch(threading.Thread):
    """Every event of the trial pods, from a watch of the namespace: which pods hold a GPU (bound to the
    node and not finished) after each event, and which waited unschedulable first."""

    def __init__(self, scenario: Scenario):
        super().__init__(daemon=True, name="trial-pod-watch")
        from kubernetes import client, config

        self.api = client.CoreV1Api(config.new_client_from_config(config_file=scenario.kubeconfig,
                                                                   context=scenario.context))
        self.namespace = scenario.stack.namespace
        self.holding: set[str] = set()
        self.most_holding = 0
        self.waited: set[str] = set()  # reported unschedulable before it ran
        self.ran: set[str] = set()
        self.events = 0
        self.problems: list[str] = []  # asserted by the test (an assert in this thread would go unseen)
        self.stop = threading.Event()

    def run(self):
        """List, then watch from the list's version, each watch going on from where the last one ended: a
        watch started afresh would not tell of a pod deleted in between, which would then stay held."""
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        selector, version = f"{K8S_COMPONENT_LABEL}={ROLE_TRIAL}", None
        while not self.stop.is_set():
            if version is None:
                listed = self.api.list_namespaced_pod(self.namespace, label_selector=selector)
                self.holding &= {pod.metadata.name for pod in listed.items}
                for pod in listed.items:
                    self.see("LISTED", pod)
                version = listed.metadata.resource_version
            stream = watch.Watch()
            try:
                for event in stream.stream(self.api.list_namespaced_pod, self.namespace, timeout_seconds=2,
                                           resource_version=version, label_selector=selector):
                    self.see(event["type"], event["object"])
                    if self.stop.is_set():
                        break
                version = stream.resource_version or version
            except ApiException as err:
                if err.status != 410:  # 410: the version is too old to watch from; list again
                    raise
                version = None

    def see(self, kind: str, pod) -> None:
        self.events += 1
        name, status = pod.metadata.name, pod.status
        asks = (pod.spec.init_containers[0].resources.limits or {}).get(K8S_GPU_RESOURCE)
        if asks != "1":
            self.problems.append(f"{name} asks {asks} GPUs")
        finished = status.phase in ("Succeeded", "Failed") or kind == "DELETED"
        if pod.spec.node_name and not finished:
            self.holding.add(name)
        else:
            self.holding.discard(name)
        self.most_holding = max(self.most_holding, len(self.holding))
        for condition in status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False" and condition.reason == "Unschedulable":
                if K8S_GPU_RESOURCE not in (condition.message or ""):
                    self.problems.append(f"{name} unschedulable for another reason: {condition.message}")
                self.waited.add(name)
        if any(s.state and (s.state.running or s.state.terminated) for s in status.init_container_statuses or []):
            self.ran.add(name)


@pytest.fixture(scope="module")
def gpu_node(kube_cluster):
    """The cluster's node, advertising GPUS nvidia.com/gpu until the test ends."""
    scenario = Scenario(Stack(name="gpus", namespace="default", release=RELEASE, exp_key=EXP_KEY, max_evals=MAX_EVALS),
                        pulumi=None, kubeconfig=kube_cluster.kubeconfig, context=kube_cluster.context, node_exec=[])
    (node,) = [n["metadata"]["name"] for n in scenario.get("nodes")["items"]]
    path = K8S_GPU_RESOURCE.replace("/", "~1")  # JSON pointer
    patch = [{"op": "add", "path": f"/status/{field}/{path}", "value": str(GPUS)} for field in ("capacity", "allocatable")]
    scenario.kubectl("patch", "node", node, "--subresource=status", "--type=json", "-p", json.dumps(patch))
    wait_until(lambda: scenario.get("node", node)["status"]["allocatable"].get(K8S_GPU_RESOURCE) == str(GPUS), 30,
               f"the node to advertise {GPUS} {K8S_GPU_RESOURCE}")
    try:
        yield node
    finally:
        undo = [{"op": "remove", "path": f"/status/{field}/{path}"} for field in ("capacity", "allocatable")]
        scenario.kubectl("patch", "node", node, "--subresource=status", "--type=json", "-p", json.dumps(undo))
        assert K8S_GPU_RESOURCE not in scenario.get("node", node)["status"]["capacity"]


@pytest.fixture(scope="module")
def release(gpu_node, kube_cluster, helm, objective_image, docker_worker_image, test_mongo_image, tmp_path_factory):
    kube_cluster.load_images([objective_image])
    values_path = tmp_path_factory.mktemp("gpus") / "values.json"  # JSON: every key quoted (YAML 1.1's y)
    values_path.write_text(json.dumps(values(docker_worker_image, test_mongo_image)))
    namespace = "gpus-" + uuid.uuid4().hex[:8]
    target = ["--kubeconfig", kube_cluster.kubeconfig, "--kube-context", kube_cluster.context, "-n", namespace]
    scenario = Scenario(Stack(name="gpus", namespace=namespace, release=RELEASE, exp_key=EXP_KEY, max_evals=MAX_EVALS),
                        pulumi=None, kubeconfig=kube_cluster.kubeconfig, context=kube_cluster.context, node_exec=[])
    scenario.kubectl("create", "namespace", namespace, "-n", "default")
    watcher = PodWatch(scenario)
    watcher.start()  # before the workers exist: no trial pod event is missed
    started = time.monotonic()
    helm("install", RELEASE, str(CHART), "-f", str(values_path), "--wait", "--timeout", "3m", *target)
    yield scenario, watcher, started
    watcher.stop.set()
    helm("uninstall", RELEASE, "--wait", *target, check=False)
    scenario.kubectl("delete", "namespace", namespace, "--wait=false", "-n", "default", check=False)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_trial_pods_asking_a_gpu_share_the_nodes_two_wait_pending_and_keep_their_trials(release, gpu_node):
    scenario, watcher, started = release
    try:
        with scenario.database() as jobs:
            def finished():  # a trial ERROR fails at once (its driver would retry for minutes)
                failed = list(jobs.find({"exp_key": EXP_KEY, "state": JOB_STATE_ERROR}, {"tid": 1, "error": 1}))
                assert not failed, failed
                return jobs.count_documents({"exp_key": EXP_KEY, "state": JOB_STATE_DONE}) == MAX_EVALS
            wait_until(finished, 300, f"{MAX_EVALS} trials DONE")
            scenario.kubectl("wait", "--for=condition=complete", "job", "-l", f"hyperfleet.io/exp-key={EXP_KEY}",
                             "--timeout=60s", timeout=80)
            seconds = time.monotonic() - started
            trials = list(jobs.find({"exp_key": EXP_KEY}))
        wait_until(lambda: not watcher.holding, 30, "every trial pod to end")
    except BaseException:
        print(scenario.diagnostics())
        raise
    # every trial DONE once, on its first attempt: nobody took a trial from a worker whose pod waited for a GPU
    assert sorted(t["tid"] for t in trials) == sorted({t["tid"] for t in trials}) and len(trials) == MAX_EVALS
    assert [(t["state"], t["hyperfleet"]["attempts"]) for t in trials] == [(JOB_STATE_DONE, 1)] * MAX_EVALS, \
        [(t["tid"], t["state"], t["hyperfleet"].get("history")) for t in trials]
    assert not [e for t in trials for e in t["hyperfleet"].get("history") or []], "a trial was handed back or requeued"
    assert {t["hyperfleet"]["worker"].get("node") for t in trials} == {gpu_node}
    # the scheduler gave out the node's 2 GPUs and no more; trial pods beyond them waited, then ran
    assert watcher.problems == []
    assert watcher.most_holding == GPUS, watcher.most_holding
    assert len(watcher.ran) == MAX_EVALS and watcher.waited and watcher.waited <= watcher.ran, \
        (watcher.waited, watcher.ran)
    waits = [(t["refresh_time"] - t["book_time"]).total_seconds() for t in trials]
    print(f"\nGPU trial pods: {MAX_EVALS} trials of {SLEEP_SECONDS} s, {WORKERS} workers, {GPUS} GPUs: "
          f"{len(watcher.waited)} waited Pending; install to complete {seconds:.1f} s; reserved to result "
          f"max {max(waits):.1f} s (> grace {GRACE_SECONDS} s, no trial lost); {watcher.events} pod events")
    assert max(waits) > GRACE_SECONDS  # a trial outlived the grace while its pod waited: the heartbeat kept it
