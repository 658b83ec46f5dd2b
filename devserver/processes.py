"""What the local servers (devserver/mongo.py, and the tests' Kubernetes) share: where the install
scripts put their builds, ports, stopping, errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

#: where the install scripts put what they build (binaries, the Pulumi toolchain, helm)
CACHE_DIR = Path(os.environ.get("HYPERFLEET_CACHE", Path.home() / ".cache" / "hyperfleet"))


class ServerNotFound(RuntimeError):
    """A server binary is missing; the message names what installs it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout_seconds: float = 15) -> None:
    """Ask a server to stop with ``sig``; kill it if it is still there after ``timeout_seconds``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout_seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ManagedServer:
    """``with Server() as server:`` for a test server with ``start()`` (returns self) and ``stop()``;
    a failed start still stops whatever it had started."""

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
