"""The test Kubernetes API server (testbed/kube_server) against the official Python client: what later
tests of Kubernetes deployments rely on. No kubelet runs, so tests play its part by patching Pod status."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from testbed.kube_server import KUBE_VERSION, gone, wait_until
from tests.helpers import REPO


def test_server_reports_its_version(kube_api):
    info = client.VersionApi(kube_api).get_code()
    assert info.git_version == KUBE_VERSION
    assert info.major == "1" and info.minor == KUBE_VERSION.split(".")[1]


def test_another_process_finds_the_runs_one_server_by_its_state_file(kube_server):
    """The run's processes share one server: one starts it, the others read its port from its directory
    (tests/shared_run.py), and so does a process that only looks."""
    found = subprocess.run(
        [sys.executable, "-c", "from testbed.kube_server import SHARED_DATA_DIR, KubeServer; "
         "s = KubeServer(data_dir=SHARED_DATA_DIR); print(s.running(), s.url, s.kubeconfig)"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert found == ["True", kube_server.url, kube_server.kubeconfig]
    commands = [open(f"/proc/{pid}/comm").read().strip() for pid in kube_server._saved_state()["pids"]]
    assert commands == ["kube-controller", "kube-apiserver", "etcd"]


def test_kubeconfig_has_named_context(kube_server):
    contexts, current = config.list_kube_config_contexts(config_file=kube_server.kubeconfig)
    assert current["name"] == kube_server.context == "hyperfleet-test"
    assert [c["name"] for c in contexts] == ["hyperfleet-test"]


def test_pod_lifecycle_with_status_patched_as_a_kubelet_would(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="worker-0", labels={"app": "hyperfleet-worker"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="worker", image="hyperfleet/runtime:test")]),
    )
    created = core.create_namespaced_pod(namespace, pod)
    assert created.status.phase == "Pending"
    # ServiceAccount admission ran, as in a real cluster
    assert created.spec.service_account_name == "default"

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    patched = core.patch_namespaced_pod_status("worker-0", namespace, {"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
        "containerStatuses": [{"name": "worker", "image": "hyperfleet/runtime:test", "imageID": "",
                               "ready": True, "restartCount": 0, "state": {"running": {"startedAt": now}}}],
    }})
    assert patched.status.phase == "Running"
    read = core.read_namespaced_pod("worker-0", namespace)
    assert read.status.phase == "Running"
    assert read.status.container_statuses[0].ready is True
    pods = core.list_namespaced_pod(namespace, label_selector="app=hyperfleet-worker").items
    assert [p.metadata.name for p in pods] == ["worker-0"]

    core.delete_namespaced_pod("worker-0", namespace)
    # a Pod never bound to a node is removed at once (no kubelet to confirm termination)
    wait_until(lambda: gone(lambda: core.read_namespaced_pod("worker-0", namespace)), 30, "pod deletion")


def test_namespace_deletion_completes(kube_api):
    """Needs kube-controller-manager's namespace controller: it empties the namespace, then finalizes it."""
    core = client.CoreV1Api(kube_api)
    name = "t-" + uuid.uuid4().hex[:10]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"k": "v"}))
    core.delete_namespace(name)
    try:  # the API server only marks it; the controller empties and removes it (maybe already has)
        assert core.read_namespace(name).status.phase == "Terminating"
    except ApiException as e:
        assert e.status == 404
    wait_until(lambda: gone(lambda: core.read_namespace(name)), 60, f"deletion of namespace {name}")


def test_garbage_collector_deletes_dependents(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="dependent", owner_references=[ref])))
    core.delete_namespaced_config_map("owner", namespace)
    wait_until(lambda: gone(lambda: core.read_namespaced_config_map("dependent", namespace)), 60, "garbage collection")


def test_deployment_makes_pending_pods(kube_api, namespace):
    """The deployment and replicaset controllers run; pods stay Pending (no scheduler, no kubelet)."""
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    labels = {"app": "w"}
    apps.create_namespaced_deployment(namespace, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="w"),
        spec=client.V1DeploymentSpec(
            replicas=2, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="w", image="hyperfleet/runtime:test")])))))
    pods = wait_until(lambda: (lambda items: items if len(items) == 2 else None)(
        core.list_namespaced_pod(namespace, label_selector="app=w").items), 60, "two pods of the deployment")
    assert {p.status.phase for p in pods} == {"Pending"}


def test_helm_installs_a_chart(helm, kube_server, kube_api, namespace, tmp_path):
    chart = tmp_path / "cm-chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: cm-chart\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n")
    common = ["--kubeconfig", kube_server.kubeconfig, "--kube-context", kube_server.context, "-n", namespace]

    rendered = helm("template", "r1", str(chart), "--set", "greeting=hi").stdout
    assert "name: r1-cm" in rendered and 'greeting: "hi"' in rendered

    helm("install", "r1", str(chart), "--wait", "--timeout", "60s", *common)
    cm = client.CoreV1Api(kube_api).read_namespaced_config_map("r1-cm", namespace)
    assert cm.data == {"greeting": "hello"}
    assert helm("list", "-q", *common).stdout.split() == ["r1"]
    helm("uninstall", "r1", "--wait", *common)
    assert gone(lambda: client.CoreV1Api(kube_api).read_namespaced_config_map("r1-cm", namespace))


def test_a_stale_state_file_stops_no_process_that_is_not_the_servers(tmp_path):
    """A crashed run's state file may name pids that other processes have since: they are left alone."""
    from testbed.kube_server import KubeServer

    other = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "state.json").write_text(json.dumps({"port": 1, "pids": [other.pid]}))
        server = KubeServer(data_dir=str(tmp_path))
        assert not server.running()
        server.down()
        assert other.poll() is None
        assert not tmp_path.exists()
    finally:
        other.kill()
        other.wait()
