"""Several Docker hosts for real: this machine's engine, an ssh:// one and a TLS tcp:// one
(testbed/docker_hosts), one stack over the three through the real Pulumi engine and docker provider.

A host that does not answer fails the preview naming it before anything is created; `pulumi up` puts
the workers round-robin on the three engines, with Mongo reached through its advertised address; both
experiments (a Python objective and a container objective) reach max_evals with trials done on every
engine, each trial container on the engine of the worker that reserved it; a worker container killed
on any engine has its trial requeued by the monitor, which lists the containers of every host, within
5 s (the heartbeat grace is 60 s); `pulumi destroy` leaves nothing on any engine.

Mongo, published on the home host's address, requires TLS: the workers' URL says tls=true with the CA's
path, a plaintext client of the published port is refused, a client with the stack's CA (its output
mongo_ca_cert) works, and the server's key is in no container's `docker inspect`, not in the exported
state unencrypted, and in no stack output.
"""

import json
import subprocess
import time

import pymongo
import pytest

from testbed.processes import CACHE_DIR
from hyperfleet.contract import (
    EXP_KEY_LABEL,
    MONGO_TLS_CA_FILE,
    ROLE_LABEL,
    ROLE_TRIAL,
    ROLE_WORKER,
    STACK_LABEL,
    TID_LABEL,
)
from hyperfleet.mongo_url import parse_mongo_url
from testbed.docker_hosts import SSH_ENGINE, TLS_ENGINE
from tests.helpers import REPO, wait_for
from tests.pulumi_engine import engine_env, pulumi_runner

STACK = "hosts-ci"
PASSPHRASE = "hyperfleet-hosts-ci"
PYTHON_EXP, CONTAINER_EXP = "hosts-branin", "hosts-container"
MAX_EVALS = {PYTHON_EXP: 24, CONTAINER_EXP: 12}
HOME = "unix:///var/run/docker.sock"
LABEL = f"label={STACK_LABEL}={STACK}"


def config_file(tmp_path, **replace: str):
    """Pulumi.hosts-ci.yaml with its credential paths in this machine's cache (and ``replace``d text)."""
    text = (REPO / f"Pulumi.{STACK}.yaml").read_text().replace("~/.cache/hyperfleet", str(CACHE_DIR))
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"Pulumi.{STACK}-{len(list(tmp_path.glob('Pulumi.*')))}.yaml"
    path.write_text(text)
    return str(path)


def engines(docker_hosts) -> dict[str, str]:
    """Each host's address as the stack names it → the socket this machine's `docker -H` reaches it at."""
    return {HOME: HOME, docker_hosts.ssh_host: SSH_ENGINE.socket, docker_hosts.tls_host: TLS_ENGINE.socket}


def docker(socket: str, *args: str) -> str:
    result = subprocess.run(["docker", "-H", socket, *args], capture_output=True, text=True)
    assert result.returncode == 0, f"docker -H {socket} {' '.join(args[:3])}…: {result.stderr}"
    return result.stdout.strip()


def leftovers(socket: str) -> list[str]:
    return (docker(socket, "ps", "-aq", "--filter", LABEL).split()
            + docker(socket, "ps", "-aq", "--filter", f"label={ROLE_LABEL}={ROLE_TRIAL}").split()
            + docker(socket, "volume", "ls", "-q", "--filter", LABEL).split()
            + docker(socket, "network", "ls", "-q", "--filter", LABEL).split())


@pytest.fixture
def stack(tmp_path, docker_hosts, test_mongo_image):
    pulumi = pulumi_runner(REPO, STACK, engine_env(tmp_path / "state", PASSPHRASE))
    pulumi("stack", "init")
    config = config_file(tmp_path)

    def run(*args, check=True, config=config):
        """pulumi ARGS with the stack's config file (config=None: a command that takes none)."""
        return pulumi(*args, *(["--config-file", config] if config else []), check=check)
    yield run
    run("destroy", "--yes", "--skip-preview", check=False)
    pulumi("stack", "rm", "--yes", "--force", "--preserve-config", check=False)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_one_stack_over_a_local_an_ssh_and_a_tls_docker_host(stack, docker_hosts, tmp_path):
    hosts = engines(docker_hosts)

    # a host that does not answer: the preview fails naming it, and nothing is created anywhere
    unreachable = config_file(tmp_path, **{"ssh://root@10.213.0.2": "ssh://root@10.213.0.9",
                                           "tcp://10.213.0.3:2376": "tcp://10.213.0.3:2399"})
    preview = stack("preview", check=False, config=unreachable)
    out = preview.stdout + preview.stderr
    assert preview.returncode != 0
    assert "a Docker host does not answer, nothing was created" in out, out[-3000:]
    assert "ssh://root@10.213.0.9:" in out and "tcp://10.213.0.3:2399:" in out, out[-3000:]
    assert "unix:///var/run/docker.sock:" not in out  # the one that answers is not named
    assert all(leftovers(socket) == [] for socket in hosts.values())

    since = str(int(time.time()))  # the engines' event logs may hold earlier runs
    started = time.monotonic()
    up = stack("up", "--yes", "--skip-preview")
    up_seconds = time.monotonic() - started
    assert "Resources:" in up.stdout, up.stdout + up.stderr

    # round-robin: worker i on host i % 3, each recording its engine; the rest on the home host
    placed = {}
    for address, socket in hosts.items():
        for line in docker(socket, "ps", "--filter", LABEL, "--format",
                           '{{.Names}} {{.Label "%s"}}' % ROLE_LABEL).splitlines():
            name, role = line.split()
            placed[name] = (address, role)
    workers = {f"hyperfleet-{STACK}-worker-{i}": list(hosts)[i % 3] for i in range(6)}
    assert {n: a for n, (a, role) in placed.items() if role == ROLE_WORKER} == workers
    assert {n for n, (a, role) in placed.items() if a != HOME and role != ROLE_WORKER} == set()
    remote_worker = f"hyperfleet-{STACK}-worker-1"
    env = json.loads(docker(SSH_ENGINE.socket, "inspect", "--format", "{{json .Config.Env}}", remote_worker))
    url = next(e.split("=", 1)[1] for e in env if e.startswith("MONGO_URL="))
    assert "@10.213.0.1:27117/" in url and url.endswith(f"&tls=true&tlsCAFile={MONGO_TLS_CA_FILE}"), url.split("@")[1]

    # Mongo over TLS: plaintext refused; the stack's CA (a public output) is what a client outside needs
    plaintext = pymongo.MongoClient(url.split("&tls=")[0], serverSelectionTimeoutMS=3000)
    with pytest.raises(pymongo.errors.ServerSelectionTimeoutError):
        plaintext.admin.command("ping")
    plaintext.close()
    (ca := tmp_path / "mongo-ca.pem").write_text(stack("stack", "output", "mongo_ca_cert", config=None).stdout)
    address = parse_mongo_url(url.replace(MONGO_TLS_CA_FILE, str(ca)))
    jobs = pymongo.MongoClient(address.uri, serverSelectionTimeoutMS=10000)[address.database][address.collection]

    # kill a worker on each engine while it holds a Python trial it booked under a second ago
    detections = {}
    for index in (1, 2, 0):
        name = f"hyperfleet-{STACK}-worker-{index}"

        def just_booked(name=name):
            now = jobs.database.command("hello")["localTime"]
            return [d["tid"] for d in jobs.find({"state": 1, "exp_key": PYTHON_EXP, "hyperfleet.worker.container": name})
                    if (now - d["book_time"]).total_seconds() < 1]
        tid = wait_for(just_booked, timeout=120, step=0.05)[0]
        docker(hosts[workers[name]], "kill", name)
        killed = time.monotonic()

        def history(tid=tid):  # a trial requeued from an earlier kill has that event already
            return jobs.find_one({"exp_key": PYTHON_EXP, "tid": tid}).get("hyperfleet", {}).get("history", [])
        before = len(history())
        events = wait_for(lambda before=before: len(history()) > before and history(), timeout=30, step=0.05)
        detections[workers[name].split(":")[0]] = time.monotonic() - killed
        event = events[-1]
        assert event["event"] == "requeued" and f"container {name} is exited" in event["reason"], event

    def finished():
        counts = {key: jobs.count_documents({"exp_key": key, "state": 2}) for key in MAX_EVALS}
        return counts == MAX_EVALS and counts
    wait_for(finished, timeout=400, step=1.0)
    assert jobs.count_documents({"state": {"$ne": 2}}) == 0

    # the Python experiment's trials were done by workers on every engine; the container experiment's
    # on more than the home one (which engines exactly is up to who polls first)
    done_on = {key: set(jobs.distinct("hyperfleet.worker.engine", {"exp_key": key, "state": 2})) for key in MAX_EVALS}
    assert done_on[PYTHON_EXP] == set(hosts) and done_on[CONTAINER_EXP] - {HOME}, done_on
    # each trial container ran on the engine of the worker that reserved the trial
    ran_on = {}
    for address, socket in hosts.items():
        for line in docker(socket, "events", "--since", since, "--until", "0s", "--filter", "event=create",
                           "--filter", f"label={ROLE_LABEL}={ROLE_TRIAL}", "--filter", f"label={EXP_KEY_LABEL}={CONTAINER_EXP}",
                           "--format", '{{index .Actor.Attributes "%s"}}' % TID_LABEL).splitlines():
            ran_on.setdefault(int(line), set()).add(address)
    reserved_on = {d["tid"]: d["hyperfleet"]["worker"]["engine"] for d in jobs.find({"exp_key": CONTAINER_EXP})}
    assert {tid: {engine} for tid, engine in reserved_on.items()} == ran_on

    # the monitor got the keys as secrets: not in the output or the state in clear
    key = docker_hosts.identity_file.read_text().splitlines()[1]
    tls_key = (docker_hosts.cert_path / "key.pem").read_text().splitlines()[1]
    export = stack("stack", "export", config=None).stdout
    assert key not in up.stdout + export and tls_key not in up.stdout + export
    # Mongo's key: in its container's file only; in no container's inspect, nor the state or outputs in clear
    server_pem = docker(HOME, "exec", f"hyperfleet-{STACK}-mongo", "cat", "/etc/hyperfleet/mongo-server.pem")
    mongo_key = server_pem.split("-----BEGIN PRIVATE KEY-----")[1].split("-----END")[0].split()
    assert mongo_key and "BEGIN CERTIFICATE" in server_pem
    outputs = stack("stack", "output", "--json", "--show-secrets", config=None).stdout
    inspected = {address: docker(socket, "inspect", *docker(socket, "ps", "-aq").split())
                 for address, socket in hosts.items()}
    for line in mongo_key:
        assert line not in up.stdout + export + outputs, "the server's key in the output or the state"
        assert [a for a, text in inspected.items() if line in text] == [], "the server's key in docker inspect"
    assert json.loads(outputs)["mongo_ca_cert"].strip() == ca.read_text().strip() != ""

    started = time.monotonic()
    stack("destroy", "--yes", "--skip-preview")
    destroy_seconds = time.monotonic() - started
    assert {a: leftovers(s) for a, s in hosts.items()} == {a: [] for a in hosts}
    print(f"\n3 hosts: cold pulumi up {up_seconds:.1f} s, destroy {destroy_seconds:.1f} s; killed worker's trial "
          f"requeued by the monitor after " + ", ".join(f"{k} {v:.2f} s" for k, v in detections.items()))
    assert all(seconds < 5 for seconds in detections.values()), detections
