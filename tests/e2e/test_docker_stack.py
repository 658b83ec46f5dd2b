"""`pulumi up` of the CI stack on the real dockerd through the real engine (make toolchain).

The example experiment reaches max_evals although a worker is killed mid-trial (the monitor recovers
its trial) and the database restarts mid-experiment (its volume keeps every trial, and no other
container restarts), and its pruning rule stops some trials early; a second `pulumi up` changes
nothing; `pulumi destroy` leaves no container, volume or network.
"""

import json
import subprocess
import time
import urllib.parse

import pytest

from tests.helpers import REPO, wait_for
from tests.pulumi_engine import engine_env, pulumi_runner

STACK = "ci"
MAX_EVALS = 12
PASSPHRASE = "hyperfleet-ci"  # the CI stack's secrets protect nothing of value; documented in the README


def docker(*args) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    assert result.returncode == 0, f"docker {' '.join(args[:3])}…: {result.stderr}"
    return result.stdout.strip()


def log_tail(container: str, lines: int) -> str:
    """A container's last ``lines`` lines of output, both streams (for a failure's message)."""
    logs = subprocess.run(["docker", "logs", "--tail", str(lines), container], capture_output=True, text=True)
    return logs.stdout + logs.stderr


def leftovers() -> list[str]:
    label = f"label=hyperfleet.stack={STACK}"
    return (docker("ps", "-aq", "--filter", label).split() + docker("volume", "ls", "-q", "--filter", label).split()
            + docker("network", "ls", "-q", "--filter", label).split())


def in_monitor(code: str) -> str:
    """Python run inside the monitor container, which holds the Mongo address (MONGO_URL) and pymongo; its first
    query waits for the server's first start (up to 120 s)."""
    return docker("exec", f"hyperfleet-{STACK}-monitor", "python3", "-c",
                  "import os, json, pymongo; from hyperfleet.mongo_url import parse_mongo_url; "
                  "a = parse_mongo_url(os.environ['MONGO_URL']); "
                  "jobs = pymongo.MongoClient(a.uri, serverSelectionTimeoutMS=120000)[a.database][a.collection]; " + code)


#: the env vars that must carry the Mongo password: the address of workers and monitor, of the
#: experiment's driver (`hyperfleet run`), and the database's own
CARRIERS = {"MONGO_URL", "HYPERFLEET_RUN_MONGO", "MONGO_INITDB_ROOT_PASSWORD"}
#: the dashboard's token (Pulumi.ci.yaml's secret hyperfleet:dashboardToken) and the one env var that carries it
DASHBOARD_TOKEN, TOKEN_CARRIER = "ci-dashboard-token", "HYPERFLEET_MONITOR_DASHBOARD_TOKEN"


def check_the_dashboard_answers_on_localhost_only_and_keeps_its_token(stack, up) -> None:
    import urllib.error
    import urllib.request

    assert docker("port", f"hyperfleet-{STACK}-monitor", "8090") == "127.0.0.1:8090"
    assert json.loads(stack("stack", "output", "dashboard_url", "--json").stdout) == "http://127.0.0.1:8090/"

    def experiments():
        try:
            return json.loads(urllib.request.urlopen("http://127.0.0.1:8090/api/experiments", timeout=5).read())
        except OSError:
            return None
    assert [e["exp_key"] for e in wait_for(experiments, timeout=120, step=0.5)] == ["ci-branin"]
    for token in (None, "wrong"):
        request = urllib.request.Request("http://127.0.0.1:8090/api/experiments/ci-branin/cancel", method="POST",
                                         headers={"Authorization": f"Bearer {token}"} if token else {})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
    assert DASHBOARD_TOKEN not in up.stdout + up.stderr
    assert DASHBOARD_TOKEN not in stack("stack", "export").stdout + stack("stack", "output", "--json").stdout
    for inspected in json.loads(docker("inspect", *docker("ps", "-aq", "--filter", f"label=hyperfleet.stack={STACK}").split())):
        env = inspected["Config"].pop("Env")
        assert DASHBOARD_TOKEN not in json.dumps(inspected), inspected["Name"]
        carriers = [e.split("=", 1)[0] for e in env if DASHBOARD_TOKEN in e]
        assert carriers == ([TOKEN_CARRIER] if inspected["Name"] == f"/hyperfleet-{STACK}-monitor" else []), carriers


def check_the_password_is_only_where_it_must_be(stack, up) -> None:
    """The generated Mongo password is in one env var per container that needs it (CARRIERS) and
    nowhere else: not in what `pulumi up` printed, the stack's state or outputs, any label, argument or
    other field of `docker inspect`, or any container's log."""
    env = json.loads(docker("inspect", "--format", "{{json .Config.Env}}", f"hyperfleet-{STACK}-monitor"))
    url = next(e.split("=", 1)[1] for e in env if e.startswith("MONGO_URL="))
    password = urllib.parse.unquote(url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1])
    assert len(password) >= 24
    # the database checks it: a wrong one is refused, in one line
    wrong = url.replace(urllib.parse.quote(password, safe=""), "not-the-password")
    refused = subprocess.run(["docker", "exec", "-e", f"HYPERFLEET_STATUS_MONGO={wrong}", f"hyperfleet-{STACK}-monitor",
                              "hyperfleet", "status", "--connect-timeout-seconds", "120"],  # Mongo may be restarting
                             capture_output=True, text=True)
    assert refused.returncode == 1 and "refused the credentials" in refused.stderr, refused.stderr
    assert password not in up.stdout + up.stderr
    assert password not in stack("stack", "export").stdout
    assert password not in stack("stack", "output", "--json").stdout
    containers = docker("ps", "-aq", "--filter", f"label=hyperfleet.stack={STACK}").split()
    assert len(containers) >= 4
    for inspected in json.loads(docker("inspect", *containers)):
        env = inspected["Config"].pop("Env")
        assert password not in json.dumps(inspected), inspected["Name"]
        carriers = [e.split("=", 1)[0] for e in env if password in e]
        assert len(carriers) <= 1 and set(carriers) <= CARRIERS, (inspected["Name"], carriers)
        logs = subprocess.run(["docker", "logs", inspected["Id"]], capture_output=True, text=True, check=True)
        assert password not in logs.stdout + logs.stderr, inspected["Name"]


@pytest.fixture
def stack(tmp_path, docker_worker_image, test_mongo_image):
    pulumi = pulumi_runner(REPO, STACK, engine_env(tmp_path / "state", PASSPHRASE))
    pulumi("stack", "init")
    yield pulumi
    pulumi("destroy", "--yes", "--skip-preview", check=False)
    pulumi("stack", "rm", "--yes", "--force", "--preserve-config", check=False)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_pulumi_up_runs_the_experiment_survives_a_killed_worker_and_destroy_leaves_nothing(stack):
    started = time.monotonic()
    up = stack("up", "--yes", "--skip-preview")
    up_seconds = time.monotonic() - started
    assert "Resources:" in up.stdout, up.stdout + up.stderr

    # first, kill a worker that holds a RUNNING trial, mid-trial (each trial sleeps 3 s): whichever of the two
    # books one first, found by a loop inside the monitor's container (a `docker exec` per poll takes seconds
    # under load, and the experiment's 12 trials take about 20 s: the checks of the password and the dashboard
    # come after, since on a loaded machine they outlast the experiment)
    def just_booked() -> tuple[str, int]:
        """(worker, tid) of a trial RUNNING booked under a second ago (server clock): the kill lands mid-trial."""
        return json.loads(in_monitor(
            "\nimport datetime, time\nfound, deadline = [], time.monotonic() + 120\n"
            "while not found and time.monotonic() < deadline:\n"
            "    now = jobs.database.command('hello')['localTime']\n"
            "    found = [(d['hyperfleet']['worker']['container'], d['tid']) for d in jobs.find({'state': 1})\n"
            "             if now - d['book_time'] < datetime.timedelta(seconds=1)]\n"
            "    time.sleep(0.05)\n"
            "print(json.dumps(found[0] if found else None))"))

    booked = just_booked()
    first_booked = time.monotonic() - started
    assert booked, "no worker booked a trial in 120 s"
    victim, tid = booked
    docker("kill", victim)
    # the database restarts mid-experiment: its volume keeps every trial, and nobody else restarts
    docker("restart", "--time", "5", f"hyperfleet-{STACK}-mongo")
    check_the_password_is_only_where_it_must_be(stack, up)
    check_the_dashboard_answers_on_localhost_only_and_keeps_its_token(stack, up)

    def finished():
        status = json.loads(docker("exec", f"hyperfleet-{STACK}-monitor", "hyperfleet", "status", "--json"))
        return status and status[0]["finished"] >= MAX_EVALS and status[0]

    status = wait_for(finished, timeout=300, step=1.0)
    assert status["done"] == MAX_EVALS and status["total"] == MAX_EVALS and status["error"] == 0
    # the experiment's pruning rule (Pulumi.ci.yaml) stopped some trials early: DONE, marked, never retried
    pruned = json.loads(in_monitor("print(json.dumps([[d['hyperfleet']['pruned']['step'], d['result'], "
                                   "d['hyperfleet']['progress']['steps']] "
                                   "for d in jobs.find({'hyperfleet.pruned': {'$exists': True}})]))"))
    assert 1 <= len(pruned) < MAX_EVALS, pruned
    for step, result, steps in pruned:
        assert step >= 4 and result["pruned"] is True and result["status"] == "ok" and steps <= step + 1, pruned
    survivor = ({f"hyperfleet-{STACK}-worker-{i}" for i in (0, 1)} - {victim}).pop()
    restarts = docker("inspect", "--format", "{{.Name}} {{.RestartCount}} {{.State.Status}}",
                      f"hyperfleet-{STACK}-monitor", survivor).split("\n")
    restarted = [line.split()[0].lstrip("/") for line in restarts if line.split()[1:] != ["0", "running"]]
    assert not restarted, (restarts, {name: log_tail(name, 15)[-1500:] for name in restarted})
    killed = json.loads(in_monitor(f"print(json.dumps(jobs.find_one({{'tid': {tid}}}), default=str))"))
    assert killed["state"] == 2 and "history" in killed["hyperfleet"], killed
    assert killed["hyperfleet"]["history"][0]["event"] == "requeued"
    # the monitor's log is read only when the reason is not the container's (an assert's message is lazy)
    assert f"container {victim} is exited" in killed["hyperfleet"]["history"][0]["reason"], \
        log_tail(f"hyperfleet-{STACK}-monitor", 40)

    started = time.monotonic()
    again = stack("up", "--yes", "--skip-preview", "--expect-no-changes", check=False)
    noop_seconds = time.monotonic() - started
    assert again.returncode == 0, again.stdout + again.stderr

    stack("destroy", "--yes", "--skip-preview")
    assert leftovers() == []
    print(f"\ncold pulumi up {up_seconds:.1f} s; up to a trial booked under a second ago {first_booked:.1f} s; "
          f"no-op pulumi up {noop_seconds:.1f} s")


@pytest.fixture
def dev_stack(tmp_path):
    pulumi = pulumi_runner(REPO, "dev", engine_env(tmp_path / "state", "hyperfleet-dev"), timeout_seconds=300)
    pulumi("stack", "init")
    return pulumi


@pytest.mark.timeout(600)
def test_preview_of_the_committed_dev_stack_and_of_a_bad_config(dev_stack, tmp_path):
    preview = dev_stack("preview", check=False)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert "+ 15 to create" in preview.stdout and "hyperfleet-dev-worker-1" in preview.stdout
    bad = tmp_path / "Pulumi.dev.yaml"
    bad.write_text((REPO / "Pulumi.dev.yaml").read_text().replace("replicas: 2", "replicas: -3"))
    failed = dev_stack("preview", "--config-file", str(bad), check=False)
    assert failed.returncode != 0
    assert "hyperfleet:workers.replicas: Input should be greater than or equal to 0" in failed.stdout + failed.stderr
