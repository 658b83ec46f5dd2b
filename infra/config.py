"""The stack configuration: every ``hyperfleet:*`` key of ``Pulumi.<stack>.yaml``, typed and checked.

All config reads happen here, before any resource is registered; a bad value fails the preview with
a message that names the key (``hyperfleet:workers.replicas: Input should be greater than or equal to
1``). Keys are camelCase as Pulumi config keys usually are, except inside ``experiments``, which use
the experiment spec's own schema (``runtime/hyperfleet/spec.py``) so a spec file can be pasted in.
Every key is documented in ``Pulumi.yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

import hyperfleet
from hyperfleet.contract import DASHBOARD_PORT
from hyperfleet.engines import EngineAccess, is_loopback, missing_cert_files
from hyperfleet.engines import kind as engine_kind
from hyperfleet.settings import MonitorSettings, WorkerSettings
from hyperfleet.spec import POD_ONLY_KEYS, ExperimentSpec, Notify, SpecError, check_env_names, parse_spec

NAMESPACE = "hyperfleet"
KEYS = ("target", "mongo", "workers", "monitor", "dashboard", "notify", "experiments", "images", "docker", "kubernetes",
        "gke")
#: read as a Pulumi secret, not into the model: the dashboard's token
SECRET_KEYS = ("dashboardToken",)
_QUANTITY_CPU = re.compile(r"^\d+(\.\d+)?m?$")
_QUANTITY_MEMORY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_DOCKER_HOST = re.compile(r"^(unix|ssh|tcp)://.+$")
#: the chart's own defaults for the worker autoscaling (one place: charts/hyperfleet/values.yaml)
_AUTOSCALING = yaml.safe_load((Path(__file__).resolve().parent.parent / "charts/hyperfleet/values.yaml").read_text()
                              )["workers"]["autoscaling"]


class ConfigError(ValueError):
    """Invalid stack config; ``problems`` holds one ``hyperfleet:key.path: rule`` line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack config:\n  " + "\n  ".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ResourcesConfig(_Model):
    #: CPU as Kubernetes writes it: "500m", "2"; on Docker it becomes a CPU limit
    cpu: str | None = None
    #: memory as Kubernetes writes it: "512Mi", "2Gi"; on Docker a memory limit
    memory: str | None = None

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value):
        if value is not None and not _QUANTITY_CPU.match(value):
            raise ValueError('a CPU quantity like "500m" or "2"')
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value):
        if value is not None and not _QUANTITY_MEMORY.match(value):
            raise ValueError('a memory quantity like "512Mi" or "2Gi"')
        return value

    def docker_cpus(self) -> float | None:
        if self.cpu is None:
            return None
        return float(self.cpu[:-1]) / 1000 if self.cpu.endswith("m") else float(self.cpu)

    def docker_memory_mb(self) -> int | None:
        if self.memory is None:
            return None
        number, unit = re.match(r"^([\d.]+)(\D*)$", self.memory).groups()
        factor = {"": 1 / 2**20, "k": 1e3 / 2**20, "Ki": 1 / 1024, "M": 1e6 / 2**20, "Mi": 1, "G": 1e9 / 2**20,
                  "Gi": 1024, "T": 1e12 / 2**20, "Ti": 2**20}[unit]
        return max(6, int(float(number) * factor))  # the engine refuses less than 6 MB


class MongoConfig(_Model):
    #: the MongoDB image (the official one by default; any wire-compatible image works)
    image: str = "mongo:7.0"
    #: Kubernetes: the PVC size (on Docker the data is in a named volume, which has no size)
    storage: str = "10Gi"
    #: root user created by the image (MONGO_INITDB_ROOT_USERNAME); its password is generated and secret
    username: str = "hyperfleet"
    #: the database of the trials
    database: str = "hyperfleet"
    #: the driver's authentication mechanism (default: the driver's choice, SCRAM)
    auth_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-1"] | None = None
    #: publish Mongo's port on the first Docker host (127.0.0.1 only unless publishHost says otherwise)
    publish_port: int | None = Field(default=None, ge=1, le=65535)
    publish_host: str = "127.0.0.1"
    #: how workers on other Docker hosts reach Mongo (an address of the first host); needed with several hosts
    advertise_host: str | None = None
    resources: ResourcesConfig = ResourcesConfig()


class AutoscalingConfig(_Model):
    """``workers.autoscaling``, mapped to the chart's values of the same names (Kubernetes targets)."""

    #: fixed: ``workers.replicas``; keda: KEDA scales on the open trials (queued + running); cpu: an HPA on CPU
    mode: Literal["fixed", "keda", "cpu"] = _AUTOSCALING["mode"]
    min_replicas: int = Field(default=_AUTOSCALING["minReplicas"], ge=0, le=1000)
    max_replicas: int = Field(default=_AUTOSCALING["maxReplicas"], ge=1, le=1000)
    trials_per_worker: float = Field(default=_AUTOSCALING["trialsPerWorker"], gt=0)
    cooldown_seconds: int = Field(default=_AUTOSCALING["cooldownSeconds"], ge=0)
    polling_seconds: int = Field(default=_AUTOSCALING["pollingSeconds"], ge=1)
    cpu_utilization: int = Field(default=_AUTOSCALING["cpuUtilization"], ge=1, le=100)

    @model_validator(mode="after")
    def _bounds(self):
        if self.mode != "fixed" and self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) is above maxReplicas ({self.max_replicas})")
        if self.mode == "cpu" and self.min_replicas == 0:
            raise ValueError("minReplicas: a CPU HorizontalPodAutoscaler can't scale to 0 (use mode keda, or at least 1)")
        return self


class WorkersConfig(_Model):
    replicas: int = Field(default=2, ge=0, le=1000)
    #: Kubernetes: scale with the queue (KEDA) or CPU instead of ``replicas``; Docker: fixed only
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    #: the worker image (default: images.runtime)
    image: str | None = None
    resources: ResourcesConfig = ResourcesConfig()
    env: dict[str, str] = Field(default_factory=dict)
    heartbeat_seconds: float = Field(default=WorkerSettings.heartbeat_seconds, gt=0)
    poll_interval_seconds: float = Field(default=WorkerSettings.poll_interval_seconds, gt=0)
    #: evaluate each trial in a fresh child process
    subprocesses: bool = WorkerSettings.use_subprocesses
    #: Docker target: the engines workers are spread over, round-robin (unix://, ssh://user@host, tcp://)
    hosts: list[str] = Field(default_factory=lambda: ["unix:///var/run/docker.sock"], min_length=1)
    #: Kubernetes: node selector and tolerations (spot or GPU pools)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value):
        bad = [h for h in value if not _DOCKER_HOST.match(h)]
        if bad:
            raise ValueError(f"Docker hosts are unix://, ssh:// or tcp:// addresses, not {', '.join(bad)}")
        if len(set(value)) != len(value):
            raise ValueError("a Docker host is listed twice")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value):
        return check_env_names(value)


class MonitorConfig(_Model):
    enabled: bool = True
    #: a RUNNING trial whose heartbeat is older than this is orphaned
    grace_seconds: float = Field(default=MonitorSettings.grace_seconds, gt=0)
    interval_seconds: float = Field(default=MonitorSettings.interval_seconds, gt=0)
    policy: Literal["requeue", "error"] = MonitorSettings.policy
    max_retries: int = Field(default=MonitorSettings.max_retries, ge=0)
    resources: ResourcesConfig = ResourcesConfig()

    @model_validator(mode="after")
    def _grace_above_interval(self):
        if self.grace_seconds <= self.interval_seconds:
            raise ValueError("graceSeconds must be longer than intervalSeconds")
        return self


class DashboardConfig(_Model):
    #: the monitor serves the dashboard (its token: the secret hyperfleet:dashboardToken)
    enabled: bool = False
    #: Docker: the port published on publishHost; Kubernetes: the Service's port
    port: int = Field(default=DASHBOARD_PORT, ge=1, le=65535)
    #: Docker: the address it is published on (127.0.0.1: this machine only)
    publish_host: str = "127.0.0.1"


class ImagesConfig(_Model):
    #: the one image of worker, monitor and driver
    runtime: str = f"hyperfleet/runtime:{hyperfleet.__version__}"
    #: Docker target: build it from images/runtime (true) or use the name as it is (false);
    #: the kind and gke targets always use the name as it is
    build: bool = True
    #: the base the runtime image is built on
    base_image: str = "python:3.12-slim"


class DockerSshConfig(_Model):
    #: the private key for every ssh:// host (default: what your ssh config and agent offer). The
    #: monitor gets a copy (a Pulumi secret) to watch the workers' containers there.
    identity_file: str | None = None
    #: the hosts' public keys (default: ~/.ssh/known_hosts); an unknown host key is refused
    known_hosts_file: str | None = None


class DockerTlsConfig(_Model):
    #: Docker's cert path for every tcp:// host: ca.pem, cert.pem and key.pem (the client's)
    cert_path: str | None = None


class DockerConfig(_Model):
    #: the network of the stack's containers (default: hyperfleet-<stack>)
    network: str | None = None
    ssh: DockerSshConfig = DockerSshConfig()
    tls: DockerTlsConfig = DockerTlsConfig()
    #: reach a tcp:// host that is not this machine without TLS: whoever reaches that port is root there
    allow_plain_tcp: bool = False

    def access(self, host: str) -> EngineAccess:
        """How the stack reaches ``host`` (the provider, the preflight check and the monitor alike)."""
        if engine_kind(host) == "ssh":
            return EngineAccess(host, ssh_options=tuple(self.ssh_options()))
        if engine_kind(host) == "tcp" and self.cert_dir():
            return EngineAccess(host, cert_path=self.cert_dir())
        return EngineAccess(host)

    def cert_dir(self) -> str | None:
        """``tls.certPath`` with ``~`` expanded, or None."""
        return str(Path(self.tls.cert_path).expanduser()) if self.tls.cert_path else None

    def ssh_options(self) -> list[str]:
        options = []
        if self.ssh.identity_file:
            options += ["-i", str(Path(self.ssh.identity_file).expanduser())]
        if self.ssh.known_hosts_file:
            options += ["-o", f"UserKnownHostsFile={Path(self.ssh.known_hosts_file).expanduser()}"]
        return options + ["-o", "StrictHostKeyChecking=yes"] if options else options


class KubernetesConfig(_Model):
    #: kubeconfig file (default: ~/.kube/config) and context (default: its current context)
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str = "hyperfleet"
    #: where the Helm chart is (default: charts/hyperfleet of this repository)
    chart: str | None = None
    #: no kubelet (API-server-only test clusters): do not wait for workloads to become ready
    skip_await: bool = False


class GkeConfig(_Model):
    project: str
    region: str
    #: use this existing cluster instead of creating one
    cluster: str | None = None
    machine_type: str = "e2-standard-4"
    node_count: int = Field(default=2, ge=1)
    spot: bool = False


class StackConfig(_Model):
    #: kubernetes: any cluster by kubeconfig context (kind is the same target, its former name)
    target: Literal["docker", "kubernetes", "gke"] = "docker"
    mongo: MongoConfig = MongoConfig()
    workers: WorkersConfig = WorkersConfig()
    monitor: MonitorConfig = MonitorConfig()
    dashboard: DashboardConfig = DashboardConfig()
    #: webhooks of every experiment that has no notify of its own (written as in a spec)
    notify: Notify | None = None
    experiments: list[dict[str, Any]] = Field(default_factory=list)
    images: ImagesConfig = ImagesConfig()
    docker: DockerConfig = DockerConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    gke: GkeConfig | None = None

    @field_validator("target", mode="before")
    @classmethod
    def _kind_is_kubernetes(cls, value):
        return "kubernetes" if value == "kind" else value

    @model_validator(mode="after")
    def _target_needs(self):
        if self.target == "gke" and self.gke is None:
            raise ValueError("gke: needed when target is gke (project and region at least)")
        if self.target != "docker" and self.images.build and "build" in self.images.model_fields_set:
            raise ValueError(f"images.build: the {self.target} target runs a runtime image that is already in "
                             "the cluster's reach (`kind load`, or pushed to a registry); set build: false")
        if self.target == "docker" and len(self.workers.hosts) > 1:
            for key, value in (("advertiseHost", self.mongo.advertise_host), ("publishPort", self.mongo.publish_port)):
                if not value:
                    raise ValueError(f"mongo.{key}: needed when workers.hosts lists several Docker hosts "
                                     "(workers on the other hosts reach Mongo at advertiseHost:publishPort)")
            if is_loopback(f"tcp://{self.mongo.publish_host}"):
                raise ValueError(f"mongo.publishHost: {self.mongo.publish_host} can't be reached from the other "
                                 "Docker hosts; publish on advertiseHost's address (or 0.0.0.0)")
        if self.target == "docker":
            self._check_docker_access()
            if self.workers.autoscaling.mode != "fixed":
                raise ValueError("workers.autoscaling.mode: the docker target runs workers.replicas workers (mode "
                                 "fixed); size the pool from `hyperfleet status --json` (open) and pulumi up")
        elif self.workers.autoscaling.mode == "keda" and not self.monitor.enabled:
            raise ValueError("workers.autoscaling.mode: keda reads the monitor's open-trials gauge; it needs "
                             "monitor.enabled")
        return self

    def _check_docker_access(self) -> None:
        tcp = [h for h in self.workers.hosts if engine_kind(h) == "tcp"]
        cert_path = self.docker.tls.cert_path
        if cert_path and tcp:
            missing = missing_cert_files(self.docker.cert_dir())
            if missing:
                raise ValueError(f"docker.tls.certPath: {cert_path} lacks {', '.join(missing)} (Docker's cert path: "
                                 "the CA, and the client's certificate and key)")
        plain = [h for h in tcp if not cert_path and not is_loopback(h)]
        if plain and not self.docker.allow_plain_tcp:
            raise ValueError(f"workers.hosts: {', '.join(plain)} would be reached without TLS, and whoever reaches "
                             "an engine's plain TCP port is root on that host. Set docker.tls.certPath (ca.pem, "
                             "cert.pem, key.pem), use ssh://, or, on a network you trust, docker.allowPlainTcp: true")
        for key in ("identity_file", "known_hosts_file"):
            path = getattr(self.docker.ssh, key)
            if path and not Path(path).expanduser().is_file():
                raise ValueError(f"docker.ssh.{to_camel(key)}: no file {path}")

    @property
    def worker_image(self) -> str:
        return self.workers.image or self.images.runtime

    @property
    def experiment_spec_dicts(self) -> list[dict[str, Any]]:
        """The experiments as written, with the stack's notify where an experiment has none."""
        if self.notify is None:
            return list(self.experiments)
        notify = self.notify.model_dump(mode="json")
        return [e if "notify" in e else {**e, "notify": notify} for e in self.experiments]

    def experiment_specs(self) -> list[ExperimentSpec]:
        return [parse_spec(e) for e in self.experiment_spec_dicts]


def parse_config(raw: dict[str, Any]) -> StackConfig:
    """Validate the ``hyperfleet:*`` values (keys without the namespace); ConfigError names each problem."""
    unknown = sorted(set(raw) - set(KEYS) - set(SECRET_KEYS))  # secrets are read apart (dashboard_token)
    problems = [f"{NAMESPACE}:{k}: unknown key (known: {', '.join(KEYS)})" for k in unknown]
    try:
        config = StackConfig.model_validate({k: v for k, v in raw.items() if k in KEYS})
    except ValidationError as err:
        problems += [_problem(e) for e in err.errors()]
        raise ConfigError(problems) from None
    keys: set[str] = set()
    if config.dashboard.enabled and not config.monitor.enabled:
        problems.append(f"{NAMESPACE}:dashboard.enabled: the monitor serves the dashboard; it needs monitor.enabled")
    for index, experiment in enumerate(config.experiment_spec_dicts):
        try:
            spec = parse_spec(experiment)
        except SpecError as err:
            problems += [f"{NAMESPACE}:experiments[{index}].{p}" for p in err.problems]
            continue
        if config.target == "docker" and not isinstance(spec.objective, str):
            problems += [f"{NAMESPACE}:experiments[{index}].objective.{key}: only trial pods (kubernetes and gke targets) "
                         "honour it; the docker target would ignore it"
                         for key in POD_ONLY_KEYS if key in spec.objective.model_fields_set]
        if spec.key in keys:
            problems.append(f"{NAMESPACE}:experiments[{index}].name: the exp_key {spec.key} is used twice")
        keys.add(spec.key)
    if problems:
        raise ConfigError(problems)
    return config


def _problem(error: dict) -> str:
    parts = []
    for part in error["loc"]:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]"
        else:
            parts.append(str(part))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required"
    if not parts:  # a rule across keys names its own key
        return f"{NAMESPACE}:{message}"
    return f"{NAMESPACE}:{'.'.join(parts)}: {message}"


def load() -> StackConfig:
    """Read every ``hyperfleet:*`` key of the current stack (the only place config is read)."""
    import pulumi

    config = pulumi.Config(NAMESPACE)
    raw = {}
    for key in KEYS:
        value = config.get_object(key) if key != "target" else config.get(key)
        if value is not None:
            raw[key] = value
    stray = _stray_keys()
    if stray:
        raise ConfigError([f"{NAMESPACE}:{k}: unknown key (known: {', '.join(KEYS)})" for k in stray])
    return parse_config(raw)


def dashboard_token():
    """The dashboard's token, a Pulumi secret (``pulumi config set --secret hyperfleet:dashboardToken``),
    or None: then the dashboard's actions are off."""
    import pulumi

    return pulumi.Config(NAMESPACE).get_secret("dashboardToken")


def _stray_keys() -> list[str]:
    """``hyperfleet:*`` keys set in the stack that this program does not know (typos)."""
    import pulumi.runtime

    prefix = f"{NAMESPACE}:"
    return sorted(k[len(prefix):] for k in pulumi.runtime.get_config_env() if k.startswith(prefix)
                  and k[len(prefix):] not in KEYS + SECRET_KEYS)
