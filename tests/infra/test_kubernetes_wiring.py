"""The kubernetes (any kubeconfig context; kind is its former name) and GKE targets' wiring, with Pulumi's
mocks (no engine, no cluster): the explicit providers, the Secret, the values given to the chart, and the
GKE cluster and node pool. What the chart makes of the values is tested on the chart itself (tests/chart);
the real run is tests/e2e."""

import json

import pulumi
import pytest

from infra.config import ConfigError, parse_config
from tests.infra.test_docker_wiring import SECRET_SIG, by_type, resolved

EXPERIMENT = {"name": "demo", "objective": "hyperfleet.demo:branin", "algo": "rand", "max_evals": 5,
              "space": {"x": {"uniform": [-5, 10]}, "y": {"uniform": [0, 15]}}}
CLUSTER_CA = "Q0EtREFUQQ=="


class Mocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.created, self.calls = [], []

    def new_resource(self, args):
        self.created.append(args)
        outputs = dict(args.inputs)
        if args.typ == "pulumi-python:dynamic:Resource":
            outputs["result"] = "s3cr3t-pw"
        if args.typ == "gcp:container/cluster:Cluster":
            outputs.update(endpoint="34.1.2.3", masterAuth={"clusterCaCertificate": CLUSTER_CA})
        return [f"{args.name}-id", outputs]

    def call(self, args):
        self.calls.append(args)
        if args.token == "gcp:container/getCluster:getCluster":
            return {"name": args.args["name"], "endpoint": "35.9.9.9",
                    "masterAuths": [{"clusterCaCertificate": CLUSTER_CA}]}
        return {"result": []}  # kubernetes:helm:template: the chart's rendering is tested in tests/chart


def write_kubeconfig(path, *contexts, current=None):
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": current or "",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": n, "context": {"cluster": "c", "user": "u"}} for n in contexts]}))
    return str(path)


def deploy(raw: dict, stack: str = "t"):
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="hyperfleet", stack=stack, preview=False)
    from infra.kubernetes import target

    outputs = target.deploy(parse_config(raw), stack)
    resolved(pulumi.Output.all(*outputs.values()))
    return mocks, outputs


def on_provider(mocks, provider_urn_part: str) -> bool:
    """Every Kubernetes object, and the chart's rendering, go through the target's explicit provider."""
    objects = [r for r in mocks.created if r.typ.startswith("kubernetes:") and r.typ != "kubernetes:helm.sh/v3:Chart"]
    [template] = [c for c in mocks.calls if c.token == "kubernetes:helm:template"]
    return len(objects) >= 2 and all(provider_urn_part in (r.provider or "") for r in objects) and \
        provider_urn_part in (template.provider or "")


def helm_values(mocks) -> dict:
    [call] = [c for c in mocks.calls if c.token == "kubernetes:helm:template"]
    return json.loads(call.args["jsonOpts"])


def test_kind_uses_the_named_context_and_gives_the_chart_the_config(tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "kind-a", "kind-hyperfleet", current="kind-a")
    mocks, outputs = deploy({
        "target": "kind",
        "kubernetes": {"kubeconfig": kubeconfig, "context": "kind-hyperfleet", "namespace": "ml", "skipAwait": True},
        "workers": {"replicas": 5, "resources": {"cpu": "2", "memory": "4Gi"}, "env": {"OMP_NUM_THREADS": "1"},
                    "nodeSelector": {"pool": "gpu"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
        "mongo": {"image": "registry.local:5000/mongo:7.0", "storage": "50Gi", "authMechanism": "SCRAM-SHA-1"},
        "monitor": {"graceSeconds": 30, "policy": "error"},
        "images": {"runtime": "registry.local:5000/hyperfleet/runtime:1.2"},
        "experiments": [EXPERIMENT],
    }, stack="exp")
    [provider] = by_type(mocks, "pulumi:providers:kubernetes")
    assert provider.inputs["context"] == "kind-hyperfleet" and provider.inputs["kubeconfig"] == kubeconfig
    assert provider.inputs["namespace"] == "ml"
    [namespace] = by_type(mocks, "kubernetes:core/v1:Namespace")
    assert namespace.inputs["metadata"]["name"] == "ml"
    [secret] = by_type(mocks, "kubernetes:core/v1:Secret")
    assert SECRET_SIG in json.dumps(secret.inputs["stringData"])  # the password reaches the engine as a secret
    assert secret.inputs["metadata"]["name"] == "hyperfleet-exp-mongo-auth"
    assert on_provider(mocks, "pulumi:providers:kubernetes::kubernetes::")

    opts = helm_values(mocks)
    assert opts["path"].endswith("charts/hyperfleet") and opts["namespace"] == "ml" and opts["release_name"] == "hyperfleet-exp"
    values = opts["values"]
    assert values["image"] == {"repository": "registry.local:5000/hyperfleet/runtime", "tag": "1.2",
                               "pullPolicy": "IfNotPresent"}
    assert values["mongo"]["image"] == {"repository": "registry.local:5000/mongo", "tag": "7.0"}
    assert values["mongo"]["auth"] == {"existingSecret": "hyperfleet-exp-mongo-auth", "username": "hyperfleet",
                                       "mechanism": "SCRAM-SHA-1"}
    assert values["mongo"]["persistence"] == {"size": "50Gi"}
    workers = values["workers"]
    assert workers["replicas"] == 5 and workers["nodeSelector"] == {"pool": "gpu"}
    assert workers["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    assert workers["extraEnv"] == [{"name": "OMP_NUM_THREADS", "value": "1"}]
    assert workers["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert values["monitor"]["graceSeconds"] == 30 and values["monitor"]["policy"] == "error"
    assert values["experiments"] == [EXPERIMENT]
    # pulumi up awaits the workloads' readiness, not the end of the search
    assert values["driver"] == {"jobAnnotations": {"pulumi.com/skipAwait": "true"}}
    assert "password" not in json.dumps(values["mongo"])  # it stays in the Secret
    assert outputs["experiments"] == ["demo"] and resolved(outputs["namespace"]) == "ml"


def test_kind_without_a_context_takes_the_current_one(tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "a", "b", current="b")
    mocks, _ = deploy({"target": "kubernetes", "kubernetes": {"kubeconfig": kubeconfig}})
    assert by_type(mocks, "pulumi:providers:kubernetes")[0].inputs["context"] == "b"


@pytest.mark.parametrize("contexts,current,context,message", [
    (("kind-a",), "kind-a", "kind-hyperfleet",
     "hyperfleet:kubernetes.context: no context 'kind-hyperfleet' in {path} (it has: kind-a)"),
    (("a", "b"), None, None, "hyperfleet:kubernetes.context: {path} has no current context; name one (it has: a, b)"),
])
def test_a_missing_context_is_a_config_error_naming_it(tmp_path, contexts, current, context, message):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", *contexts, current=current)
    with pytest.raises(ConfigError) as err:
        deploy({"target": "kubernetes", "kubernetes": {"kubeconfig": kubeconfig, "context": context}})
    assert err.value.problems == [message.format(path=kubeconfig)]


def test_an_unreadable_kubeconfig_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        deploy({"target": "kubernetes", "kubernetes": {"kubeconfig": str(tmp_path / "missing")}})
    assert err.value.problems[0].startswith(f"hyperfleet:kubernetes.kubeconfig: cannot read {tmp_path / 'missing'}")


def needs_gke_extra() -> None:
    """The one skip of the suite: GKE is an optional extra (infra/requirements-gke.txt; make install has it)."""
    pytest.importorskip("pulumi_gcp", reason="the optional pulumi-gcp extra (infra/requirements-gke.txt) is not installed")


def test_gke_creates_a_cluster_and_a_spot_node_pool_and_deploys_through_it():
    needs_gke_extra()
    mocks, outputs = deploy({"target": "gke", "gke": {"project": "ml-proj", "region": "europe-west1",
                                                      "machineType": "n2-standard-8", "nodeCount": 3, "spot": True},
                             "workers": {"nodeSelector": {"cloud.google.com/gke-spot": "true"}}}, stack="prod")
    [gcp] = by_type(mocks, "pulumi:providers:gcp")
    assert gcp.inputs["project"] == "ml-proj" and gcp.inputs["region"] == "europe-west1"
    [cluster] = by_type(mocks, "gcp:container/cluster:Cluster")
    assert cluster.inputs["name"] == "hyperfleet-prod" and cluster.inputs["location"] == "europe-west1"
    assert cluster.inputs["removeDefaultNodePool"] is True
    [pool] = by_type(mocks, "gcp:container/nodePool:NodePool")
    assert pool.inputs["nodeCount"] == 3 and pool.inputs["cluster"] == "hyperfleet-prod"
    assert pool.inputs["nodeConfig"]["machineType"] == "n2-standard-8" and pool.inputs["nodeConfig"]["spot"] is True
    assert all(r.provider and "pulumi:providers:gcp" in r.provider for r in (cluster, pool))
    [provider] = by_type(mocks, "pulumi:providers:kubernetes")
    kubeconfig = json.loads(provider.inputs["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"] == {"server": "https://34.1.2.3", "certificate-authority-data": CLUSTER_CA}
    assert kubeconfig["users"][0]["user"]["exec"]["command"] == "gke-gcloud-auth-plugin"
    assert on_provider(mocks, "pulumi:providers:kubernetes::gke::")
    assert helm_values(mocks)["values"]["workers"]["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    assert resolved(outputs["gke_cluster"]) == "hyperfleet-prod"


def test_gke_with_an_existing_cluster_looks_it_up_and_creates_none():
    needs_gke_extra()
    mocks, outputs = deploy({"target": "gke", "gke": {"project": "ml-proj", "region": "us-central1",
                                                      "cluster": "shared"}})
    assert not by_type(mocks, "gcp:container/cluster:Cluster") and not by_type(mocks, "gcp:container/nodePool:NodePool")
    [lookup] = [c for c in mocks.calls if c.token == "gcp:container/getCluster:getCluster"]
    assert lookup.args == {"name": "shared", "location": "us-central1", "project": "ml-proj"}
    kubeconfig = json.loads(by_type(mocks, "pulumi:providers:kubernetes")[0].inputs["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://35.9.9.9"
    assert resolved(outputs["gke_cluster"]) == "shared"


def test_the_dashboards_token_goes_into_a_secret_the_chart_reads(tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "kind-a", current="kind-a")
    pulumi.runtime.set_all_config({"hyperfleet:dashboardToken": "t0k3n"}, secret_keys=["hyperfleet:dashboardToken"])
    try:
        mocks, _ = deploy({"target": "kubernetes", "kubernetes": {"kubeconfig": kubeconfig},
                           "dashboard": {"enabled": True, "port": 9100}, "experiments": [EXPERIMENT]}, stack="exp")
    finally:
        pulumi.runtime.set_all_config({})
    secrets = {s.inputs["metadata"]["name"]: s for s in by_type(mocks, "kubernetes:core/v1:Secret")}
    token = secrets["hyperfleet-exp-dashboard"]
    assert SECRET_SIG in json.dumps(token.inputs["stringData"])
    assert "t0k3n" in json.dumps(token.inputs["stringData"])  # inside the secret envelope
    assert helm_values(mocks)["values"]["dashboard"] == {"enabled": True, "port": 9100, "serviceType": "ClusterIP",
                                                          "readToken": False,
                                                          "existingSecret": "hyperfleet-exp-dashboard", "tokenKey": "token"}
    mocks, _ = deploy({"target": "kubernetes", "kubernetes": {"kubeconfig": kubeconfig}, "experiments": [EXPERIMENT]})
    assert helm_values(mocks)["values"]["dashboard"] == {"enabled": False, "port": 8090, "serviceType": "ClusterIP",
                                                          "readToken": False}
    assert [s.inputs["metadata"]["name"] for s in by_type(mocks, "kubernetes:core/v1:Secret")] == ["hyperfleet-t-mongo-auth"]
