"""What the tests need besides the servers (devserver/): the base of their images, and how a test that
needs a missing component fails (or, opted out, is skipped)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path


def base_image_of_tests() -> str:
    """The base of the tests' images: the offline one of `make docker-engine` unless BASE_IMAGE says."""
    return os.environ.get("BASE_IMAGE", "hyperfleet/base:bookworm")


#: the components a test may need; HYPERFLEET_TESTS_WITHOUT=docker,helm (say) opts out of them
COMPONENTS = ("docker", "pulumi", "helm", "kubernetes", "root", "browser")
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


# -- host processes of the tests' own servers (tests/kube_cluster, tests/docker_hosts) -------------

def run(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command, its output captured; with check, a failure raises with the end of its stderr."""
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a child of this process, not reaped yet, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def terminate(pid: int, sig: int = signal.SIGTERM, timeout_seconds: float = 15) -> None:
    """Send ``sig``; SIGKILL if the process is still there after ``timeout_seconds``."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_seconds
    while alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class PidFile:
    """name → pid of the processes a server started, kept in a JSON file so another process (``down``
    from the command line) finds them."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict[str, int]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def save(self, name: str, pid: int) -> None:
        pids = self.read()
        pids[name] = pid
        self.path.write_text(json.dumps(pids))
