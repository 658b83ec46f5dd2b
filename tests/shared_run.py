"""What the pytest processes of one run share: the test images, the local cluster and the Docker hosts.

`make test` runs the suite on several pytest-xdist workers, so that tests which mostly wait (a Pulumi
deployment, KEDA scaling, a trial pod) overlap. Every worker asks for the same images and servers, so
each is built or started once per run, under a file lock: the first worker to ask does it, the others
wait and reuse it. What a run started is stopped when the run ends, by its main process (the xdist
controller, or the one pytest process); what was running before the run is used and left running.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

#: the locks and the marks of who built or started what
STATE_DIR = Path(os.environ.get("HYPERFLEET_TEST_RUN_DIR", "/tmp/hyperfleet-test-run"))


class Shared(Protocol):
    def running(self) -> bool: ...
    def up(self) -> object: ...
    def down(self) -> None: ...


def run_owner() -> int:
    """The pid of the run's main process: the xdist controller for one of its workers, else this one."""
    return os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold the run-wide lock ``name`` (every pytest process on this machine shares it)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(_path(name, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _path(name: str, kind: str) -> Path:
    """The file of ``kind`` (lock, built, started) for ``name``, an image ("hyperfleet/runtime:test") or a server."""
    return STATE_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.{kind}"


def _marked_by_this_run(path: Path) -> bool:
    try:
        return path.read_text().strip() == str(run_owner())
    except FileNotFoundError:
        return False


def once_per_run(name: str, build: Callable[[], None]) -> None:
    """``build()`` once in this run, whichever of its processes asks first; the others wait for it."""
    with locked(name):
        done = _path(name, "built")
        if _marked_by_this_run(done):
            return
        done.unlink(missing_ok=True)
        build()
        done.write_text(str(run_owner()))


def start_shared(name: str, server: Shared) -> None:
    """Start ``server`` unless it runs; remember that this run started it (see :func:`stop_started`)."""
    with locked(name):
        if server.running():
            return
        server.up()
        _path(name, "started").write_text(str(run_owner()))


def stop_started(servers: dict[str, Callable[[], Shared]]) -> None:
    """In the run's main process, at its end: stop each server this run started."""
    for name, server in servers.items():
        with locked(name):
            started = _path(name, "started")
            if _marked_by_this_run(started):
                server().down()
                started.unlink()
