"""Typed settings of the long-running processes. Units are in the names."""

from __future__ import annotations

import dataclasses

DEFAULT_MONGO_URL = "mongodb://localhost:27017/hyperopt"


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    mongo_url: str = DEFAULT_MONGO_URL
    #: only reserve trials of this experiment (all experiments when None)
    exp_key: str | None = None
    #: how often ``refresh_time`` of the running trial is advanced
    heartbeat_seconds: float = 2.0
    #: idle polling starts at ``poll_min_seconds`` and doubles up to ``poll_interval_seconds``
    poll_min_seconds: float = 0.002
    poll_interval_seconds: float = 0.05
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
    #: after the first SIGTERM/SIGINT, hand the trial back and exit within this time
    shutdown_deadline_seconds: float = 10.0
    #: give up connecting to MongoDB after this long
    connect_timeout_seconds: float = 10.0

    def __post_init__(self):
        positive = ("heartbeat_seconds", "poll_min_seconds", "poll_interval_seconds",
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
        if self.poll_min_seconds > self.poll_interval_seconds:
            object.__setattr__(self, "poll_min_seconds", self.poll_interval_seconds)
