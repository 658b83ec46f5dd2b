"""The real pulumi-kubernetes provider plugin (built by `make toolchain`) under the real Pulumi engine,
on the tests' single-node cluster: `pulumi up` of a small pulumi_kubernetes program with an explicit
Provider (Namespace, ConfigMaps, a Secret from a Pulumi secret, a Deployment awaited until its pods
run, a helm.v3.Chart of a local chart), an update that reaches the live object, a preview with no
changes, `pulumi destroy` leaving nothing, and what a provider naming a context the kubeconfig lacks
does. The cluster is the session's (tests/conftest.py: kube_cluster, cluster_api); each run has
its own namespace and state."""

from __future__ import annotations

import base64
import json
import subprocess
import textwrap
import uuid

from importlib.metadata import version

from kubernetes import client

from tests.helpers import REPO
from testbed.kube_cluster import PAUSE_IMAGE
from testbed.kube_server import find_helm, gone
from tests.pulumi_engine import engine_env, pulumi_runner

KUBERNETES_SDK_VERSION = version("pulumi-kubernetes")  # infra/requirements.txt: the plugin's version
PASSPHRASE = "hyperfleet-test"  # protects nothing: a throwaway stack in tmp_path
PASSWORD = "provider-s3cret-value"

PROGRAM = '''\
import os

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.helm.v3 import Chart, LocalChartOpts

cfg = pulumi.Config()
provider = k8s.Provider("k8s", kubeconfig=cfg.require("kubeconfig"), context=cfg.require("context"),
                        namespace=cfg.require("namespace"))
ns = k8s.core.v1.Namespace("ns", metadata={"name": cfg.require("namespace")},
                           opts=pulumi.ResourceOptions(provider=provider))
inside = pulumi.ResourceOptions(provider=provider, depends_on=[ns])

# no metadata.namespace: the provider's namespace
settings = k8s.core.v1.ConfigMap("settings", metadata={"name": "settings"},
                                 data={"greeting": cfg.require("greeting")}, opts=inside)
# values known only after the namespace exists: unknown in the first preview
derived = k8s.core.v1.ConfigMap("derived", metadata={"name": "derived", "namespace": ns.metadata.name},
                                data={"namespaceUid": ns.metadata.uid}, opts=inside)
creds = k8s.core.v1.Secret("creds", metadata={"name": "creds"},
                           string_data={"password": cfg.require_secret("password")}, opts=inside)
labels = {"app": "web"}
web = k8s.apps.v1.Deployment("web", metadata={"name": "web"}, spec={
    "replicas": 2,
    "selector": {"matchLabels": labels},
    "template": {"metadata": {"labels": labels},
                 "spec": {"containers": [{"name": "web", "image": cfg.require("image")}]}},
}, opts=inside)
chart = Chart("tiny", LocalChartOpts(path=os.path.join(os.path.dirname(__file__), "chart"),
                                     namespace=cfg.require("namespace"),
                                     values={"greeting": cfg.require("greeting") + " from helm"}),
              opts=inside)

pulumi.export("greeting", settings.data["greeting"])
pulumi.export("secretData", creds.data)
'''

CHART = {
    "Chart.yaml": "apiVersion: v2\nname: tiny\nversion: 0.1.0\n",
    "values.yaml": "greeting: hello\n",
    "templates/cm.yaml": textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-cm
        data:
          greeting: {{ .Values.greeting | quote }}
        """),
    "templates/sa.yaml": textwrap.dedent("""\
        apiVersion: v1
        kind: ServiceAccount
        metadata:
          name: {{ .Release.Name }}-sa
        """),
}


def write_project(directory, stack: str, settings: dict[str, str], secrets: dict[str, str], state_dir):
    """A Pulumi project in ``directory`` (PROGRAM, the chart), a stack with its config; its `pulumi` runner."""
    pulumi = pulumi_runner(directory, stack, engine_env(state_dir, PASSPHRASE), timeout_seconds=300)
    assert find_helm() is not None, "no helm: run testbed/install/helm.sh (make kube-server)"
    (directory / "Pulumi.yaml").write_text(
        f"name: provider-test\nruntime:\n  name: python\n  options:\n    virtualenv: {REPO / '.venv'}\n")
    (directory / "__main__.py").write_text(PROGRAM)
    for name, text in CHART.items():
        path = directory / "chart" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    pulumi("stack", "init")
    for key, value in settings.items():
        pulumi("config", "set", key, value)
    for key, value in secrets.items():
        pulumi("config", "set", "--secret", key, value)
    return pulumi


def test_up_update_preview_destroy(kube_cluster, cluster_api, tmp_path):
    namespace = "provider-" + uuid.uuid4().hex[:8]
    project = tmp_path / "project"
    project.mkdir()
    pulumi = write_project(project, "test", {
        "kubeconfig": kube_cluster.kubeconfig, "context": kube_cluster.context, "namespace": namespace,
        "greeting": "hello", "image": PAUSE_IMAGE}, {"password": PASSWORD}, tmp_path / "state")
    core, apps = client.CoreV1Api(cluster_api), client.AppsV1Api(cluster_api)

    # the engine runs the plugin built here, installed under the SDK's version, not an ambient one
    plugins = subprocess.run(["pulumi", "plugin", "ls"], env=engine_env(tmp_path / "state", PASSPHRASE),
                             capture_output=True, text=True, check=True).stdout
    assert any(line.split()[:3] == ["kubernetes", "resource", KUBERNETES_SDK_VERSION] for line in plugins.splitlines()), plugins
    preview = pulumi("preview")  # unknowns (the namespace's uid, the derived ConfigMap's namespace) pass
    assert "from $PATH" not in preview.stdout + preview.stderr
    assert gone(lambda: core.read_namespace(namespace))  # a preview touches nothing

    pulumi("up", "--yes", "--skip-preview")
    ns = core.read_namespace(namespace)
    assert core.read_namespaced_config_map("settings", namespace).data == {"greeting": "hello"}
    assert core.read_namespaced_config_map("derived", namespace).data == {"namespaceUid": ns.metadata.uid}
    assert base64.b64decode(core.read_namespaced_secret("creds", namespace).data["password"]).decode() == PASSWORD
    deployment = apps.read_namespaced_deployment("web", namespace)
    assert deployment.spec.replicas == 2
    assert deployment.status.ready_replicas == 2  # the provider awaited the Deployment's pods
    assert core.read_namespaced_config_map("tiny-cm", namespace).data == {"greeting": "hello from helm"}
    core.read_namespaced_service_account("tiny-sa", namespace)

    # the secret stays secret in the state: encrypted, neither plain nor base64-encoded
    exported = pulumi("stack", "export").stdout
    assert PASSWORD not in exported and base64.b64encode(PASSWORD.encode()).decode() not in exported
    resources = {r["urn"].split("::")[-1]: r for r in json.loads(exported)["deployment"]["resources"]}
    secret_outputs = resources["creds"]["outputs"]
    assert "ciphertext" in secret_outputs["data"], secret_outputs.get("data")
    # the id and outputs are those of the live object
    assert resources["web"]["id"] == f"{namespace}/web"
    assert resources["web"]["outputs"]["metadata"]["uid"] == deployment.metadata.uid

    pulumi("config", "set", "greeting", "bonjour")
    pulumi("up", "--yes", "--skip-preview")
    assert core.read_namespaced_config_map("settings", namespace).data == {"greeting": "bonjour"}
    assert core.read_namespaced_config_map("tiny-cm", namespace).data == {"greeting": "bonjour from helm"}
    assert core.read_namespace(namespace).metadata.uid == ns.metadata.uid  # updated in place, not replaced
    assert apps.read_namespaced_deployment("web", namespace).metadata.uid == deployment.metadata.uid

    pulumi("preview", "--expect-no-changes")

    pulumi("destroy", "--yes", "--skip-preview")
    assert gone(lambda: core.read_namespace(namespace))  # Delete waited for the namespace to go
    for read in (lambda: core.read_namespaced_config_map("settings", namespace),
                 lambda: core.read_namespaced_secret("creds", namespace),
                 lambda: apps.read_namespaced_deployment("web", namespace),
                 lambda: core.read_namespaced_config_map("tiny-cm", namespace)):
        assert gone(read)
    state = json.loads(pulumi("stack", "export").stdout)["deployment"]
    assert not state.get("resources")


def test_unknown_context_passes_the_providers_preview_and_fails_up_naming_it(kube_cluster, cluster_api, tmp_path):
    """What the provider does with a context its kubeconfig lacks: nothing in preview, an error at up.
    This is why hyperfleet's stack config checks the context itself, before anything is planned
    (tests/e2e/test_kube_stack.py: the preview fails naming it)."""
    project = tmp_path / "project"
    project.mkdir()
    with open(kube_cluster.kubeconfig) as f:
        kubeconfig_text = f.read()  # the kubeconfig's content, not its path, this time
    pulumi = write_project(project, "bad", {
        "kubeconfig": kubeconfig_text, "context": "no-such-context", "namespace": "provider-bad",
        "greeting": "hello", "image": PAUSE_IMAGE}, {"password": PASSWORD}, tmp_path / "state")
    assert "+ 10 to create" in pulumi("preview").stdout
    result = pulumi("up", "--yes", "--skip-preview", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert 'context "no-such-context" does not exist' in output, output
    assert gone(lambda: client.CoreV1Api(cluster_api).read_namespace("provider-bad"))
