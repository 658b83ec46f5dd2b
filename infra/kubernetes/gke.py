"""The GKE target's cluster: a new regional cluster with its own node pool, or an existing one by name.

Either way the result is a kubernetes Provider built from the cluster's endpoint and CA, which
authenticates through ``gke-gcloud-auth-plugin`` (the gcloud component every GKE user has); the rest
of the deployment is the same as on any cluster (target.py).
"""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s

from ..config import StackConfig

#: the workers' nodes (and Mongo's) may call Google APIs their service account allows (GCS for data)
OAUTH_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def cluster_provider(config: StackConfig, stack: str) -> tuple[k8s.Provider, dict]:
    try:
        import pulumi_gcp as gcp
    except ImportError:
        raise pulumi.RunError("the gke target needs pulumi-gcp: pip install -r infra/requirements-gke.txt") from None
    g = config.gke
    gcp_provider = gcp.Provider("gcp", project=g.project, region=g.region)
    if g.cluster:
        existing = gcp.container.get_cluster_output(name=g.cluster, location=g.region, project=g.project,
                                                    opts=pulumi.InvokeOutputOptions(provider=gcp_provider))
        name, endpoint = existing.name, existing.endpoint
        ca = existing.master_auths.apply(lambda auths: auths[0].cluster_ca_certificate)
        depends_on = []
    else:
        cluster = gcp.container.Cluster(
            "gke-cluster",
            name=f"hyperfleet-{stack}",
            location=g.region,
            # the default pool cannot be changed in place; ours below can (machine type, size, spot)
            remove_default_node_pool=True,
            initial_node_count=1,
            deletion_protection=False,
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel="REGULAR"),
            resource_labels={"hyperfleet-stack": stack},
            opts=pulumi.ResourceOptions(provider=gcp_provider))
        pool = gcp.container.NodePool(
            "gke-nodes",
            cluster=cluster.name,
            location=g.region,
            node_count=g.node_count,
            node_config=gcp.container.NodePoolNodeConfigArgs(
                machine_type=g.machine_type, spot=g.spot, oauth_scopes=OAUTH_SCOPES,
                labels={"hyperfleet-stack": stack}),
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            opts=pulumi.ResourceOptions(provider=gcp_provider))
        name, endpoint = cluster.name, cluster.endpoint
        ca = cluster.master_auth.cluster_ca_certificate
        depends_on = [pool]
    kubeconfig = pulumi.Output.all(name, endpoint, ca).apply(lambda a: gke_kubeconfig(*a))
    provider = k8s.Provider("gke", kubeconfig=kubeconfig, namespace=config.kubernetes.namespace,
                            opts=pulumi.ResourceOptions(depends_on=depends_on))
    return provider, {"gke_cluster": name, "gke_endpoint": endpoint}


def gke_kubeconfig(name: str, endpoint: str, ca_certificate: str) -> str:
    """A kubeconfig (JSON is YAML) for the cluster; credentials come from gke-gcloud-auth-plugin."""
    context = f"gke-{name}"
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": context, "cluster": {"server": f"https://{endpoint}",
                                                   "certificate-authority-data": ca_certificate}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "users": [{"name": context, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "gke-gcloud-auth-plugin",
            "installHint": "gcloud components install gke-gcloud-auth-plugin", "provideClusterInfo": True}}}],
    })
