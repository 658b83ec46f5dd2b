"""What the testbed's servers share (testbed/mongo.py, the Kubernetes API server and cluster, the Docker
hosts): where the install scripts put their builds, free ports, host processes and how they stop,
the error that names a missing installer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

#: where the install scripts put what they build (binaries, the Pulumi toolchain, helm)
CACHE_DIR = Path(os.environ.get("HYPERFLEET_CACHE", Path.home() / ".cache" / "hyperfleet"))


class ServerNotFound(RuntimeError):
    """A server binary is missing; the message names what installs it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    """Something accepts connections on ``host``:``port`` (within a second)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


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


# -- host processes (the cluster's and the Docker hosts' daemons) ----------------------------------

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


def pids_matching(text: str) -> list[int]:
    """The processes (but this one) whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return [p for p in found if p != os.getpid()]


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
