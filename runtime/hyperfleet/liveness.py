"""Is the holder of a RUNNING trial still alive? Sooner answers than a stale heartbeat.

Each check looks at what a worker recorded in ``hyperfleet.worker`` when it reserved the trial and
answers with the reason the holder is gone, or None (alive, or not a holder this check can judge).
A check whose API cannot be reached turns itself off, says so once, and the monitor falls back to
heartbeats alone.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any, Protocol

from .engines import EngineAccess
from .engines import client as engine_client
from .contract import CONTAINER_NAME_ENV, DOCKER_ENGINE_ENV, ROLE_LABEL, ROLE_WORKER

log = logging.getLogger("hyperfleet.monitor")


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, Linux); tells a process from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])


class LivenessCheck(Protocol):
    name: str

    def refresh(self) -> None:
        """Called once per sweep before ``gone``: fetch the state of the world in one call."""

    def gone(self, worker: Mapping[str, Any]) -> str | None:
        """The reason the holder is gone, or None."""


class ProcessLiveness:
    """Workers on this monitor's own host: the pid is gone, a zombie, or a different process."""

    name = "process"

    def __init__(self, hostname: str | None = None):
        self.hostname = hostname or socket.gethostname()

    def refresh(self) -> None:
        pass

    def gone(self, worker: Mapping[str, Any]) -> str | None:
        if worker.get("host") != self.hostname or "pid" not in worker or worker.get("container") or worker.get("pod"):
            return None
        pid = int(worker["pid"])
        started = process_start_ticks(pid)
        if started is None:
            return f"process {pid} on {self.hostname} is gone"
        if worker.get("pid_start") is not None and started != worker["pid_start"]:
            return f"process {pid} on {self.hostname} is gone (pid reused)"
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return f"process {pid} on {self.hostname} exited"
        return None


class DockerLiveness:
    """Workers in Docker containers (``hyperfleet.worker.container``): the container is gone or stopped.

    With several Docker hosts, each worker records its engine (``HYPERFLEET_DOCKER_ENGINE``) and each
    check judges only workers of the engine it lists (``engine_id``); the monitor has one check per
    host (``access``: how to reach a remote one). An engine that can't be reached is left to heartbeats
    and tried again every ``RETRY_SECONDS`` (an ssh hiccup must not end container liveness for good).
    """

    name = "docker"
    RETRY_SECONDS = 30.0

    def __init__(self, base_url: str | None = None, client: Any = None, engine_id: str | None = None,
                 access: EngineAccess | None = None):
        self._base_url = base_url
        self._access = access
        self.engine_id = engine_id
        self._client = client
        self._states: dict[str, str] = {}
        self.enabled = True
        self._retry_at = 0.0

    def _connect(self):
        if self._access is not None:
            return engine_client(self._access)
        import docker

        return docker.DockerClient(base_url=self._base_url) if self._base_url else docker.from_env()

    def refresh(self) -> None:
        if not self.enabled and time.monotonic() < self._retry_at:
            return
        try:
            if self._client is None:
                self._client = self._connect()
            states = {}
            for c in self._client.api.containers(all=True, filters={"label": f"{ROLE_LABEL}={ROLE_WORKER}"}):
                state = c.get("State", "unknown")
                for name in c.get("Names", []):
                    states[name.lstrip("/")] = state
                states[c["Id"]] = states[c["Id"][:12]] = state
            self._states = states
            if not self.enabled:
                log.info("docker liveness of %s is back", self.engine_id or "the local engine")
            self.enabled = True
        except Exception as err:  # engine unreachable, no SDK: heartbeats only until the next try
            if self.enabled:
                log.warning("docker liveness of %s off, falling back to heartbeats (next try in %gs): %s",
                            self.engine_id or "the local engine", self.RETRY_SECONDS, err)
            self.enabled = False
            self._retry_at = time.monotonic() + self.RETRY_SECONDS
            if self._access is not None:
                self._client = None  # a new connection next time

    def gone(self, worker: Mapping[str, Any]) -> str | None:
        container = worker.get("container")
        if not self.enabled or not container:
            return None
        if worker.get("engine") and self.engine_id and worker["engine"] != self.engine_id:
            return None  # a container on another Docker host: not listed by this engine
        state = self._states.get(container)
        if state is None:
            return f"container {container} is gone"
        if state not in ("running", "paused", "restarting"):
            return f"container {container} is {state}"
        return None


class KubernetesLiveness:
    """Workers in pods (``hyperfleet.worker.pod``): the pod is missing or has stopped running.

    A pod that is only terminating is left alone: its worker got SIGTERM and hands its trial back.
    """

    name = "kubernetes"

    def __init__(self, namespace: str, label_selector: str = "", core_api: Any = None):
        self.namespace = namespace
        self.label_selector = label_selector
        self._api = core_api
        self._pods: dict[str, str] = {}
        self.enabled = True

    def _client(self):
        if self._api is None:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self._api = client.CoreV1Api()
        return self._api

    def refresh(self) -> None:
        if not self.enabled:
            return
        try:
            pods = self._client().list_namespaced_pod(self.namespace, label_selector=self.label_selector or None)
            self._pods = {p.metadata.name: p.status.phase or "Unknown" for p in pods.items}
        except Exception as err:  # API unreachable, no credentials, no SDK: heartbeats only
            self.enabled = False
            log.warning("kubernetes liveness off, falling back to heartbeats: %s", err)

    def gone(self, worker: Mapping[str, Any]) -> str | None:
        pod = worker.get("pod")
        if not self.enabled or not pod or worker.get("namespace", self.namespace) != self.namespace:
            return None
        if pod not in self._pods:
            return f"pod {self.namespace}/{pod} is gone"
        phase = self._pods[pod]
        if phase not in ("Running", "Pending", "Unknown"):
            return f"pod {self.namespace}/{pod} is {phase}"
        return None


def container_name() -> str | None:
    """The container a worker runs in, as its deployer named it (``HYPERFLEET_CONTAINER_NAME``).

    Not guessed from ``/.dockerenv`` and the hostname: a worker on a host that is itself a container
    would then be judged against an engine that never ran it, and reaped while alive.
    """
    return os.environ.get(CONTAINER_NAME_ENV) or None


def docker_engine() -> str | None:
    """Which Docker host the worker's container runs on, as its deployer named it."""
    return os.environ.get(DOCKER_ENGINE_ENV) or None
