"""A real MongoDB wire-protocol server for tests and benchmarks, started and stopped by them.

``mongod`` is used when it is on PATH; otherwise the FerretDB test server that
``scripts/install-ferretdb.sh`` builds into ``$HYPERFLEET_CACHE/bin`` (``make mongo-server``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pymongo

CACHE_DIR = Path(os.environ.get("HYPERFLEET_CACHE", Path.home() / ".cache" / "hyperfleet"))


class ServerNotFound(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(port: int, data_dir: str) -> tuple[str, list[str]]:
    """Which server to start, and how: (kind, argv)."""
    mongod = shutil.which("mongod")
    if mongod and os.environ.get("HYPERFLEET_TEST_SERVER", "auto") in ("auto", "mongod"):
        return "mongod", [mongod, "--dbpath", data_dir, "--port", str(port), "--bind_ip", "127.0.0.1", "--quiet"]
    ferretdb = CACHE_DIR / "bin" / "hyperfleet-ferretdb"
    if ferretdb.exists():
        return "ferretdb", [str(ferretdb), f"--listen-addr=127.0.0.1:{port}", f"--sqlite-url=file:{data_dir}/"]
    raise ServerNotFound(
        f"no MongoDB server: neither mongod on PATH nor {ferretdb}; run `make mongo-server` to build one"
    )


class MongoServer:
    def __init__(self):
        self.port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix="hyperfleet-mongo-")
        self.kind, self.argv = server_command(self.port, self.data_dir)
        self.log_path = os.path.join(self.data_dir, "server.log")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def database_url(self, database: str) -> str:
        return f"{self.url}/{database}"

    def start(self, timeout_seconds: float = 30.0) -> MongoServer:
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_seconds
        client = pymongo.MongoClient(self.url, serverSelectionTimeoutMS=500)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.kind} exited with {self.process.returncode}: {self._log_tail()}")
                try:
                    client.admin.command("ping")
                    return self
                except pymongo.errors.PyMongoError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.kind} did not answer within {timeout_seconds}s: {self._log_tail()}")
        finally:
            client.close()

    def _log_tail(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> MongoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
