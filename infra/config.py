"""The stack configuration: every ``hyperfleet:*`` key of ``Pulumi.<stack>.yaml``, typed and checked.

All config reads happen here, before any resource is registered; a bad value fails the preview with
a message that names the key (``hyperfleet:workers.replicas: Input should be greater than or equal to
1``). Keys are camelCase as Pulumi config keys usually are, except inside ``experiments``, which use
the experiment spec's own schema (``runtime/hyperfleet/spec.py``) so a spec file can be pasted in.
Every key is documented in ``docs/stack-config.md``, made from the fields' docstrings (infra/stack_config_doc.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator,
                      model_validator)
from pydantic.alias_generators import to_camel

import hyperfleet
from hyperfleet.contract import DASHBOARD_PORT, EXTENDED_RESOURCE_PATTERN, GPU_ID_PATTERN, K8S_GPU_RESOURCE
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
_EXTENDED_RESOURCE = re.compile(EXTENDED_RESOURCE_PATTERN)
#: the chart's own defaults for the worker autoscaling (one place: charts/hyperfleet/values.yaml)
_AUTOSCALING = yaml.safe_load((Path(__file__).resolve().parent.parent / "charts/hyperfleet/values.yaml").read_text()
                              )["workers"]["autoscaling"]
#: the base images (one place: images/versions.env, KEY=value lines)
_VERSIONS = dict(line.split("=", 1) for line in
                 (Path(__file__).resolve().parent.parent / "images/versions.env").read_text().splitlines()
                 if line and not line.startswith("#"))


class ConfigError(ValueError):
    """Invalid stack config; ``problems`` holds one ``hyperfleet:key.path: rule`` line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack config:\n  " + "\n  ".join(problems))


class _Model(BaseModel):
    # a field's docstring is its description: docs/stack-config.md is made of them (infra/stack_config_doc.py)
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True,
                              use_attribute_docstrings=True)


class ResourcesConfig(_Model):
    cpu: str | None = None
    """CPU as Kubernetes writes it: "500m", "2"; on Docker it becomes a CPU limit"""
    memory: str | None = None
    """memory as Kubernetes writes it: "512Mi", "2Gi"; on Docker a memory limit"""

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


class WorkerResourcesConfig(ResourcesConfig):
    gpu: int | None = Field(default=None, ge=0)
    """Kubernetes: GPUs of each worker pod (nvidia.com/gpu), for objectives that run in the worker; on Docker
    hosts GPUs are per host (workers.hosts[].gpus)"""
    extended: dict[str, int] = Field(default_factory=dict)
    """Kubernetes: other extended resources of each worker pod by name, e.g. {amd.com/gpu: 1}"""

    @field_validator("extended")
    @classmethod
    def _extended(cls, value):
        bad = [k for k in value if not _EXTENDED_RESOURCE.match(k)]
        if bad:
            raise ValueError(f"extended resources are named domain/name (e.g. amd.com/gpu), not {', '.join(bad)}")
        if K8S_GPU_RESOURCE in value:
            raise ValueError(f"{K8S_GPU_RESOURCE}: write it as gpu")
        if any(v < 0 for v in value.values()):
            raise ValueError("a count of 0 or more")
        return value

    def extended_resources(self) -> dict[str, int]:
        """gpu and extended, as Kubernetes names them (what a pod's limits get)."""
        return {**({K8S_GPU_RESOURCE: self.gpu} if self.gpu else {}), **self.extended}


#: the two forms of a workers.hosts entry (tags of a union: left out of the key a message names)
_ADDRESS, _WITH_GPUS = "address", "engine and gpus"


class DockerHostConfig(_Model):
    """A Docker host of ``workers.hosts`` written as a mapping, to say which GPUs it has."""

    engine: str
    """the engine's address: unix://, ssh://user@host[:port] or tcp://host:port"""
    gpus: list[int | str] = Field(default_factory=list)
    """its GPUs, as the host numbers them (0, 1, … as nvidia-smi lists them, or UUIDs GPU-…): one worker per GPU
    and slot (workers.trialsPerGpu), each pinned to its GPU"""

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, value):
        ids = [str(g) for g in value]
        bad = [g for g in ids if not re.match(GPU_ID_PATTERN, g)]
        if bad:
            raise ValueError(f"GPUs are indices (0, 1, …) or UUIDs (GPU-…), not {', '.join(bad)}")
        twice = sorted({g for g in ids if ids.count(g) > 1})
        if twice:
            raise ValueError(f"GPU {', '.join(twice)} is listed twice")
        return ids


#: a workers.hosts entry: an address, or {engine, gpus}
DockerHost = Annotated[Annotated[str, Tag(_ADDRESS)] | Annotated[DockerHostConfig, Tag(_WITH_GPUS)],
                       Discriminator(lambda v: _WITH_GPUS if isinstance(v, (dict, DockerHostConfig)) else _ADDRESS)]


class MongoConfig(_Model):
    image: str = "mongo:7.0"
    """the MongoDB image (the official one by default; any wire-compatible image works)"""
    storage: str = "10Gi"
    """Kubernetes: the PVC size (on Docker the data is in a named volume, which has no size)"""
    username: str = "hyperfleet"
    """root user created by the image (MONGO_INITDB_ROOT_USERNAME); its password is generated and secret"""
    database: str = "hyperfleet"
    """the database of the trials"""
    auth_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-1"] | None = None
    """the driver's authentication mechanism (default: the driver's choice, SCRAM)"""
    publish_port: int | None = Field(default=None, ge=1, le=65535)
    """publish Mongo's port on the first Docker host (127.0.0.1 only unless publishHost says otherwise)"""
    publish_host: str = "127.0.0.1"
    """the address publishPort is published on"""
    advertise_host: str | None = None
    """how workers on other Docker hosts reach Mongo (an address of the first host); needed with several hosts"""
    allow_plaintext: bool = False
    """Docker: serve a Mongo published beyond loopback (publishHost not 127.0.0.1, as several hosts need) without
    TLS. By default it then requires TLS, with a CA and a server certificate the stack makes (names: advertiseHost,
    publishHost, the container's name; the key a Pulumi secret, in the Mongo container only), and every client
    verifies it. Set true only on a network you trust: the trials, attachments and login exchange cross it in clear"""
    resources: ResourcesConfig = ResourcesConfig()
    """cpu and memory"""

    def published_beyond_loopback(self) -> bool:
        """Docker: the port is published on an address other machines may reach."""
        return bool(self.publish_port) and not is_loopback(f"tcp://{_bracketed(self.publish_host)}")

    def tls_names(self, container_name: str) -> list[str]:
        """The names clients reach the server by (its certificate's): the container's on the stack's network,
        advertiseHost, publishHost unless it is a wildcard."""
        wildcard = ("0.0.0.0", "::", "[::]")
        return list(dict.fromkeys([container_name, *[h for h in (self.advertise_host, self.publish_host)
                                                     if h and h not in wildcard]]))


def _bracketed(host: str) -> str:
    """``host`` as a URL's host part (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class AutoscalingConfig(_Model):
    """``workers.autoscaling``, mapped to the chart's values of the same names (Kubernetes targets)."""

    mode: Literal["fixed", "keda", "cpu"] = _AUTOSCALING["mode"]
    """fixed: ``workers.replicas``; keda: KEDA scales on the open trials (queued + running); cpu: an HPA on CPU"""
    min_replicas: int = Field(default=_AUTOSCALING["minReplicas"], ge=0, le=1000)
    """the fewest workers (keda may scale to 0; cpu needs at least 1)"""
    max_replicas: int = Field(default=_AUTOSCALING["maxReplicas"], ge=1, le=1000)
    """the most workers"""
    trials_per_worker: float = Field(default=_AUTOSCALING["trialsPerWorker"], gt=0)
    """keda: open trials (queued + running) per worker"""
    cooldown_seconds: int = Field(default=_AUTOSCALING["cooldownSeconds"], ge=0)
    """keda: how long the queue stays empty before the workers scale down"""
    polling_seconds: int = Field(default=_AUTOSCALING["pollingSeconds"], ge=1)
    """keda: how often the open-trials gauge is read"""
    cpu_utilization: int = Field(default=_AUTOSCALING["cpuUtilization"], ge=1, le=100)
    """cpu: the HPA's target CPU utilisation, in percent"""
    fallback_replicas: int | None = Field(default=_AUTOSCALING["fallbackReplicas"], ge=1, le=1000)
    """keda: while the monitor's gauge can't be read (the monitor down), KEDA keeps this many workers, or the current
    count if higher (default: maxReplicas; the queue is unknown then, and a pool parked at 0 would not wake)"""
    fallback_failure_threshold: int = Field(default=_AUTOSCALING["fallbackFailureThreshold"], ge=0, le=100)
    """keda: failed reads of the gauge in a row (one per pollingSeconds) before that fallback applies"""

    @model_validator(mode="after")
    def _bounds(self):
        if self.mode != "fixed" and self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) is above maxReplicas ({self.max_replicas})")
        if self.mode == "keda" and (self.fallback_replicas or 0) > self.max_replicas:
            raise ValueError(f"fallbackReplicas ({self.fallback_replicas}) is above maxReplicas ({self.max_replicas})")
        if self.mode == "cpu" and self.min_replicas == 0:
            raise ValueError("minReplicas: a CPU HorizontalPodAutoscaler can't scale to 0 (use mode keda, or at least 1)")
        return self


class WorkersConfig(_Model):
    replicas: int = Field(default=2, ge=0, le=1000)
    """how many workers (the docker target, and Kubernetes with autoscaling mode fixed)"""
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    """Kubernetes: scale with the queue (KEDA) or CPU instead of ``replicas`` (the chart's workers.autoscaling);
    the docker target is fixed: size workers.replicas from `hyperfleet status --json` (open) and pulumi up"""
    image: str | None = None
    """the worker image (default: images.runtime)"""
    resources: WorkerResourcesConfig = WorkerResourcesConfig()
    """cpu and memory; Kubernetes: also gpu and other extended resources"""
    env: dict[str, str] = Field(default_factory=dict)
    """more environment variables of the workers, {NAME: value}"""
    heartbeat_seconds: float = Field(default=WorkerSettings.heartbeat_seconds, gt=0)
    """how often a worker advances its running trial's heartbeat"""
    poll_interval_seconds: float = Field(default=WorkerSettings.poll_interval_seconds, gt=0)
    """an idle worker looks for a queued trial at most this often"""
    subprocesses: bool = WorkerSettings.use_subprocesses
    """evaluate each trial in a fresh child process"""
    hosts: list[DockerHost] = Field(default_factory=lambda: ["unix:///var/run/docker.sock"], min_length=1)
    """Docker target: the engines workers are spread over, round-robin (unix://, ssh://user@host[:port] or
    tcp://host:port); each must answer or the preview fails naming it (see docker). A host with GPUs is written
    {engine: ssh://gpu-1, gpus: [0, 1]}: it gets one worker per GPU slot instead (docs/gpus.md), and
    workers.replicas go round-robin over the hosts without GPUs"""
    trials_per_gpu: int = Field(default=1, ge=1, le=64)
    """Docker target: workers (so trials at once) per GPU of workers.hosts; 2 or more share a GPU between trials"""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Kubernetes: node selector and tolerations (spot or GPU pools)"""
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    """Kubernetes: the workers' tolerations"""

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value):
        engines = [h.engine if isinstance(h, DockerHostConfig) else h for h in value]
        bad = [h for h in engines if not _DOCKER_HOST.match(h)]
        if bad:
            raise ValueError(f"Docker hosts are unix://, ssh:// or tcp:// addresses, not {', '.join(bad)}")
        if len(set(engines)) != len(engines):
            raise ValueError("a Docker host is listed twice")
        return value

    def check_gpu_slots(self) -> None:
        """Rules of the GPU keys that span several keys (StackConfig runs them: their messages name the key)."""
        if "trials_per_gpu" in self.model_fields_set and not any(self.host_gpus):
            raise ValueError("workers.trialsPerGpu: no host of workers.hosts lists gpus ({engine: …, gpus: [0, …]})")
        if "replicas" in self.model_fields_set and self.replicas and all(self.host_gpus):
            raise ValueError("workers.replicas: every host of workers.hosts lists gpus, and gets one worker per GPU "
                             "slot (gpus x trialsPerGpu); replicas go to hosts without gpus: remove it, or add such a host")

    @property
    def engines(self) -> list[str]:
        """The Docker hosts' addresses, in order."""
        return [h.engine if isinstance(h, DockerHostConfig) else h for h in self.hosts]

    @property
    def host_gpus(self) -> list[list[str]]:
        """Each host's GPUs (empty for a host without), in the order of ``hosts``."""
        return [list(h.gpus) if isinstance(h, DockerHostConfig) else [] for h in self.hosts]

    @field_validator("env")
    @classmethod
    def _env(cls, value):
        return check_env_names(value)


class MonitorConfig(_Model):
    enabled: bool = True
    """run the monitor"""
    grace_seconds: float = Field(default=MonitorSettings.grace_seconds, gt=0)
    """a RUNNING trial whose heartbeat is older than this is orphaned (counted only while the monitor could
    watch: after an outage of MongoDB, or two sweeps more than half of this apart, from then)"""
    interval_seconds: float = Field(default=MonitorSettings.interval_seconds, gt=0)
    """time between two sweeps"""
    policy: Literal["requeue", "error"] = MonitorSettings.policy
    """requeue an orphaned trial (until maxRetries, then ERROR) or mark it ERROR at once"""
    max_retries: int = Field(default=MonitorSettings.max_retries, ge=0)
    """how often a trial may be recovered from lost infrastructure before it is ERROR"""
    resources: ResourcesConfig = ResourcesConfig()
    """cpu and memory"""

    @model_validator(mode="after")
    def _grace_above_interval(self):
        if self.grace_seconds <= self.interval_seconds:
            raise ValueError("graceSeconds must be longer than intervalSeconds")
        return self


class DashboardConfig(_Model):
    enabled: bool = False
    """the monitor serves the dashboard (its token: the secret hyperfleet:dashboardToken)"""
    port: int = Field(default=DASHBOARD_PORT, ge=1, le=65535)
    """Docker: the port published on publishHost; Kubernetes: the ClusterIP Service's port"""
    publish_host: str = "127.0.0.1"
    """Docker: the address it is published on (127.0.0.1: this machine only)"""
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    """Kubernetes: the dashboard Service's type (ClusterIP: inside the cluster, reached with kubectl port-forward;
    NodePort and LoadBalancer publish it beyond the cluster)"""
    read_token: bool | None = None
    """its reads (every experiment, trial and log it shows) need the token too; default: on when it is published beyond
    this machine or cluster (Docker: publishHost not loopback; Kubernetes: serviceType not ClusterIP), off otherwise"""

    def reads_need_token(self, target: str) -> bool:
        """``read_token``, or the default rule: published beyond loopback (Docker) or the cluster (Kubernetes)."""
        if self.read_token is not None:
            return self.read_token
        if target == "docker":
            host = f"[{self.publish_host}]" if ":" in self.publish_host else self.publish_host
            return not is_loopback(f"tcp://{host}")
        return self.service_type != "ClusterIP"


class ImagesConfig(_Model):
    runtime: str = f"hyperfleet/runtime:{hyperfleet.__version__}"
    """the one image of worker, monitor and driver"""
    build: bool = True
    """Docker target: build it from images/runtime (true) or use the name as it is (false); the kubernetes and
    gke targets always use the name as it is"""
    base_image: str = _VERSIONS["PYTHON_BASE_IMAGE"]
    """the base the runtime image is built on"""


class DockerSshConfig(_Model):
    identity_file: str | None = None
    """the private key for every ssh:// host (default: what your ssh config and agent offer). The monitor gets a copy (a Pulumi
    secret) to watch the workers' containers there."""
    known_hosts_file: str | None = None
    """the hosts' public keys (default: ~/.ssh/known_hosts); an unknown host key is refused"""


class DockerTlsConfig(_Model):
    cert_path: str | None = None
    """Docker's cert path for every tcp:// host: ca.pem, cert.pem and key.pem (the client's)"""


class DockerConfig(_Model):
    network: str | None = None
    """the network of the stack's containers (default: hyperfleet-<stack>)"""
    ssh: DockerSshConfig = DockerSshConfig()
    """for the ssh:// hosts of workers.hosts: identityFile, knownHostsFile"""
    tls: DockerTlsConfig = DockerTlsConfig()
    """for the tcp:// hosts of workers.hosts: certPath"""
    allow_plain_tcp: bool = False
    """reach a tcp:// host that is not this machine without TLS: whoever reaches that port is root there"""

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
    kubeconfig: str | None = None
    """kubeconfig file (default: KUBECONFIG or ~/.kube/config)"""
    context: str | None = None
    """the kubeconfig context (kind: default the current one; a missing context fails the preview)"""
    namespace: str = "hyperfleet"
    """the namespace of the release"""
    chart: str | None = None
    """where the Helm chart is (default: charts/hyperfleet of this repository)"""
    skip_await: bool = False
    """no kubelet (API-server-only test clusters): do not wait for workloads to become ready"""


class GkeConfig(_Model):
    project: str
    """the Google Cloud project (required for target gke)"""
    region: str
    """the region (required for target gke)"""
    cluster: str | None = None
    """use this existing cluster instead of creating one (which needs pulumi-gcp: pip install -r
    infra/requirements-gke.txt)"""
    machine_type: str = "e2-standard-4"
    """the node pool's machine type (a new cluster)"""
    node_count: int = Field(default=2, ge=1)
    """nodes per zone of the region (a new cluster)"""
    spot: bool = False
    """spot VMs for the node pool (a new cluster)"""


class StackConfig(_Model):
    target: Literal["docker", "kubernetes", "gke"] = "docker"
    """docker: Docker hosts; kubernetes: any cluster by kubeconfig context (`kind`, its former name, is
    accepted for it); gke: Google Kubernetes Engine"""
    mongo: MongoConfig = MongoConfig()
    """the MongoDB of the trials"""
    workers: WorkersConfig = WorkersConfig()
    """the workers"""
    monitor: MonitorConfig = MonitorConfig()
    """the monitor that recovers the trials of dead workers"""
    dashboard: DashboardConfig = DashboardConfig()
    """the dashboard, served by the monitor"""
    notify: Notify | None = None
    """webhooks of every experiment that has no notify of its own (written as in a spec): webhooks [{url,
    format (slack | json), events}], stalled_after_minutes (30)"""
    experiments: list[dict[str, Any]] = Field(default_factory=list)
    """experiment specs, the schema of `hyperfleet run` (snake_case keys: name, objective, algo, max_evals, space, early_stop,
    timeout_seconds, retries, parallelism, seed, notify, pruning); one driver per experiment"""
    images: ImagesConfig = ImagesConfig()
    """the runtime image"""
    docker: DockerConfig = DockerConfig()
    """the Docker target's network and how it reaches the Docker hosts"""
    kubernetes: KubernetesConfig = KubernetesConfig()
    """the kubernetes and gke targets: the cluster and the chart"""
    gke: GkeConfig | None = None
    """target gke: the project and the cluster"""

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
        if self.target != "docker":
            for index, gpus in enumerate(self.workers.host_gpus):
                if gpus:
                    raise ValueError(f"workers.hosts[{index}].gpus: Docker hosts' GPUs; on the {self.target} target "
                                     "request them with workers.resources.gpu or an experiment's objective resources")
        else:
            self.workers.check_gpu_slots()
        if self.target == "docker" and self.workers.resources.extended_resources():
            key = "gpu" if self.workers.resources.gpu else "extended"
            raise ValueError(f"workers.resources.{key}: Kubernetes resources; on Docker hosts list each host's GPUs "
                             "(workers.hosts: [{engine: …, gpus: [0, …]}])")
        if self.target == "docker" and len(self.workers.hosts) > 1:
            for key, value in (("advertiseHost", self.mongo.advertise_host), ("publishPort", self.mongo.publish_port)):
                if not value:
                    raise ValueError(f"mongo.{key}: needed when workers.hosts lists several Docker hosts "
                                     "(workers on the other hosts reach Mongo at advertiseHost:publishPort)")
            if is_loopback(f"tcp://{self.mongo.publish_host}"):
                raise ValueError(f"mongo.publishHost: {self.mongo.publish_host} can't be reached from the other "
                                 "Docker hosts; publish on advertiseHost's address (or 0.0.0.0)")
        if self.mongo.allow_plaintext and "allow_plaintext" in self.mongo.model_fields_set:
            if self.target != "docker":
                raise ValueError(f"mongo.allowPlaintext: the {self.target} target serves Mongo on the cluster's own "
                                 "Service, without TLS either way (docs/security.md); remove it")
            if not self.mongo.published_beyond_loopback():
                raise ValueError("mongo.allowPlaintext: Mongo is not published beyond this machine (publishPort on "
                                 "a non-loopback publishHost), so there is no TLS to turn off; remove it")
        if self.target == "docker":
            self._check_docker_access()
            if "service_type" in self.dashboard.model_fields_set:
                raise ValueError("dashboard.serviceType: a Kubernetes Service's type; the docker target publishes the "
                                 "dashboard on dashboard.publishHost")
            if self.workers.autoscaling.mode != "fixed":
                raise ValueError("workers.autoscaling.mode: the docker target runs workers.replicas workers (mode "
                                 "fixed); size the pool from `hyperfleet status --json` (open) and pulumi up")
        elif self.workers.autoscaling.mode == "keda" and not self.monitor.enabled:
            raise ValueError("workers.autoscaling.mode: keda reads the monitor's open-trials gauge; it needs "
                             "monitor.enabled")
        return self

    def _check_docker_access(self) -> None:
        tcp = [h for h in self.workers.engines if engine_kind(h) == "tcp"]
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
    def mongo_tls(self) -> bool:
        """Mongo requires TLS: the docker target, published beyond loopback, unless mongo.allowPlaintext."""
        return self.target == "docker" and self.mongo.published_beyond_loopback() and not self.mongo.allow_plaintext

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
        if part in (_ADDRESS, _WITH_GPUS):
            continue
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


def check_dashboard_token(config: StackConfig, token) -> None:
    """ConfigError when the dashboard's reads are to need its token (dashboard.readToken, or its default rule) and
    the stack has none: a dashboard published without a token would show everything to whoever reaches it."""
    board = config.dashboard
    if board.enabled and board.reads_need_token(config.target) and token is None:
        why = ("dashboard.readToken is true" if board.read_token else
               f"the dashboard is published beyond this machine (dashboard.publishHost {board.publish_host})"
               if config.target == "docker" else
               f"the dashboard is published beyond the cluster (dashboard.serviceType {board.service_type})")
        raise ConfigError([f"{NAMESPACE}:dashboardToken: {why}, so its reads need a token, and none is set: "
                           f"`pulumi config set --secret {NAMESPACE}:dashboardToken TOKEN`, or dashboard.readToken: false "
                           "to show it to whoever reaches it"])


def _stray_keys() -> list[str]:
    """``hyperfleet:*`` keys set in the stack that this program does not know (typos)."""
    import pulumi.runtime

    prefix = f"{NAMESPACE}:"
    return sorted(k[len(prefix):] for k in pulumi.runtime.get_config_env() if k.startswith(prefix)
                  and k[len(prefix):] not in KEYS + SECRET_KEYS)
