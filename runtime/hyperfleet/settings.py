"""Typed settings of the long-running processes. Units are in the names."""

from __future__ import annotations

import dataclasses
import re

from .contract import GPU_ID_PATTERN, HEALTH_PORT, MONGO_PORT

DEFAULT_MONGO_URL = f"mongodb://localhost:{MONGO_PORT}/hyperopt"
#: give up connecting to MongoDB after this long: every command's default (``--connect-timeout-seconds``)
CONNECT_TIMEOUT_SECONDS = 10.0


#: an idle worker's wait between reservation attempts grows up to this share of the time it has been idle
#: (a trial queued after 10 s of idling waits at most a second more to be picked up)
IDLE_POLL_FRACTION = 0.1
#: a module's dotted name (``--preload``)
MODULE_NAME_PATTERN = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    mongo_url: str = DEFAULT_MONGO_URL
    #: only reserve trials of this experiment (all experiments when None)
    exp_key: str | None = None
    #: how often ``refresh_time`` of the running trial is advanced
    heartbeat_seconds: float = 2.0
    #: idle polling starts at ``poll_min_seconds`` and doubles up to ``poll_interval_seconds``; a worker idle
    #: for longer doubles on, up to IDLE_POLL_FRACTION of the time it has been idle and at most
    #: ``idle_poll_interval_seconds`` (an idle fleet does not query the server 20 times a second per worker)
    poll_min_seconds: float = 0.002
    poll_interval_seconds: float = 0.05
    idle_poll_interval_seconds: float = 1.0
    #: exit after this long without finding a trial to reserve (never when None)
    reserve_timeout_seconds: float | None = None
    #: do not reserve a new trial once this long has passed since start (never when None)
    last_job_timeout_seconds: float | None = None
    #: exit after this many trials (never when None)
    max_jobs: int | None = None
    #: exit after this many trials in a row ended in ERROR (never when None)
    max_consecutive_failures: int | None = None
    #: exit once the jobs collection holds this many documents (never when None)
    max_jobs_in_db: int | None = None
    #: directory the objective runs in (the worker's own when None)
    workdir: str | None = None
    #: evaluate each trial in a fresh child process instead of in the worker
    use_subprocesses: bool = False
    #: modules the --subprocesses forkserver imports in full before it forks the first child, so that each
    #: trial finds them loaded (``scipy.stats``, ``sklearn.ensemble``: what the objectives import)
    preload: tuple[str, ...] = ()
    #: after the first SIGTERM/SIGINT, hand the trial back and exit within this time
    shutdown_deadline_seconds: float = 10.0
    #: give up connecting to MongoDB after this long
    connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS
    #: a file whose modification time the worker's loop advances (a liveness probe reads it)
    alive_file: str | None = None
    #: the GPU this worker is pinned to, as its host numbers it (an index or a GPU UUID): recorded with each
    #: trial, given to its trial containers, and the one its in-process objectives see (CUDA_VISIBLE_DEVICES)
    gpu: str | None = None

    def __post_init__(self):
        if self.gpu is not None and not re.match(GPU_ID_PATTERN, self.gpu):
            raise ValueError(f"gpu must be a GPU index (0, 1, …) or UUID (GPU-…), got {self.gpu!r}")
        positive = ("heartbeat_seconds", "poll_min_seconds", "poll_interval_seconds", "idle_poll_interval_seconds",
                    "shutdown_deadline_seconds", "connect_timeout_seconds")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("reserve_timeout_seconds", "last_job_timeout_seconds"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name in ("max_jobs", "max_consecutive_failures", "max_jobs_in_db"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for module in self.preload:
            if not re.fullmatch(MODULE_NAME_PATTERN, module):
                raise ValueError(f"preload: not a module name: {module!r}")
        if self.poll_min_seconds > self.poll_interval_seconds:
            object.__setattr__(self, "poll_min_seconds", self.poll_interval_seconds)


LIVENESS_CHECKS = ("process", "docker", "kubernetes")
POLICIES = ("requeue", "error")


@dataclasses.dataclass(frozen=True)
class MonitorSettings:
    mongo_url: str = DEFAULT_MONGO_URL
    #: the jobs collection (hyperkops' ``trials_collection``)
    collection: str | None = None
    #: only watch this experiment (all when None)
    exp_key: str | None = None
    #: a RUNNING trial whose heartbeat is older than this is orphaned (hyperkops' ``timeout_interval``)
    grace_seconds: float = 15.0
    #: time between sweeps (hyperkops' ``update_interval``)
    interval_seconds: float = 1.0
    #: time between two refreshes of the per-experiment metrics (hyperfleet.experiment_metrics)
    metrics_interval_seconds: float = 5.0
    #: an experiment with nothing open and nothing newly finished this long leaves the metrics
    metrics_retention_seconds: float = 900.0
    #: ``requeue`` orphans until ``max_retries``, then ERROR; or ``error`` at once (hyperkops)
    policy: str = "requeue"
    #: how often a trial may be recovered from lost infrastructure before it is marked ERROR
    max_retries: int = 3
    #: how often a trial whose objective failed is queued again (0: never)
    max_objective_retries: int = 0
    #: owner checks besides the heartbeat: ``process`` (same host), ``docker``, ``kubernetes``
    liveness: tuple[str, ...] = ("process",)
    #: Docker engine for the ``docker`` check (DOCKER_HOST / the local socket when None)
    docker_url: str | None = None
    #: the engine this monitor lists, as workers record it (several Docker hosts)
    docker_engine_id: str | None = None
    #: more engines whose worker containers to watch (ssh://, tcp://); each one's ID is its address
    docker_engines: tuple[str, ...] = ()
    #: Docker's cert path (ca.pem, cert.pem, key.pem) for the tcp:// engines; None: plain HTTP
    docker_cert_path: str | None = None
    #: namespace and label selector of worker pods for the ``kubernetes`` check
    namespace: str = "default"
    label_selector: str = ""
    #: address of /healthz and /metrics (off when port is None)
    health_host: str = "0.0.0.0"
    health_port: int | None = HEALTH_PORT
    connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS
    #: serve the dashboard too, on the health host (off when None); its actions need this token
    dashboard_port: int | None = None
    dashboard_token: str | None = dataclasses.field(default=None, repr=False)
    #: the dashboard's reads need the token too (published beyond loopback: the stacks and the chart decide)
    dashboard_read_token: bool = False

    def __post_init__(self):
        for name in ("grace_seconds", "interval_seconds", "connect_timeout_seconds", "metrics_interval_seconds",
                     "metrics_retention_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_retries", "max_objective_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        unknown = set(self.liveness) - set(LIVENESS_CHECKS)
        if unknown:
            raise ValueError(f"unknown liveness check(s) {sorted(unknown)}: use {', '.join(LIVENESS_CHECKS)}")
