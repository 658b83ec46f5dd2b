import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.mongo_server import MongoServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mongo_server():
    with MongoServer() as server:
        yield server


@pytest.fixture
def mongo_url(mongo_server):
    """A fresh database on the shared test server for each test."""
    return mongo_server.database_url("t" + uuid.uuid4().hex[:12])


@pytest.fixture
def store(mongo_url):
    from hyperfleet.store import JobStore

    s = JobStore.connect(mongo_url, timeout_seconds=10)
    yield s
    s.client.drop_database(s.address.database)
    s.close()


def worker_env(**extra) -> dict:
    """Environment for worker processes: the test objectives importable, no stray HYPEROPT_ vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPEROPT_", "HYPERFLEET_", "MONGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def start_worker(mongo_url: str, *args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hyperfleet", "worker", "--mongo", mongo_url, *args],
        env=env or worker_env(),
        **popen,
    )
