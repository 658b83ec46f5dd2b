"""What many tests share: starting hyperfleet's processes, stopping them, waiting, and test trials.

Fixtures live in conftest.py; tests import these helpers from here, never from each other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymongo
from pymongo import monitoring

from hyperfleet.contract import ROLE_LABEL, ROLE_TRIAL
from hyperfleet.store import JOB_STATE_NEW, JOB_STATE_RUNNING

REPO = Path(__file__).resolve().parent.parent


def versions_env() -> dict[str, str]:
    """images/versions.env: the base images, KEY=value lines (what make includes and bash sources)."""
    text = (REPO / "images/versions.env").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


# -- processes ------------------------------------------------------------------------------------

def worker_env(**extra) -> dict:
    """Environment for hyperfleet processes: the test objectives importable, no stray HYPEROPT_ vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPEROPT_", "HYPERFLEET_", "MONGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PYTHONFAULTHANDLER"] = "1"  # a process that hangs and is aborted prints every thread's stack
    env.update(extra)
    return env


def start_worker(mongo_url: str, *args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hyperfleet", "worker", "--mongo", mongo_url, *args],
                            env=env or worker_env(), **popen)


def start_polling_workers(mongo_url: str, count: int, workdir, *args: str) -> list[subprocess.Popen]:
    """``count`` workers, returned once each polls (its ``--alive-file`` exists): a test that needs the
    work shared does not race their start."""
    files = [Path(workdir) / f"worker-{n}.alive" for n in range(count)]
    workers = [start_worker(mongo_url, "--alive-file", str(f), *args) for f in files]
    wait_for(lambda: all(f.exists() for f in files), timeout=60)
    return workers


def start_monitor(mongo_url: str, *args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hyperfleet", "monitor", "--mongo", mongo_url,
                             "--log-level", "warning", *args], env=env or worker_env(), **popen)


def start_dashboard(mongo_url: str, *args: str, token: str | None = None) -> tuple[subprocess.Popen, str]:
    """``hyperfleet dashboard`` on a free port, once it answers: the process and its base URL."""
    import urllib.request

    from testbed.processes import free_port

    for _attempt in range(3):  # a free port can be taken by another process before the dashboard binds it
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "hyperfleet", "dashboard", "--mongo", mongo_url, "--port",
                                 str(port), *(["--token", token] if token else []), *args], env=worker_env())
        base = f"http://127.0.0.1:{port}"

        def answers(proc=proc, base=base):
            if proc.poll() is not None:
                return f"exited with {proc.returncode}"
            try:
                return urllib.request.urlopen(f"{base}/api/config", timeout=2).status == 200
            except OSError:
                return False
        outcome = wait_for(answers, timeout=30, step=0.1)
        if outcome is True:
            return proc, base
    raise AssertionError(f"hyperfleet dashboard {outcome}, on each of 3 ports")


def trial_containers(label: str = f"{ROLE_LABEL}={ROLE_TRIAL}") -> list[str]:
    """The IDs of this machine's containers (any state) that carry ``label``: by default every trial container."""
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def scrape(port: int) -> dict:
    """A monitor's /metrics on 127.0.0.1:``port``, parsed: (name, sorted labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def sample(samples: dict, name: str, **labels):
    """One value of ``scrape``'s answer, None when there is none."""
    return samples.get((name, tuple(sorted(labels.items()))))


def metrics_answer(port: int) -> bool:
    """Does /metrics answer on 127.0.0.1:``port`` yet?"""
    try:
        scrape(port)
        return True
    except OSError:
        return False


def run_cli(mongo_url: str, spec_path, *args: str, **popen) -> subprocess.Popen:
    """``hyperfleet run SPEC`` (the driver), without its progress bar."""
    return subprocess.Popen([sys.executable, "-m", "hyperfleet", "run", str(spec_path), "--mongo", mongo_url,
                             "--no-progress", *args], env=worker_env(), cwd=REPO, **popen)


def stop_all(procs, timeout: float = 15) -> list[int]:
    """SIGTERM each process (None and exited ones are passed over) and return the exit codes. One still
    alive after ``timeout`` is aborted, so its threads' stacks (PYTHONFAULTHANDLER) show where it hung,
    and the test fails: stopping on SIGTERM is part of what the tests check."""
    procs = [p for p in procs if p is not None]
    for p in procs:
        if p.poll() is None:
            p.terminate()
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)
            p.wait(10)
            raise AssertionError(f"process {p.pid} still alive {timeout}s after SIGTERM; its stacks are above") from None
    return codes


# -- waiting --------------------------------------------------------------------------------------

def wait_for(predicate, timeout: float = 30.0, step: float = 0.02):
    """The first truthy value of ``predicate()``, polled every ``step`` seconds for up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


# -- trials ---------------------------------------------------------------------------------------

def jobs(mongo_url: str):
    """The jobs collection of the URL's database."""
    return pymongo.MongoClient(mongo_url).get_default_database().jobs


def running_trial(store, owner_pid: int | None = None):
    query = {"state": JOB_STATE_RUNNING}
    if owner_pid is not None:
        query["hyperfleet.worker.pid"] = owner_pid
    return store.jobs.find_one(query)


def enqueue_slow_trial(store, exp_key: str = "e1", sleep: float = 30.0) -> int:
    """A NEW trial whose objective (tests.objectives.sleep_trial) runs ``sleep`` seconds."""
    tid = store.allocate_tids(1)[0]
    store.insert_trials([{
        "state": JOB_STATE_NEW, "tid": tid, "spec": None, "result": {"status": "new"},
        "misc": {"tid": tid, "cmd": ("token_load", "tests.objectives.sleep_trial"), "workdir": None,
                 "idxs": {"sleep": [tid]}, "vals": {"sleep": [sleep]}},
        "exp_key": exp_key, "owner": None, "book_time": None, "refresh_time": None,
    }])
    return tid


def finish_all(store, exp_key, loss_of=lambda doc: doc["tid"] * 0.1) -> None:
    """Book and finish (DONE) every queued trial of ``exp_key``, as one worker would."""
    while (doc := store.reserve("w", {}, exp_key)) is not None:
        assert store.finish(doc["_id"], "w", {"loss": loss_of(doc), "status": "ok"})


def requeue_time(store, trial_id, timeout: float = 30.0) -> float:
    """Seconds until the trial's history shows the monitor's requeue."""
    started = time.monotonic()
    wait_for(lambda: any(h["event"] == "requeued"
                         for h in (store.jobs.find_one({"_id": trial_id})["hyperfleet"].get("history") or [])),
             timeout=timeout, step=0.01)
    return time.monotonic() - started


class DocsReturned(monitoring.CommandListener):
    """Counts documents the server returns to find/getMore commands (of ``collection`` only, if given)."""

    def __init__(self, collection: str | None = None):
        self.documents = 0
        self.collection = collection
        self._requests: dict[int, str] = {}

    def started(self, event):
        if event.command_name in ("find", "getMore"):
            self._requests[event.request_id] = event.command.get(event.command_name) \
                if event.command_name == "find" else event.command.get("collection")

    def succeeded(self, event):
        collection = self._requests.pop(event.request_id, None)
        if event.command_name in ("find", "getMore") and self.collection in (None, collection):
            cursor = event.reply.get("cursor", {})
            self.documents += len(cursor.get("firstBatch", cursor.get("nextBatch", [])))

    def failed(self, event):
        pass
