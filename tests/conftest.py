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


@pytest.fixture(scope="session")
def docker_worker_image():
    """The runtime image on the offline base image, built once per session (needs a Docker engine)."""
    import shutil

    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine (make docker-engine starts one)")
    image = "hyperfleet/runtime:test"
    subprocess.run([str(REPO / "scripts" / "build-runtime-image.sh"), image,
                    os.environ.get("BASE_IMAGE", "hyperfleet/base:bookworm")], check=True, env=dict(os.environ, PYTHON=sys.executable))
    return image
