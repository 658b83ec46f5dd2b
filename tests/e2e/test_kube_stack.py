"""`pulumi up` of the Kubernetes target (stack kube-ci: the chart with values from the stack config)
against the tests' real API server, through the real engine and the stand-in kubernetes plugin
(tests/kube_server/pulumi.py says why a stand-in). Every object of the chart is created; the
controller manager makes the worker pods, which the monitor's label selector finds; a second preview
changes nothing; `pulumi destroy` removes everything. A context the kubeconfig lacks fails the preview.

No kubelet runs, so no container starts (skipAwait); the workloads running for real is make kind-test.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from kubernetes import client

from hyperfleet.liveness import KubernetesLiveness
from tests.conftest import REPO
from tests.kube_server import gone, wait_until
from tests.kube_server.pulumi import pulumi_engine_env
from tests.pulumi_engine import pulumi_runner

STACK = "kube-ci"
PASSPHRASE = "hyperfleet-kube-ci"  # the test stack's secrets protect nothing of value
NAMESPACE = "hyperfleet-ci"  # Pulumi.kube-ci.yaml
RELEASE = f"hyperfleet-{STACK}"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"


@pytest.fixture
def pulumi(kube_server, tmp_path):
    env = pulumi_engine_env(tmp_path / "state", PASSPHRASE)
    env["KUBECONFIG"] = kube_server.kubeconfig
    run = pulumi_runner(REPO, STACK, env)
    run("stack", "select", "--create")
    yield run
    run("destroy", "--yes", check=False)  # whatever a failed test left


def objects_of_release(kube_api) -> set[tuple[str, str]]:
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    batch, rbac = client.BatchV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    net = client.NetworkingV1Api(kube_api)
    found = set()
    for kind, lister in [
        ("Secret", core.list_namespaced_secret), ("Service", core.list_namespaced_service),
        ("ServiceAccount", core.list_namespaced_service_account), ("ConfigMap", core.list_namespaced_config_map),
        ("StatefulSet", apps.list_namespaced_stateful_set), ("Deployment", apps.list_namespaced_deployment),
        ("Job", batch.list_namespaced_job), ("Role", rbac.list_namespaced_role),
        ("RoleBinding", rbac.list_namespaced_role_binding), ("NetworkPolicy", net.list_namespaced_network_policy),
    ]:
        found |= {(kind, o.metadata.name) for o in lister(NAMESPACE, label_selector=INSTANCE).items}
    return found


@pytest.mark.timeout(600)
def test_pulumi_up_creates_the_chart_on_the_api_server_and_destroy_removes_it(pulumi, kube_api):
    started = time.monotonic()
    pulumi("up", "--yes", "--skip-preview")
    up_seconds = time.monotonic() - started
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)

    found = objects_of_release(kube_api)
    driver = next(name for kind, name in found if kind == "Job")
    assert driver.startswith(f"{RELEASE}-driver-kube-branin-")
    assert found == {
        ("Secret", f"{RELEASE}-mongo-auth"), ("Service", f"{RELEASE}-mongo"), ("StatefulSet", f"{RELEASE}-mongo"),
        ("Deployment", f"{RELEASE}-worker"), ("Deployment", f"{RELEASE}-monitor"),
        ("ServiceAccount", f"{RELEASE}-monitor"), ("Role", f"{RELEASE}-monitor"),
        ("RoleBinding", f"{RELEASE}-monitor"), ("NetworkPolicy", f"{RELEASE}-mongo"),
        ("ConfigMap", driver), ("Job", driver),
    }
    outputs = json.loads(pulumi("stack", "output", "--json").stdout)
    assert outputs["namespace"] == NAMESPACE and outputs["experiments"] == ["kube-branin"]
    assert outputs["chart_resources"] == 10  # the 11 above but our own Secret

    # the stack config reached the objects
    worker = apps.read_namespaced_deployment(f"{RELEASE}-worker", NAMESPACE)
    assert worker.spec.replicas == 2
    assert worker.metadata.annotations["pulumi.com/skipAwait"] == "true"
    pod_spec = worker.spec.template.spec
    assert pod_spec.containers[0].image == "hyperfleet/runtime:test"
    assert pod_spec.containers[0].resources.requests == {"cpu": "250m", "memory": "256Mi"}
    assert pod_spec.tolerations[0].key == "cloud.google.com/gke-spot"
    mongo = apps.read_namespaced_stateful_set(f"{RELEASE}-mongo", NAMESPACE)
    assert mongo.spec.template.spec.containers[0].image == "hyperfleet/test-mongo:test"
    assert mongo.spec.volume_claim_templates[0].spec.resources.requests == {"storage": "1Gi"}
    env = {e.name: e for e in pod_spec.containers[0].env}
    assert env["MONGO_PASSWORD"].value_from.secret_key_ref.name == f"{RELEASE}-mongo-auth"
    assert env["MONGO_URL"].value.endswith("authSource=admin&authMechanism=PLAIN")

    # the password: generated, in the cluster's Secret, and only encrypted in Pulumi's state
    import base64

    secret = core.read_namespaced_secret(f"{RELEASE}-mongo-auth", NAMESPACE)
    password = base64.b64decode(secret.data["password"]).decode()
    assert len(password) >= 24
    state = pulumi("stack", "export").stdout
    assert password not in state and secret.data["password"] not in state

    # the controller manager made the Deployment's pods (Pending: no scheduler); the deployed
    # monitor's label selector finds exactly them, and a deleted one is reported gone
    monitor = apps.read_namespaced_deployment(f"{RELEASE}-monitor", NAMESPACE).spec.template.spec.containers[0]
    selector = next(a.split("=", 1)[1] for a in monitor.args if a.startswith("--label-selector="))
    pods = wait_until(lambda: [p.metadata.name for p in core.list_namespaced_pod(
        NAMESPACE, label_selector=f"{INSTANCE},app.kubernetes.io/component=worker").items] or None, 30, "worker pods")
    liveness = KubernetesLiveness(NAMESPACE, selector, core_api=core)
    liveness.refresh()
    assert sorted(liveness._pods) == sorted(pods) and len(pods) == 2
    core.delete_namespaced_pod(pods[0], NAMESPACE)
    wait_until(lambda: gone(lambda: core.read_namespaced_pod(pods[0], NAMESPACE)), 30, "pod deletion")
    liveness.refresh()
    assert liveness.gone({"pod": pods[0], "namespace": NAMESPACE}) == f"pod {NAMESPACE}/{pods[0]} is gone"
    assert liveness.gone({"pod": pods[1], "namespace": NAMESPACE}) is None

    started = time.monotonic()
    pulumi("preview", "--expect-no-changes")
    preview_seconds = time.monotonic() - started

    started = time.monotonic()
    pulumi("destroy", "--yes")
    destroy_seconds = time.monotonic() - started
    assert gone(lambda: core.read_namespace(NAMESPACE))
    assert not json.loads(pulumi("stack", "export").stdout)["deployment"].get("resources")
    print(f"\nkube-ci: pulumi up {up_seconds:.1f} s, no-op preview {preview_seconds:.1f} s, "
          f"destroy {destroy_seconds:.1f} s")


def test_a_context_the_kubeconfig_lacks_fails_the_preview_naming_it(pulumi, kube_server, tmp_path):
    config = yaml.safe_load((REPO / f"Pulumi.{STACK}.yaml").read_text())
    config["config"]["hyperfleet:kubernetes"]["context"] = "no-such-context"
    config_file = tmp_path / "Pulumi.bad.yaml"
    config_file.write_text(yaml.safe_dump(config))
    result = pulumi("preview", "--config-file", str(config_file), check=False)
    assert result.returncode != 0
    assert ("hyperfleet:kubernetes.context: no context 'no-such-context' in the default kubeconfig "
            "(KUBECONFIG or ~/.kube/config) (it has: hyperfleet-test)") in result.stdout + result.stderr
