"""Several Docker hosts for real: this machine's engine, an ssh:// one and a TLS tcp:// one
(testbed/docker_hosts), one stack over the three through the real Pulumi engine and docker provider.

A host that does not answer fails the preview naming it before anything is created; `pulumi up` puts
the workers round-robin on the three engines, with Mongo reached through its advertised address; both
experiments (a Python objective and a container objective) reach max_evals with trials done on every
engine, each trial container on the engine of the worker that reserved it; a worker container killed
on any engine has its trial requeued by the monitor, which lists the containers of every host, within
5 s (the heartbeat grace is 60 s; the kills come first, while the Python experiment has most of its
trials ahead); `pulumi destroy` leaves nothing on any engine.

Mongo, published on the home host's address, requires TLS: the workers' URL says tls=true with the CA's
path, a plaintext client of the published port is refused, a client with the workers' CA (the stack's
output mongo_ca_cert) works, and the server's key is in no container's `docker inspect`, not in the
exported state unencrypted, and in no stack output.
"""

import json
import subprocess
import time
from pathlib import Path

import pymongo
import pytest
import yaml

from testbed.processes import CACHE_DIR
from hyperfleet.contract import (
    EXP_KEY_LABEL,
    GPU_LABEL,
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


def inspect_every_container(socket: str) -> str:
    """``docker inspect`` of every container on the engine. The local engine is shared with the tests running
    beside this one: a container of theirs removed between the listing and the inspect is left out (gone,
    it shows nothing); any other error fails."""
    ids = docker(socket, "ps", "-aq").split()
    result = subprocess.run(["docker", "-H", socket, "inspect", *ids], capture_output=True, text=True)
    gone = {line.removeprefix("Error: No such object: ") for line in result.stderr.splitlines()}
    assert result.returncode == 0 or gone <= set(ids), f"docker -H {socket} inspect: {result.stderr}"
    return result.stdout


def leftovers(socket: str) -> list[str]:
    """The stack's containers, volumes and networks, and its experiment's trial containers, on the engine (the
    home engine is shared: other tests' trial containers run there beside this one)."""
    return (docker(socket, "ps", "-aq", "--filter", LABEL).split()
            + docker(socket, "ps", "-aq", "--filter", f"label={ROLE_LABEL}={ROLE_TRIAL}",
                     "--filter", f"label={EXP_KEY_LABEL}={CONTAINER_EXP}").split()
            + docker(socket, "volume", "ls", "-q", "--filter", LABEL).split()
            + docker(socket, "network", "ls", "-q", "--filter", LABEL).split())


MONGO = f"hyperfleet-{STACK}-mongo"


def mongo_restarts() -> tuple[int, str]:
    """How often the stack's Mongo container was restarted, and what it said (its state and its log's end)."""
    inspect = subprocess.run(["docker", "inspect", "--format", "{{.RestartCount}} {{json .State}}", MONGO],
                             capture_output=True, text=True)
    if inspect.returncode != 0:
        return 0, f"no {MONGO}: {inspect.stderr.strip()}"
    logs = subprocess.run(["docker", "logs", "--tail", "80", MONGO], capture_output=True, text=True)
    count, state = inspect.stdout.strip().split(" ", 1)
    return int(count), f"{MONGO} restarted {count} times; state {state}\n{logs.stdout[-4000:]}{logs.stderr[-8000:]}"


def stack_jobs(address) -> tuple[pymongo.collection.Collection, float]:
    """The stack's jobs collection, once its Mongo answers, and how long that took: the server's first start
    (its database made, the extension created) may outlast `pulumi up` on a loaded machine, while the
    workers' own connects retry. Each later call has 10 s."""
    waited = time.monotonic()
    with pymongo.MongoClient(address.uri, serverSelectionTimeoutMS=120000) as first:
        first.admin.command("ping")
    waited = time.monotonic() - waited
    return pymongo.MongoClient(address.uri, serverSelectionTimeoutMS=10000)[address.database][address.collection], waited


@pytest.fixture
def stack(tmp_path, docker_hosts, test_mongo_image):
    pulumi = pulumi_runner(REPO, STACK, engine_env(tmp_path / "state", PASSPHRASE))
    pulumi("stack", "init")
    config = config_file(tmp_path)

    def run(*args, check=True, config=config):
        """pulumi ARGS with the stack's config file (config=None: a command that takes none)."""
        return pulumi(*args, *(["--config-file", config] if config else []), check=check)
    yield run
    print(mongo_restarts()[1])  # shown when the test failed: a server that went away says why here
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

    # the CA the workers verify Mongo with (compared with the stack's output below); read from a worker now,
    # since the kills must begin while the Python experiment (about 15 s of trials) has most of its trials ahead
    ca = tmp_path / "mongo-ca.pem"
    ca.write_text(docker(SSH_ENGINE.socket, "exec", remote_worker, "cat", MONGO_TLS_CA_FILE) + "\n")
    address = parse_mongo_url(url.replace(MONGO_TLS_CA_FILE, str(ca)))
    jobs, mongo_wait = stack_jobs(address)

    # kill a worker on each engine while it holds a Python trial it booked under a second ago: the engines in the
    # order their workers book (either of an engine's two workers: one may be busy with container trials)
    detections = {}
    while len(detections) < len(hosts):
        candidates = [n for n, a in workers.items() if a not in detections]

        def just_booked(candidates=candidates):
            now = jobs.database.command("hello")["localTime"]
            return [(d["hyperfleet"]["worker"]["container"], d["tid"])
                    for d in jobs.find({"state": 1, "exp_key": PYTHON_EXP, "hyperfleet.worker.container": {"$in": candidates}})
                    if (now - d["book_time"]).total_seconds() < 1]
        try:
            name, tid = wait_for(just_booked, timeout=120, step=0.05)[0]
        except AssertionError:  # where the trials are, and what the workers said
            counts = list(jobs.aggregate([{"$group": {"_id": {"state": "$state", "exp_key": "$exp_key",
                                                                  "worker": "$hyperfleet.worker.container"},
                                                          "n": {"$sum": 1}}}]))
            logs = [subprocess.run(["docker", "-H", hosts[workers[n]], "logs", "--tail", "30", n],
                                   capture_output=True, text=True) for n in candidates]
            print(f"{', '.join(candidates)} booked nothing in 120 s; trials by state, experiment and worker: {counts}\n"
                  + "\n".join(log.stdout[-2000:] + log.stderr[-2000:] for log in logs))
            raise

        def history(tid=tid):  # a trial requeued from an earlier kill has that event already
            return jobs.find_one({"exp_key": PYTHON_EXP, "tid": tid}).get("hyperfleet", {}).get("history", [])
        before = len(history())  # read before the kill: the monitor may requeue before `docker kill` returns
        # requeued within 30 s (the heartbeats' grace is 60 s), naming the exited container: the monitor listed the
        # worker's engine. How soon is a figure the run prints (under a second idle), not a bound: a loaded machine
        # (CI's) may take seconds
        docker(hosts[workers[name]], "kill", name)
        killed = time.monotonic()
        try:
            events = wait_for(lambda before=before: len(history()) > before and history(), timeout=30, step=0.05)
        except AssertionError:  # what the monitor said of the engines (a liveness check that fell back, say)
            logs = subprocess.run(["docker", "-H", HOME, "logs", "--tail", "60", f"hyperfleet-{STACK}-monitor"],
                                  capture_output=True, text=True)
            print(logs.stdout[-3000:] + logs.stderr[-6000:])
            raise
        detections[workers[name]] = time.monotonic() - killed
        event = events[-1]
        assert event["event"] == "requeued" and f"container {name} is exited" in event["reason"], event

    # Mongo over TLS: plaintext refused (the stack's CA output is the workers' one: checked below)
    plaintext = pymongo.MongoClient(url.split("&tls=")[0], serverSelectionTimeoutMS=3000)
    with pytest.raises(pymongo.errors.ServerSelectionTimeoutError):
        plaintext.admin.command("ping")
    plaintext.close()

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
    server_pem = docker(HOME, "exec", MONGO, "cat", "/etc/hyperfleet/mongo-server.pem")
    mongo_key = server_pem.split("-----BEGIN PRIVATE KEY-----")[1].split("-----END")[0].split()
    assert mongo_key and "BEGIN CERTIFICATE" in server_pem
    outputs = stack("stack", "output", "--json", "--show-secrets", config=None).stdout
    inspected = {address: inspect_every_container(socket) for address, socket in hosts.items()}
    for line in mongo_key:
        assert line not in up.stdout + export + outputs, "the server's key in the output or the state"
        assert [a for a, text in inspected.items() if line in text] == [], "the server's key in docker inspect"
    assert json.loads(outputs)["mongo_ca_cert"].strip() == ca.read_text().strip() != ""
    restarts, said = mongo_restarts()
    assert restarts == 0, said  # the workers' kills and the load leave the database alone

    started = time.monotonic()
    stack("destroy", "--yes", "--skip-preview")
    destroy_seconds = time.monotonic() - started
    assert {a: leftovers(s) for a, s in hosts.items()} == {a: [] for a in hosts}
    print(f"\n3 hosts: cold pulumi up {up_seconds:.1f} s (then {mongo_wait:.1f} s until Mongo answered), destroy "
          f"{destroy_seconds:.1f} s; killed worker's trial "
          f"requeued by the monitor after " + ", ".join(f"{k.split(':')[0]} {v:.2f} s" for k, v in detections.items()))


#: the GPU test's hosts: the home host without GPUs (Mongo, the monitor, the driver), GPUs 0 and 1 on the ssh host,
#: GPU 0 on the TLS host; two workers per GPU
GPUS = {1: ["0", "1"], 2: ["0"]}
TRIALS_PER_GPU, GPU_TRIALS = 2, 12


def gpu_config(tmp_path, docker_hosts) -> str:
    """The hosts-ci stack with GPUs on its two remote hosts and only its container experiment."""
    path = config_file(tmp_path)
    doc = yaml.safe_load(open(path))
    config = doc["config"]
    addresses = [HOME, docker_hosts.ssh_host, docker_hosts.tls_host]
    config["hyperfleet:workers"] = {
        **config["hyperfleet:workers"], "replicas": 0, "trialsPerGpu": TRIALS_PER_GPU,
        "hosts": [a if i not in GPUS else {"engine": a, "gpus": [int(g) for g in GPUS[i]]} for i, a in enumerate(addresses)]}
    (container,) = [e for e in config["hyperfleet:experiments"] if e["name"] == CONTAINER_EXP]
    config["hyperfleet:experiments"] = [{**container, "max_evals": GPU_TRIALS, "parallelism": 6,
                                         "objective": {**container["objective"], "env": {"SLEEP_SECONDS": "3"}}}]
    Path(path).write_text(yaml.safe_dump(doc))
    return path


def most_at_once(intervals) -> int:
    """The most intervals (start, end) that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gpus_on_two_docker_hosts_pin_each_worker_and_its_trial_containers_to_one_gpu(stack, docker_hosts, tmp_path):
    """A stack with GPUs on two hosts through the real Pulumi engine and docker provider: the preview passes; `pulumi
    up` makes trialsPerGpu workers per GPU, each with a device request for exactly its GPU (docker inspect); their trial
    containers carry the same request, and the engine's nvidia device driver hands each the worker's GPU (the trial
    reports NVIDIA_VISIBLE_DEVICES); trials run on every GPU, at most trialsPerGpu at once on one. The engines' nvidia
    driver calls a stand-in for the NVIDIA Container Toolkit's hook (testbed/docker_hosts): no GPU here."""
    hosts = engines(docker_hosts)
    addresses = list(hosts)
    config = gpu_config(tmp_path, docker_hosts)
    started = time.monotonic()
    preview = stack("preview", config=config)
    preview_seconds = time.monotonic() - started
    assert "workers-h1-gpu1-1" in preview.stdout and "workers-h2-gpu0-1" in preview.stdout, preview.stdout[-3000:]

    started = time.monotonic()
    stack("up", "--yes", "--skip-preview", config=config)
    up_seconds = time.monotonic() - started

    def live_trial_container():  # a trial container of a GPU host, inspected while it runs (it lives 3 s)
        for address in addresses[1:]:
            for cid in docker(hosts[address], "ps", "-q", "--filter", f"label={ROLE_LABEL}={ROLE_TRIAL}").split():
                found = subprocess.run(["docker", "-H", hosts[address], "inspect", cid], capture_output=True, text=True)
                if found.returncode == 0:
                    return address, json.loads(found.stdout)[0]
        return None
    # first, while the experiment (two rounds of 3 s trials on 6 slots) runs: the checks of the workers below
    # take longer than that on a loaded machine
    address, trial = wait_for(live_trial_container, timeout=180, step=0.1)
    gpu = trial["Config"]["Labels"][GPU_LABEL]
    assert gpu in GPUS[addresses.index(address)]
    assert [(r["Count"], r["DeviceIDs"], r["Capabilities"]) for r in trial["HostConfig"]["DeviceRequests"]] == \
        [(0, [gpu], [["gpu"]])]

    workers = {}
    for address, socket in hosts.items():
        for name in docker(socket, "ps", "--filter", LABEL, "--filter", f"label={ROLE_LABEL}={ROLE_WORKER}",
                           "--format", "{{.Names}}").split():
            inspected = json.loads(docker(socket, "inspect", name))[0]
            requests = [(r["Driver"], r["Count"], r["DeviceIDs"], r["Capabilities"])
                        for r in inspected["HostConfig"]["DeviceRequests"] or []]
            workers[name] = (address, inspected["Config"]["Labels"].get(GPU_LABEL), requests)
    assert workers == {f"hyperfleet-{STACK}-worker-h{host}-gpu{gpu}-{slot}": (addresses[host], gpu, [("", 0, [gpu], [["gpu"]])])
                       for host, gpus in GPUS.items() for gpu in gpus for slot in range(TRIALS_PER_GPU)}

    remote_worker = f"hyperfleet-{STACK}-worker-h1-gpu0-0"
    env = json.loads(docker(SSH_ENGINE.socket, "inspect", "--format", "{{json .Config.Env}}", remote_worker))
    url = next(e.split("=", 1)[1] for e in env if e.startswith("MONGO_URL="))
    (ca := tmp_path / "mongo-ca.pem").write_text(stack("stack", "output", "mongo_ca_cert", config=None).stdout)
    address = parse_mongo_url(url.replace(MONGO_TLS_CA_FILE, str(ca)))
    jobs, _ = stack_jobs(address)
    wait_for(lambda: jobs.count_documents({"exp_key": CONTAINER_EXP, "state": 2}) == GPU_TRIALS, timeout=400, step=1.0)
    trials = list(jobs.find({"exp_key": CONTAINER_EXP}))
    assert [t["state"] for t in trials] == [2] * GPU_TRIALS
    # each trial container got its worker's GPU: the engine's nvidia driver set NVIDIA_VISIBLE_DEVICES from the request
    assert [t["result"].get("gpus") for t in trials] == [t["hyperfleet"]["worker"]["gpu"] for t in trials]
    ran_on: dict = {}
    for t in trials:
        ran_on.setdefault((t["hyperfleet"]["worker"]["engine"], t["hyperfleet"]["worker"]["gpu"]), []).append(
            (t["book_time"], t["refresh_time"]))
    assert set(ran_on) == {(addresses[host], gpu) for host, gpus in GPUS.items() for gpu in gpus}, ran_on.keys()
    assert {t["hyperfleet"]["worker"]["container"] for t in trials} == set(workers)  # every slot ran trials
    at_once = {place: most_at_once(intervals) for place, intervals in ran_on.items()}
    assert max(at_once.values()) == TRIALS_PER_GPU, at_once  # two trials shared a GPU, never three

    started = time.monotonic()
    stack("destroy", "--yes", "--skip-preview", config=config)
    destroy_seconds = time.monotonic() - started
    assert {a: leftovers(s) for a, s in hosts.items()} == {a: [] for a in hosts}
    print(f"\nGPUs on 2 hosts ({sum(map(len, GPUS.values()))} GPUs x {TRIALS_PER_GPU}): preview {preview_seconds:.1f} s, "
          f"up {up_seconds:.1f} s, destroy {destroy_seconds:.1f} s; trials per GPU at once {at_once}")
