"""What the test servers (tests/mongo_server, tests/kube_server) share: ports, stopping, errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

#: where the install scripts put what they build (binaries, the Pulumi toolchain, helm)
CACHE_DIR = Path(os.environ.get("HYPERFLEET_CACHE", Path.home() / ".cache" / "hyperfleet"))


def base_image_of_tests() -> str:
    """The base of the tests' images: the offline one of `make docker-engine` unless BASE_IMAGE says."""
    return os.environ.get("BASE_IMAGE", "hyperfleet/base:bookworm")


class ServerNotFound(RuntimeError):
    """A server binary is missing; the message names what installs it."""


#: the components a test may need; HYPERFLEET_TESTS_WITHOUT=docker,helm (say) opts out of them
COMPONENTS = ("docker", "pulumi", "helm", "kubernetes", "root")
OPT_OUT = "HYPERFLEET_TESTS_WITHOUT"


def component_missing(component: str, problem: str):
    """A test that needs ``component`` fails when it is missing, saying how to get it, unless the user
    opted out of it explicitly (``HYPERFLEET_TESTS_WITHOUT``): then, and only then, it is skipped."""
    import pytest

    assert component in COMPONENTS, component
    opted_out = {c.strip() for c in os.environ.get(OPT_OUT, "").split(",") if c.strip()}
    unknown = opted_out - set(COMPONENTS)
    if unknown:
        pytest.fail(f"{OPT_OUT}: unknown component(s) {', '.join(sorted(unknown))}; known: {', '.join(COMPONENTS)}")
    if component in opted_out:
        pytest.skip(f"needs {component} ({OPT_OUT} opts out of it)")
    pytest.fail(f"{problem} (or set {OPT_OUT}={component} to skip the tests that need it)")


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
