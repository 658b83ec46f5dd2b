"""What the test servers (tests/mongo_server, tests/kube_server) share: ports, stopping, errors."""

from __future__ import annotations

import signal
import socket
import subprocess


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
