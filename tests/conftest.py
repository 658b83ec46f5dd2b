import os
import subprocess
import sys
import uuid

import pytest

from tests.helpers import REPO, trial_containers
from testbed.mongo import MongoServer
from testbed.processes import ServerNotFound
from testbed import base_image, replacing_image
from tests.components import component_missing, needs
from tests.shared_run import locked, once_per_run, start_shared, stop_started


def _docker_hosts():
    from testbed.docker_hosts import DockerHosts
    return DockerHosts()


def _local_cluster():
    from testbed.kube_cluster import LocalCluster
    return LocalCluster()


def _kube_server():
    from testbed.kube_server import SHARED_DATA_DIR, KubeServer
    return KubeServer(data_dir=SHARED_DATA_DIR)


#: the servers the run's processes share, started once by whichever asks first (tests/shared_run.py)
SHARED_SERVERS = {"docker-hosts": _docker_hosts, "kube-cluster": _local_cluster, "kube-server": _kube_server}


#: the slow files, longest first (as measured in a make test on 4 workers): they start first, so that on
#: several workers (make test) the quick ones fill the gaps at the end. Most of them wait (deployments,
#: KEDA, trial pods, worker processes). Only an order; nothing is timed.
SLOW_FIRST = ["e2e/test_kube_autoscaling.py", "e2e/test_kube_stack.py", "e2e/test_docker_hosts.py",
              "integration/test_objectives_docker.py", "e2e/test_user_targets.py", "e2e/test_docker_stack.py",
              "integration/test_kube_provider.py", "e2e/test_kube_trial_pods.py", "integration/test_worker.py",
              "integration/test_pruning.py", "integration/test_dashboard.py", "integration/test_monitor.py",
              "integration/test_run.py", "e2e/test_dashboard_browser.py", "integration/test_shutdown.py",
              "e2e/test_kube_credentials.py", "e2e/test_kube_gpus.py", "integration/test_outage.py",
              "chart/test_chart.py", "integration/test_status_report.py", "integration/test_secrets.py"]


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)
    items.sort(key=rank)  # stable: a file's tests keep their order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile, with a worker busy on a slow file taking quick files next (tests/xdist_schedule.py)."""
    if config.getvalue("dist") == "loadfile":
        from tests.xdist_schedule import SlowFilesApart
        return SlowFilesApart(config, log, {f"tests/{path}" for path in SLOW_FIRST})
    return None


def pytest_terminal_summary(terminalreporter):
    """With HYPERFLEET_FAILURE_DIGEST set (make test sets it), the run's main process writes there a few lines per
    failed test: its id, the error's message and the end of what it printed. make test shows them last, after the
    stages that ran beside the suite, where a log cut to its beginning and its end still has them."""
    path = os.environ.get("HYPERFLEET_FAILURE_DIGEST")
    if not path or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    lines = []
    for report in terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", []):
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash else str(report.longrepr)
        printed = (report.capstdout + report.capstderr).strip().splitlines()
        lines += [f"{report.nodeid} ({report.when})", *("  " + line for line in message.splitlines()[:8]),
                  *("  | " + line[:300] for line in printed[-6:])]
    with open(path, "w") as digest:
        digest.write("".join(line + "\n" for line in lines))


def pytest_sessionfinish(session):
    """The run's main process stops the shared servers the run started, after every worker is done."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        stop_started(SHARED_SERVERS)



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


@pytest.fixture(scope="session")
def docker_worker_image():
    """The runtime image on the offline base image, built once per session (needs a Docker engine)."""
    import shutil

    needs("docker")
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        component_missing("docker", "no Docker engine (make docker-engine starts one)")
    image = "hyperfleet/runtime:test"

    def build() -> None:
        _remove_earlier_trial_containers()
        replacing_image(image, lambda: subprocess.run(
            [str(REPO / "scripts" / "build-runtime-image.sh"), image, base_image()], check=True,
            env=dict(os.environ, PYTHON=sys.executable)))
    once_per_run(image, build)
    return image


def _remove_earlier_trial_containers() -> None:
    """Trial containers an earlier run left (a run killed, or a test that failed on a leak): the tests
    that count what a trial leaves behind would all fail on them. None of this run's exists yet: each
    test that starts one needs this run's image first. Said, not hidden."""
    found = trial_containers()
    if found:
        print(f"removing {len(found)} trial container(s) an earlier run left: {' '.join(found)}")
        subprocess.run(["docker", "rm", "-f", *found], capture_output=True, check=True)


@pytest.fixture(scope="session")
def objective_image(docker_worker_image):
    """hyperfleet/example-objective:test: the container objective of examples/container-objective."""
    image = "hyperfleet/example-objective:test"
    once_per_run(image, lambda: replacing_image(image, lambda: subprocess.run(
        ["docker", "build", "--quiet", "--build-arg", f"BASE_IMAGE={base_image()}", "-t", image,
         str(REPO / "examples" / "container-objective")], check=True, capture_output=True)))
    return image


@pytest.fixture(scope="session")
def test_mongo_image(docker_worker_image):
    """hyperfleet/test-mongo:test (testbed/images/test-mongo): FerretDB, where no mongo image can be pulled."""
    image = "hyperfleet/test-mongo:test"
    once_per_run(image, lambda: replacing_image(image, lambda: subprocess.run(
        [str(REPO / "testbed" / "install" / "test-mongo-image.sh")], check=True, capture_output=True)))
    return image


# -- the test's remote Docker hosts (testbed/docker_hosts) -------------------------------------------

@pytest.fixture(scope="session")
def docker_hosts(docker_worker_image, objective_image):
    """The ssh:// and TLS tcp:// engines, with the worker and objective images loaded (a registry's
    job for real hosts): running ones (python -m testbed.docker_hosts up) are used and left running;
    else they are started for the run and stopped after it (tests/shared_run.py)."""
    hosts = SHARED_SERVERS["docker-hosts"]()
    try:
        start_shared("docker-hosts", hosts)
    except ServerNotFound as err:
        component_missing("docker", str(err))
    with locked("docker-hosts"):
        hosts.load_images([docker_worker_image, objective_image])
    return hosts


# -- the single-node cluster whose pods run (testbed/kube_cluster) -------------------------------------

@pytest.fixture(scope="session")
def kube_cluster(docker_worker_image, test_mongo_image):
    """The local cluster, with the test images loaded: a running one (make cluster-up) is used and left
    running; else one is started for the run and stopped after it (tests/shared_run.py)."""
    needs("kubernetes")
    cluster = SHARED_SERVERS["kube-cluster"]()
    try:
        start_shared("kube-cluster", cluster)
    except ServerNotFound as err:
        component_missing("kubernetes", str(err))
    with locked("kube-cluster"):
        cluster.load_images([docker_worker_image, test_mongo_image])
    return cluster


@pytest.fixture(scope="session")
def cluster_api(kube_cluster):
    """A kubernetes client ApiClient of the local cluster."""
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=kube_cluster.kubeconfig, context=kube_cluster.context)
    yield api_client
    api_client.close()


# -- the test Kubernetes API server (testbed/kube_server), shared by every test that needs one --------

@pytest.fixture(scope="session")
def kube_server():
    """The test API server: one for the run, started by the first process that asks (tests/shared_run.py);
    every test makes its own namespace in it."""
    needs("kubernetes")
    try:
        server = SHARED_SERVERS["kube-server"]()
        start_shared("kube-server", server)  # its port: as this process started it, or as running() read it
    except ServerNotFound as err:
        component_missing("kubernetes", str(err))
    return server


@pytest.fixture(scope="session")
def kube_api(kube_server):
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=kube_server.kubeconfig, context=kube_server.context)
    yield api_client
    api_client.close()


@pytest.fixture
def namespace(kube_server, kube_api):
    """A fresh namespace whose `default` ServiceAccount exists (so Pods are admitted); deleted after."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube_api)
    name = "t-" + uuid.uuid4().hex[:10]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    kube_server.wait_for_service_account(name)
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise


@pytest.fixture(scope="session")
def helm(tmp_path_factory):
    """``helm(*args, check=True)``: the built helm with its own throwaway cache/config/data homes."""
    needs("helm")
    from testbed.kube_server import find_helm

    path = find_helm() or component_missing("helm", "helm not found: testbed/install/helm.sh builds it (make kube-server)")
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}

    def run(*args, check=True):
        result = subprocess.run([path, *args], env=env, capture_output=True, text=True)
        if check:
            assert result.returncode == 0, result.stderr
        return result
    return run
