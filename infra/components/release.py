"""Release: hyperfleet on a Kubernetes cluster (the kind and gke targets), as one ComponentResource.

Its children: the Namespace, the Mongo credentials as a Secret (the password generated once and kept
secret in the state) and the Helm chart (charts/hyperfleet) with the values the target maps from the
stack config. The chart stays the one definition of the Kubernetes objects.

The children were top-level resources before this component existed; their aliases keep an existing
stack's objects in place (no replacement) when it is updated.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
from hyperfleet.contract import K8S_STACK_LABEL

from .password import GeneratedPassword


@dataclasses.dataclass
class ReleaseArgs:
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


class Release(pulumi.ComponentResource):
    #: the release's name (the chart's fullnameOverride), and the namespace it is in
    name: str
    namespace: pulumi.Output[str]
    #: how many Kubernetes objects the chart made
    object_count: pulumi.Output[int]

    def __init__(self, name: str, args: ReleaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hyperfleet:index:Release", name, None, opts)
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
