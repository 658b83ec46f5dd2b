"""The Kubernetes targets: the Helm chart (charts/hyperfleet) on a cluster, through an explicit provider.

``kind`` means any existing cluster reached by a kubeconfig context (kind, minikube, a test API
server, ...); ``gke`` gets its cluster from ``targets/gke.py`` (created, or an existing one). Both
then do the same: a Release (components/release.py: the Namespace, the Mongo Secret and the chart),
with the chart's values mapped from the stack config. The chart stays the one definition of the
Kubernetes objects; this module only translates config into its values.
"""

from __future__ import annotations

from pathlib import Path

import pulumi_kubernetes as k8s

from components.release import Release, ReleaseArgs
from hyperfleet.contract import K8S_STACK_LABEL, MONGO_URL_ENV
from config import NAMESPACE, ConfigError, ResourcesConfig, StackConfig, dashboard_token

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "hyperfleet"


def deploy(config: StackConfig, stack: str) -> dict:
    if config.target == "gke":
        from targets import gke

        provider, outputs = gke.cluster_provider(config, stack)
    else:
        provider, outputs = context_provider(config), {}
    release = Release(f"hyperfleet-{stack}", ReleaseArgs(
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


def split_image(image: str) -> dict:
    """``repo/name:tag`` → the chart's ``{repository, tag}`` (a registry port is not a tag)."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return {"repository": image, "tag": "latest"}
    return {"repository": name, "tag": tag}


def resources(res: ResourcesConfig) -> dict:
    """Stack-config CPU/memory as requests, and memory also as the limit (CPU is not capped: throttling
    an objective slows it without protecting anyone). Unset values keep the chart's defaults."""
    out: dict = {}
    if res.cpu:
        out.setdefault("requests", {})["cpu"] = res.cpu
    if res.memory:
        out.setdefault("requests", {})["memory"] = res.memory
        out["limits"] = {"memory": res.memory}
    return out


def chart_values(config: StackConfig, stack: str) -> dict:
    """The chart's values from the stack config (a plain function: the tests call it directly); the
    Release adds the name of the Secret it makes."""
    workers, monitor, mongo = config.workers, config.monitor, config.mongo
    return {
        "fullnameOverride": f"hyperfleet-{stack}",
        "commonLabels": {K8S_STACK_LABEL: stack},
        "image": {**split_image(config.worker_image), "pullPolicy": "IfNotPresent"},
        "mongo": {
            "image": split_image(mongo.image),
            "auth": {"username": mongo.username,
                     "mechanism": mongo.auth_mechanism or ""},
            "database": mongo.database,
            "persistence": {"size": mongo.storage},
            "resources": resources(mongo.resources),
        },
        "workers": {
            "replicas": workers.replicas,
            "autoscaling": workers.autoscaling.model_dump(by_alias=True),
            "resources": resources(workers.resources),
            "nodeSelector": dict(workers.node_selector),
            "tolerations": list(workers.tolerations),
            "heartbeatSeconds": workers.heartbeat_seconds,
            "pollIntervalSeconds": workers.poll_interval_seconds,
            "subprocesses": workers.subprocesses,
            "extraEnv": [{"name": k, "value": v} for k, v in sorted(workers.env.items())],
        },
        "monitor": {
            "enabled": monitor.enabled,
            "graceSeconds": monitor.grace_seconds,
            "intervalSeconds": monitor.interval_seconds,
            "policy": monitor.policy,
            "maxRetries": monitor.max_retries,
            "resources": resources(monitor.resources),
        },
        # the provider awaits Deployments and the StatefulSet to readiness; a driver Job runs as long as
        # its search, so `pulumi up` does not wait for it (hyperfleet status follows it instead)
        "driver": {"jobAnnotations": {"pulumi.com/skipAwait": "true"}},
        "dashboard": {"enabled": config.dashboard.enabled, "port": config.dashboard.port},
        "experiments": config.experiment_spec_dicts,
    }
