"""Mongo over TLS with a real server: the test server serving TLS only (FerretDB's TLS listener, or mongod's
requireTLS) on a certificate made by the stack's own code (infra/certificates.py), as a deployed stack's
Mongo is when it is published beyond loopback.

A plaintext client is refused, and so is one that does not trust the stack's CA; a client with the CA in
its URL (tls=true&tlsCAFile=) works: the job store, a worker, the driver and the monitor, as deployed.
"""

import subprocess
import urllib.request
import uuid

import pymongo
import pytest
import yaml

from hyperfleet.store import JOB_STATE_DONE, JobStore, StoreUnavailable
from infra.certificates import generate
from testbed.mongo import MongoServer, ServerTls
from testbed.processes import free_port
from tests.helpers import jobs, run_cli, start_monitor, start_worker, stop_all, wait_for


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> str:
    """A CA like the stack's, for the same names, that did not sign the server's certificate."""
    path = tmp_path_factory.mktemp("other") / "ca.pem"
    path.write_text(generate("another stack mongo", ["127.0.0.1"])["ca_cert"])
    return str(path)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    made = generate("hyperfleet test mongo", ["localhost", "127.0.0.1"])
    (folder / "ca.pem").write_text(made["ca_cert"])
    server_pem = folder / "server.pem"
    server_pem.touch(mode=0o600)
    server_pem.write_text(made["server_key"] + made["server_cert"])  # mongod's layout: the key, then the certificate
    with MongoServer(tls=ServerTls(str(folder / "ca.pem"), str(server_pem))) as server:
        yield server


@pytest.fixture
def database() -> str:
    return "t" + uuid.uuid4().hex[:12]


def plain_url(server: MongoServer, database: str) -> str:
    url = server.database_url(database)
    assert url.endswith(f"&tls=true&tlsCAFile={server.tls.ca_file}")
    return url.split("&tls=")[0]


def test_a_client_with_the_stacks_ca_stores_and_reads_trials(tls_server, database):
    store = JobStore.connect(tls_server.database_url(database), timeout_seconds=10)
    try:
        [tid] = store.allocate_tids(1)
        store.jobs.insert_one({"tid": tid, "state": 0, "exp_key": "e1"})
        assert store.jobs.find_one({"tid": tid})["exp_key"] == "e1"
    finally:
        store.client.drop_database(database)
        store.close()


def test_a_plaintext_client_is_refused(tls_server, database):
    client = pymongo.MongoClient(plain_url(tls_server, database), serverSelectionTimeoutMS=2000)
    with pytest.raises(pymongo.errors.ServerSelectionTimeoutError):
        client.admin.command("ping")
    client.close()
    with pytest.raises(StoreUnavailable) as err:
        JobStore.connect(plain_url(tls_server, database), timeout_seconds=2)
    assert f"cannot reach MongoDB at mongodb://{tls_server.username}:***@127.0.0.1:{tls_server.port}/" in str(err.value)
    assert tls_server.password not in str(err.value)


@pytest.mark.parametrize("trust", ["another CA", "the system's CAs"])
def test_a_client_that_does_not_trust_the_stacks_ca_is_refused(tls_server, database, other_ca, trust):
    url = plain_url(tls_server, database) + ("&tls=true" + (f"&tlsCAFile={other_ca}" if trust == "another CA" else ""))
    with pytest.raises(StoreUnavailable) as err:
        JobStore.connect(url, timeout_seconds=3)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value) or "certificate verify failed" in str(err.value), str(err.value)
    assert tls_server.password not in str(err.value)


@pytest.mark.timeout(120)
def test_worker_driver_and_monitor_work_over_tls(tls_server, database, tmp_path):
    url = tls_server.database_url(database)
    spec = {"name": "tls", "objective": "hyperfleet.demo:branin", "algo": "rand", "max_evals": 4, "parallelism": 2,
            "space": {"x": {"uniform": [-5, 10]}, "y": {"uniform": [0, 15]}}}
    (path := tmp_path / "tls.yaml").write_text(yaml.safe_dump(spec))
    port = free_port()
    monitor = start_monitor(url, "--health-host", "127.0.0.1", "--health-port", str(port), "--interval-seconds", "0.2",
                            "--grace-seconds", "5", "--liveness", "none", stderr=subprocess.PIPE, text=True)
    worker = start_worker(url, "--log-level", "warning", stderr=subprocess.PIPE, text=True)
    try:
        driver = run_cli(url, path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = driver.communicate(timeout=90)
        assert driver.returncode == 0, out
        assert out.startswith("tls: 4 trials, 4 done, 0 failed"), out
        assert [d["state"] for d in jobs(url).find({"exp_key": "tls"})] == [JOB_STATE_DONE] * 4

        def healthy():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
            except OSError:
                return False
        wait_for(healthy, timeout=30, step=0.2)  # the monitor's sweeps succeed over TLS
    finally:
        codes = stop_all([worker, monitor])
        logs = worker.stderr.read() + monitor.stderr.read()
        pymongo.MongoClient(url).drop_database(database)
    assert codes == [0, 0], logs
    assert tls_server.password not in logs + out
