"""Liveness checks at their clients' boundaries (the real Docker path is in test_monitor.py)."""

import os
import subprocess
import time
import sys

from kubernetes.client import V1ObjectMeta, V1Pod, V1PodList, V1PodStatus
from kubernetes.client.exceptions import ApiException

from hyperfleet.liveness import DockerLiveness, KubernetesLiveness, ProcessLiveness, process_start_ticks


class FakeCoreV1:
    """Stands in for kubernetes.client.CoreV1Api: records the call, answers with real model objects."""

    def __init__(self, pods=None, error=None):
        self.pods, self.error, self.calls = pods or {}, error, []

    def list_namespaced_pod(self, namespace, label_selector=None):
        self.calls.append((namespace, label_selector))
        if self.error:
            raise self.error
        return V1PodList(items=[V1Pod(metadata=V1ObjectMeta(name=n), status=V1PodStatus(phase=phase))
                                for n, phase in self.pods.items()])


def test_kubernetes_pod_states():
    api = FakeCoreV1({"w-running": "Running", "w-pending": "Pending", "w-failed": "Failed", "w-done": "Succeeded"})
    check = KubernetesLiveness("hf", "app=worker", core_api=api)
    check.refresh()
    assert api.calls == [("hf", "app=worker")]
    assert check.gone({"pod": "w-running", "namespace": "hf"}) is None
    assert check.gone({"pod": "w-pending", "namespace": "hf"}) is None
    assert check.gone({"pod": "w-failed", "namespace": "hf"}) == "pod hf/w-failed is Failed"
    assert check.gone({"pod": "w-done", "namespace": "hf"}) == "pod hf/w-done is Succeeded"
    assert check.gone({"pod": "w-deleted", "namespace": "hf"}) == "pod hf/w-deleted is gone"
    assert check.gone({"pod": "elsewhere", "namespace": "other"}) is None  # not ours to judge
    assert check.gone({"host": "laptop", "pid": 1}) is None


def test_kubernetes_api_unreachable_falls_back_to_heartbeats():
    check = KubernetesLiveness("hf", core_api=FakeCoreV1(error=ApiException(status=503, reason="unavailable")))
    check.refresh()
    assert not check.enabled
    assert check.gone({"pod": "anything", "namespace": "hf"}) is None


def test_docker_engine_unreachable_falls_back_to_heartbeats(tmp_path):
    check = DockerLiveness(f"unix://{tmp_path}/no-such.sock")
    check.refresh()
    assert not check.enabled
    assert check.gone({"container": "w1"}) is None


def test_process_liveness_on_this_host():
    check = ProcessLiveness(hostname="here")
    me = {"host": "here", "pid": os.getpid(), "pid_start": process_start_ticks(os.getpid())}
    assert check.gone(me) is None
    assert check.gone({**me, "pid_start": me["pid_start"] + 1}).endswith("(pid reused)")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child_started = process_start_ticks(child.pid)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert check.gone({"host": "here", "pid": child.pid, "pid_start": child_started}) == f"process {child.pid} on here exited"
    child.wait()
    assert check.gone({"host": "here", "pid": child.pid}) == f"process {child.pid} on here is gone"
    assert check.gone({"host": "another-host", "pid": child.pid}) is None
    assert check.gone({**me, "container": "c1"}) is None  # judged by the docker check


class FakeDockerApi:
    """The one call DockerLiveness makes, answered like the engine answers it."""

    def containers(self, all, filters):
        return [{"Id": "a" * 64, "Names": ["/hyperfleet-worker-0"], "State": "running"}]


class FakeDockerClient:
    api = FakeDockerApi()


def test_docker_liveness_judges_only_workers_on_its_own_engine():
    check = DockerLiveness(client=FakeDockerClient(), engine_id="unix:///var/run/docker.sock")
    check.refresh()
    assert check.gone({"container": "hyperfleet-worker-0", "engine": "unix:///var/run/docker.sock"}) is None
    assert check.gone({"container": "hyperfleet-worker-1", "engine": "unix:///var/run/docker.sock"}) == \
        "container hyperfleet-worker-1 is gone"
    assert check.gone({"container": "hyperfleet-worker-1", "engine": "ssh://gpu-2"}) is None  # another host


def test_an_unreachable_engine_is_tried_again_later(monkeypatch):
    """A remote engine that did not answer once (an ssh hiccup) is asked again after RETRY_SECONDS,
    and judged again once it answers."""
    class FlakyApi(FakeDockerApi):
        calls = 0

        def containers(self, all, filters):
            FlakyApi.calls += 1
            if FlakyApi.calls == 1:
                raise ConnectionError("ssh: connect to host gpu-1 port 22: Connection timed out")
            return super().containers(all, filters)

    class FlakyClient:
        api = FlakyApi()

    monkeypatch.setattr(DockerLiveness, "RETRY_SECONDS", 0.3)
    check = DockerLiveness(client=FlakyClient(), engine_id="ssh://gpu-1")
    worker = {"container": "hyperfleet-worker-1", "engine": "ssh://gpu-1"}
    check.refresh()
    assert not check.enabled and check.gone(worker) is None  # heartbeats only meanwhile
    check.refresh()
    assert FlakyApi.calls == 1  # too soon: not asked
    time.sleep(0.35)
    check.refresh()
    assert FlakyApi.calls == 2 and check.enabled
    assert check.gone(worker) == "container hyperfleet-worker-1 is gone"


def test_the_monitor_builds_the_checks_its_liveness_names_and_only_those():
    """One docker check per engine (this machine's and each --docker-engine), none without "docker"."""
    from hyperfleet.monitor import build_checks
    from hyperfleet.settings import MonitorSettings

    def kinds(liveness, **settings):
        return [type(c) for c in build_checks(MonitorSettings(liveness=liveness, **settings))]
    assert kinds(("process",), docker_engines=("ssh://a",)) == [ProcessLiveness]
    assert kinds(()) == []
    assert kinds(("process", "docker"), docker_engines=("ssh://a", "tcp://b:2376")) == \
        [ProcessLiveness, DockerLiveness, DockerLiveness, DockerLiveness]
