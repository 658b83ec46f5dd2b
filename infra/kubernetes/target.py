"""The Kubernetes targets: hyperfleet's Helm chart (charts/hyperfleet) on a cluster, through an explicit provider.

``kubernetes`` (``kind`` is the same) means any existing cluster reached by a kubeconfig context (kind,
minikube, a test API server, ...); ``gke`` gets its cluster from gke.py (created, or an existing one).
Both then deploy a KubernetesTarget: its children are the Namespace, the Mongo credentials as a Secret
(the password generated once and kept secret in the state), the dashboard's token Secret when the
dashboard is on, and the chart with the values values.py maps from the stack config.

The component was called Release, and its children were top-level resources before it existed: its type
token and the children's aliases keep an existing stack's objects in place (no replacement) when it is
updated.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
from hyperfleet.contract import K8S_STACK_LABEL, MONGO_URL_ENV

from ..config import NAMESPACE, ConfigError, StackConfig, dashboard_token
from ..password import GeneratedPassword
from .values import chart_values

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "hyperfleet"
#: the component's type token (it was the class Release)
RELEASE_TYPE = "hyperfleet:index:Release"


def deploy(config: StackConfig, stack: str) -> dict:
    if config.target == "gke":
        from . import gke

        provider, outputs = gke.cluster_provider(config, stack)
    else:
        provider, outputs = context_provider(config), {}
    release = KubernetesTarget(f"hyperfleet-{stack}", KubernetesTargetArgs(
        stack=stack, namespace=config.kubernetes.namespace, username=config.mongo.username,
        chart=Path(config.kubernetes.chart) if config.kubernetes.chart else CHART,
        values=chart_values(config, stack), provider=provider, skip_await=config.kubernetes.skip_await,
        dashboard_token=dashboard_token() if config.dashboard.enabled else None))
    specs = config.experiment_specs()
    monitor = f"deploy/{release.name}-monitor"
    return {
        **outputs,
        "namespace": release.namespace,
        "release": release.name,
        "chart_resources": release.object_count,
        "experiments": [s.key for s in specs],
        "status_command": f"kubectl -n {config.kubernetes.namespace} exec {monitor} -- "
                          f"sh -c 'hyperfleet status --mongo \"${MONGO_URL_ENV}\"'",
    }


def context_provider(config: StackConfig) -> k8s.Provider:
    """The provider of an existing cluster, by kubeconfig context; a missing context fails the preview."""
    kube = config.kubernetes
    context = check_context(kube.kubeconfig, kube.context)
    return k8s.Provider("kubernetes", kubeconfig=kube.kubeconfig, context=context, namespace=kube.namespace)


def check_context(kubeconfig: str | None, context: str | None) -> str:
    """The context to use (the given one, else the kubeconfig's current one); ConfigError when absent.

    Without this, a wrong context surfaces late and far from its cause (as an unreachable cluster).
    """
    from kubernetes.config.kube_config import KUBE_CONFIG_DEFAULT_LOCATION, KubeConfigMerger

    where = kubeconfig or "the default kubeconfig (KUBECONFIG or ~/.kube/config)"
    try:  # the merge of KUBECONFIG's files, as kubectl and the kubernetes provider do it
        merged = KubeConfigMerger(kubeconfig or KUBE_CONFIG_DEFAULT_LOCATION).config
    except Exception as err:  # unreadable or not a kubeconfig: say which file
        raise ConfigError([f"{NAMESPACE}:kubernetes.kubeconfig: cannot read {where}: {err}"]) from None
    if merged is None:
        raise ConfigError([f"{NAMESPACE}:kubernetes.kubeconfig: cannot read {where}: no such file"])
    names = sorted(c["name"] for c in merged.safe_get("contexts") or [])
    current = merged.safe_get("current-context")
    if context is None:
        if not current:
            raise ConfigError([f"{NAMESPACE}:kubernetes.context: {where} has no current context; name one "
                               f"(it has: {', '.join(names) or 'none'})"])
        return current
    if context not in names:
        raise ConfigError([f"{NAMESPACE}:kubernetes.context: no context {context!r} in {where} "
                           f"(it has: {', '.join(names) or 'none'})"])
    return context


@dataclasses.dataclass
class KubernetesTargetArgs:
    stack: str
    namespace: str
    #: the Mongo root user; its password is generated
    username: str
    chart: Path
    #: the chart's values, except the Secret's name (added here)
    values: dict
    provider: k8s.Provider
    #: no kubelet (API-server-only test clusters): do not wait for workloads to become ready
    skip_await: bool = False
    #: the dashboard's token (a secret): kept in a Secret the monitor reads; None: its actions are off
    dashboard_token: pulumi.Input[str] | None = None


class KubernetesTarget(pulumi.ComponentResource):
    #: the release's name (the chart's fullnameOverride), and the namespace it is in
    name: str
    namespace: pulumi.Output[str]
    #: how many Kubernetes objects the chart made
    object_count: pulumi.Output[int]

    def __init__(self, name: str, args: KubernetesTargetArgs, opts: pulumi.ResourceOptions | None = None):
        # the type it had as Release: a component's type is part of its children's URNs, so deployed
        # stacks keep every Kubernetes object in place
        super().__init__(RELEASE_TYPE, name, None, opts)
        # created at the top level before this component existed: these aliases keep them in place
        was_top_level = [pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)]
        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.provider, aliases=was_top_level)
        self.name = name
        secret_name = f"{name}-mongo-auth"
        namespace = k8s.core.v1.Namespace(
            "namespace", metadata=k8s.meta.v1.ObjectMetaArgs(name=args.namespace, labels={K8S_STACK_LABEL: args.stack}),
            opts=on_cluster)
        password = GeneratedPassword("mongo-password", opts=pulumi.ResourceOptions(parent=self, aliases=was_top_level))
        secret = k8s.core.v1.Secret(
            "mongo-auth",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=secret_name, namespace=namespace.metadata.name,
                labels={K8S_STACK_LABEL: args.stack, "app.kubernetes.io/part-of": "hyperfleet",
                        "app.kubernetes.io/instance": name}),
            string_data={"username": args.username, "password": password.result},
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(
                additional_secret_outputs=["data", "stringData"])))
        values = {**args.values, "mongo": {**args.values.get("mongo", {}),
                                           "auth": {**args.values.get("mongo", {}).get("auth", {}),
                                                    "existingSecret": secret_name}}}
        depends_on = [namespace, secret]
        if args.dashboard_token is not None:
            token = k8s.core.v1.Secret(
                "dashboard-token",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"{name}-dashboard", namespace=namespace.metadata.name,
                    labels={K8S_STACK_LABEL: args.stack, "app.kubernetes.io/part-of": "hyperfleet",
                            "app.kubernetes.io/instance": name}),
                string_data={"token": args.dashboard_token},
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider,
                                            additional_secret_outputs=["data", "stringData"]))
            values["dashboard"] = {**values.get("dashboard", {}), "existingSecret": f"{name}-dashboard",
                                   "tokenKey": "token"}
            depends_on.append(token)
        chart = k8s.helm.v3.Chart(
            name,
            k8s.helm.v3.LocalChartOpts(path=str(args.chart), namespace=args.namespace, values=values,
                                       skip_await=args.skip_await),
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=depends_on)))
        self.namespace = namespace.metadata.name
        self.object_count = chart.resources.apply(len)
        self.register_outputs({"namespace": self.namespace, "object_count": self.object_count})
