"""Where a trial ran, from what its worker recorded when it reserved it (``hyperfleet.worker``,
:func:`hyperfleet.worker.worker_identity`): the host (the Docker host's address, the Kubernetes node,
or the machine's name) and the GPU, if the worker was pinned to one. ``hyperfleet status``,
``hyperfleet report``, the dashboard and the monitor's metrics show it alike."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any


def host_of(worker: Mapping[str, Any] | None) -> str | None:
    """The Docker host (``engine``), else the Kubernetes node, else the machine (``host``: in a container,
    the container's own name for itself)."""
    worker = worker or {}
    return worker.get("engine") or worker.get("node") or worker.get("host")


def gpu_of(worker: Mapping[str, Any] | None) -> str | None:
    return (worker or {}).get("gpu")


def ran_on(worker: Mapping[str, Any] | None) -> str | None:
    """``host gpu N``, ``host``, or None when nothing was recorded."""
    host, gpu = host_of(worker), gpu_of(worker)
    if host is None:
        return None
    return f"{host} gpu {gpu}" if gpu is not None else host


def worker_of(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return (doc.get("hyperfleet") or {}).get("worker")


def running_per_gpu(docs: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many of these (RUNNING) trials run on each GPU, by ``host gpu N``; trials without a GPU left out."""
    return dict(sorted(Counter(ran_on(worker_of(d)) for d in docs if gpu_of(worker_of(d)) is not None).items()))


#: the fields of a trial document these functions read (a projection)
WORKER_FIELDS = ["hyperfleet.worker.engine", "hyperfleet.worker.node", "hyperfleet.worker.host", "hyperfleet.worker.gpu"]
