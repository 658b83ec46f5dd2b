"""The chart's values (charts/hyperfleet) from the stack config: the one translation of config into the
Kubernetes targets' objects; the chart stays their one definition. Plain functions, which the tests call."""

from __future__ import annotations

from hyperfleet.contract import K8S_STACK_LABEL

from ..config import ResourcesConfig, StackConfig, WorkerResourcesConfig


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
    extended = res.extended_resources() if isinstance(res, WorkerResourcesConfig) else {}
    if extended:  # GPUs and other extended resources: limits (Kubernetes takes the request from them)
        out["limits"] = {**out.get("limits", {}), **extended}
    return out


def chart_values(config: StackConfig, stack: str) -> dict:
    """The chart's values from the stack config; KubernetesTarget adds the names of the Secrets it makes."""
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
        "dashboard": {"enabled": config.dashboard.enabled, "port": config.dashboard.port,
                      "serviceType": config.dashboard.service_type,
                      "readToken": config.dashboard.reads_need_token(config.target)},
        "experiments": config.experiment_spec_dicts,
    }
