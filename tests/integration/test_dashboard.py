"""`hyperfleet dashboard`'s JSON API on a real server and a real experiment: what it reads, its
filters and pages, and its actions, which need the token (tests/e2e/test_dashboard_browser.py drives
the page in a browser)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

from hyperfleet.store import JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, JobStore
from tests.helpers import jobs, run_cli, start_dashboard, start_monitor, start_worker, stop_all, wait_for, worker_env

TOKEN = "dashboard-t0ken-for-tests"
# x > 4 fails (tests.objectives.mixed): about two trials in three are errors with a traceback
SPACE = {"x": {"uniform": [3, 6]}, "lr": {"loguniform": [1e-5, 1e-1]}, "opt": {"choice": ["sgd", "adam"]},
         "sleep": {"choice": [0.0]}}


def spec_file(tmp_path, name: str, max_evals: int, sleep: float = 0.0, **extra) -> str:
    spec = {"name": name, "objective": "tests.objectives:slow_mixed", "algo": "rand", "max_evals": max_evals,
            "seed": 7, "parallelism": 2, "space": {**SPACE, "sleep": {"choice": [sleep]}}, **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def get(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read())


def call(base: str, path: str, method: str, token: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(base + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def finished(mongo_server, tmp_path_factory):
    """A 12-trial experiment run to its end by two workers: its URL, with done and failed trials."""
    url = mongo_server.database_url("dash" + str(int(time.time() * 1000)))
    workers = [start_worker(url, "--log-level", "error") for _ in range(2)]
    try:
        driver = run_cli(url, spec_file(tmp_path_factory.mktemp("dash"), "mixed", 12), stdout=subprocess.DEVNULL)
        assert driver.wait(120) == 0
    finally:
        stop_all(workers)
    return url


@pytest.fixture
def dashboard(finished):
    proc, base = start_dashboard(finished, token=TOKEN)
    yield base
    stop_all([proc])


def test_experiments_and_one_experiment_match_the_store(finished, dashboard):
    docs = list(jobs(finished).find({"exp_key": "mixed"}))
    errors = sum(d["state"] == JOB_STATE_ERROR for d in docs)
    assert 0 < errors < 12
    [summary] = get(dashboard, "/api/experiments")
    assert (summary["exp_key"], summary["done"], summary["error"], summary["max_evals"]) == ("mixed", 12 - errors, errors, 12)
    assert summary["complete"] is True and summary["new"] == summary["running"] == 0
    exp = get(dashboard, "/api/experiments/mixed")
    assert exp["parameters"] == ["lr", "opt", "sleep", "x"]
    assert len(exp["points"]) == 12 and sum(p["loss"] is None for p in exp["points"]) == errors
    best = min(p["loss"] for p in exp["points"] if p["loss"] is not None)
    assert summary["best_loss"] == best
    assert {p["params"]["opt"] for p in exp["points"]} <= {"sgd", "adam"}  # a choice shows its option
    # the page's status (from its cache of the trials) is `hyperfleet status`'s (from the database)
    from hyperfleet.status import experiment_status

    store = JobStore.connect(finished)
    expected = experiment_status(store, "mixed").as_dict()
    store.close()
    moving = ("trials_per_minute", "eta_seconds")  # measured against the server's clock of the moment
    assert {k: v for k, v in summary.items() if k not in moving} == {k: v for k, v in expected.items() if k not in moving}
    assert summary["trials_per_minute"] == pytest.approx(expected["trials_per_minute"], rel=0.2)


def test_the_table_filters_sorts_and_pages(finished, dashboard):
    errors = get(dashboard, "/api/experiments/mixed/trials?state=error")
    assert errors["total"] == len(errors["rows"]) > 0 and {r["state"] for r in errors["rows"]} == {"error"}
    assert all("out of range" in r["error"] for r in errors["rows"])
    band = get(dashboard, "/api/experiments/mixed/trials?param=x&min=3&max=4")
    assert all(3 <= r["params"]["x"] <= 4 for r in band["rows"]) and band["total"] == len(band["rows"])
    assert band["total"] == 12 - errors["total"]  # x <= 4 is exactly what succeeds
    by_loss = get(dashboard, "/api/experiments/mixed/trials?state=done&sort=loss")["rows"]
    assert [r["loss"] for r in by_loss] == sorted(r["loss"] for r in by_loss)
    by_x = get(dashboard, "/api/experiments/mixed/trials?sort=param:x&order=desc")["rows"]
    assert [r["params"]["x"] for r in by_x] == sorted((r["params"]["x"] for r in by_x), reverse=True)
    first, second = (get(dashboard, f"/api/experiments/mixed/trials?limit=5&offset={o}") for o in (0, 5))
    assert first["total"] == 12 and [r["tid"] for r in first["rows"] + second["rows"]] == sorted(
        r["tid"] for r in first["rows"] + second["rows"])
    assert call(dashboard, "/api/experiments/mixed/trials?sort=nope", "GET")[0] == 400
    assert call(dashboard, "/api/experiments/mixed/trials?state=lost", "GET")[0] == 400
    assert call(dashboard, "/api/experiments/nope", "GET")[0] == 404


def test_a_trial_shows_its_traceback_and_pages_a_large_log(finished, dashboard):
    failed = jobs(finished).find_one({"exp_key": "mixed", "state": JOB_STATE_ERROR})
    trial = get(dashboard, f"/api/experiments/mixed/trials/{failed['tid']}")
    assert trial["state"] == "error" and "ValueError" in trial["traceback"] and "out of range" in trial["traceback"]
    store = JobStore.connect(finished)
    log = b"".join(b"line %06d of a long container log\n" % i for i in range(5000))  # 170 kB
    store.trial_attachments(failed)["container.log"] = log
    store.close()
    assert get(dashboard, f"/api/experiments/mixed/trials/{failed['tid']}")["attachments"] == [
        {"name": "container.log", "bytes": len(log)}]
    text, offset = "", 0
    while offset is not None:
        page = get(dashboard, f"/api/experiments/mixed/trials/{failed['tid']}/attachments/container.log?offset={offset}")
        assert len(page["text"]) <= 64 * 1024
        text, offset = text + page["text"], page["next_offset"]
    assert text.encode() == log
    assert call(dashboard, f"/api/experiments/mixed/trials/{failed['tid']}/attachments/nope", "GET")[0] == 404


def test_actions_need_a_configured_token_and_the_right_one(finished, dashboard):
    failed = jobs(finished).find_one({"exp_key": "mixed", "state": JOB_STATE_ERROR})
    requeue = f"/api/experiments/mixed/trials/{failed['tid']}/requeue"
    proc, without = start_dashboard(finished)  # no token: actions are off
    try:
        assert get(without, "/api/config") == {"actions": False, "read_token": False}
        for path, method in ((requeue, "POST"), ("/api/experiments/mixed/cancel", "POST"), ("/api/experiments/mixed", "DELETE")):
            status, body = call(without, path, method, token=TOKEN)
            assert status == 403 and "no token" in body["error"], (path, status, body)
    finally:
        stop_all([proc])
    assert get(dashboard, "/api/config") == {"actions": True, "read_token": False}
    assert call(dashboard, requeue, "POST")[0] == 401
    assert call(dashboard, requeue, "POST", token="wrong")[0] == 401
    assert jobs(finished).find_one({"_id": failed["_id"]})["state"] == JOB_STATE_ERROR  # nothing happened
    assert call(dashboard, requeue, "POST", token=TOKEN) == (200, {"requeued": failed["tid"]})
    doc = jobs(finished).find_one({"_id": failed["_id"]})
    assert doc["state"] == JOB_STATE_NEW and doc["hyperfleet"]["history"][-1]["reason"] == "requeued from the dashboard"
    status, body = call(dashboard, requeue, "POST", token=TOKEN)
    assert status == 400 and "only failed" in body["error"]


def test_delete_removes_the_experiment_its_trials_and_attachments(mongo_url, tmp_path):
    workers = [start_worker(mongo_url, "--log-level", "error")]
    try:
        assert run_cli(mongo_url, spec_file(tmp_path, "gone", 3), stdout=subprocess.DEVNULL).wait(60) == 0
    finally:
        stop_all(workers)
    store = JobStore.connect(mongo_url)
    store.trial_attachments(store.jobs.find_one({"exp_key": "gone"}))["container.log"] = b"log"
    proc, base = start_dashboard(mongo_url, token=TOKEN)
    try:
        assert call(base, "/api/experiments/gone", "DELETE", token=TOKEN) == (200, {"deleted_trials": 3})
        assert call(base, "/api/experiments/gone", "GET")[0] == 404
    finally:
        stop_all([proc])
    assert store.jobs.count_documents({"exp_key": "gone"}) == 0 and store.db.fs.files.count_documents({}) == 0
    assert store.experiment("gone") is None
    store.close()


@pytest.mark.timeout(120)
def test_cancel_withdraws_the_queue_stops_the_driver_and_the_workers_go_idle(mongo_url, tmp_path):
    workers = [start_worker(mongo_url, "--log-level", "error") for _ in range(2)]
    # 8 queued ahead of 2 workers, each trial 1 s: the cancel comes once 2 have ended and the driver has 5 or
    # more queued again (a driver starved of CPU may lag). The workers take at most 2 a second, so one is still
    # queued for 2 s after the check, time for the cancel to land on a loaded machine (with 3 queued and 0.5 s
    # trials, the 0.5 s it had were once not enough)
    driver = run_cli(mongo_url, spec_file(tmp_path, "long", 500, sleep=1.0, parallelism=8), stdout=subprocess.PIPE,
                     text=True)
    proc, base = start_dashboard(mongo_url, token=TOKEN)
    try:
        def two_ended_and_five_queued() -> bool:
            states = [d["state"] for d in jobs(mongo_url).find({"exp_key": "long"}, {"state": 1})]
            return sum(state in (JOB_STATE_DONE, JOB_STATE_ERROR) for state in states) >= 2 and \
                states.count(JOB_STATE_NEW) >= 5

        wait_for(two_ended_and_five_queued, 60)
        status, body = call(base, "/api/experiments/long/cancel", "POST", token=TOKEN)
        assert status == 200 and body["withdrawn"] >= 1
        out, _ = driver.communicate(timeout=30)  # the driver sees the cancel, the running trials finish
        assert driver.returncode == 0, out
        states = [d["state"] for d in jobs(mongo_url).find({"exp_key": "long"})]
        assert JOB_STATE_NEW not in states and JOB_STATE_RUNNING not in states and JOB_STATE_CANCEL in states
        assert len(states) < 100
        time.sleep(1.5)  # workers idle: nothing more is taken or queued
        assert [d["state"] for d in jobs(mongo_url).find({"exp_key": "long"})] == states
        assert get(base, "/api/experiments/long")["cancelled"] is True
    finally:
        stop_all([proc, *workers])
        if driver.poll() is None:
            driver.kill()


def test_the_monitor_serves_the_dashboard_when_asked(mongo_url):
    from testbed.processes import free_port

    port = free_port()
    monitor = start_monitor(mongo_url, "--health-port", "0", "--dashboard-port", str(port), "--dashboard-token", TOKEN)
    try:
        config = wait_for(lambda: _answer(f"http://127.0.0.1:{port}/api/config"), 30, 0.1)
        assert config == {"actions": True, "read_token": False}
    finally:
        stop_all([monitor])


def read_paths(url: str) -> list[str]:
    """Every read of the API, on a trial of ``url``'s experiment "mixed" that has a log."""
    failed = jobs(url).find_one({"exp_key": "mixed", "state": JOB_STATE_ERROR})
    store = JobStore.connect(url)
    store.trial_attachments(failed)["container.log"] = b"secret-ish log line\n"
    store.close()
    trial = f"/api/experiments/mixed/trials/{failed['tid']}"
    return ["/api/experiments", "/api/experiments/mixed", "/api/experiments/mixed/trials?state=error&sort=loss",
            trial, f"{trial}/attachments/container.log"]


@pytest.mark.timeout(120)
def test_with_read_token_the_monitors_dashboard_shows_nothing_without_the_token(finished, tmp_path):
    from testbed.processes import free_port

    paths = read_paths(finished)
    served = {}
    for read_token in (True, False):
        port = free_port()
        flag = "--dashboard-read-token" if read_token else "--no-dashboard-read-token"
        log = tmp_path / f"monitor-{read_token}.log"
        with log.open("w") as out:  # every log line, debug included, to look for the token in
            monitor = start_monitor(finished, "--health-port", "0", "--dashboard-port", str(port), flag, "--log-level",
                                    "debug", env=worker_env(HYPERFLEET_MONITOR_DASHBOARD_TOKEN=TOKEN), stdout=out,
                                    stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            config = wait_for(lambda base=base: _answer(f"{base}/api/config"), 30, 0.1)
            assert config == {"actions": True, "read_token": read_token}
            with urllib.request.urlopen(base + "/", timeout=10) as page:  # the page holds no data: always served
                assert page.status == 200 and b"app.js" in page.read()
            wait_for(lambda base=base: call(base, "/api/experiments", "GET", token=TOKEN)[1], 30, 0.1)  # loaded
            for path in paths:
                answers = [call(base, path, "GET", token=t) for t in (None, "wrong", TOKEN)]
                assert answers[2][0] == 200, (path, answers[2])
                if read_token:
                    assert [a[0] for a in answers[:2]] == [401, 401], (path, answers)
                    assert "token" in answers[0][1]["error"] and "mixed" not in json.dumps(answers[:2])
                else:
                    assert answers[0] == answers[2], path  # no token needed to read
                served[read_token, path] = answers[2][1]
        finally:
            stop_all([monitor])
        output = log.read_text()
        assert "dashboard on" in output and TOKEN not in output, output
    # the same trial, behind the token or not
    assert served[True, paths[3]]["params"] == served[False, paths[3]]["params"]


def test_with_read_token_the_dashboard_command_refuses_reads_without_the_token_and_needs_one(finished):
    proc, base = start_dashboard(finished, "--read-token", token=TOKEN)
    try:
        assert get(base, "/api/config") == {"actions": True, "read_token": True}
        wait_for(lambda: call(base, "/api/experiments", "GET", token=TOKEN)[0] == 200, 30, 0.1)
        assert call(base, "/api/experiments", "GET")[0] == 401
        assert call(base, "/api/experiments/mixed/trials", "GET", token="wrong")[0] == 401
        assert call(base, "/api/experiments/mixed/trials", "GET", token=TOKEN)[1]["total"] == 12
    finally:
        stop_all([proc])
    # reads behind a token that does not exist: a usage error, before the database is contacted
    for argv in (["dashboard", "--read-token"], ["monitor", "--dashboard-port", "8090", "--dashboard-read-token"]):
        result = subprocess.run([sys.executable, "-m", "hyperfleet", *argv, "--mongo", "mongodb://192.0.2.1:1/x"],
                                env=worker_env(), capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and "read-token" in result.stderr and "token" in result.stderr, result.stderr


def _answer(url: str):
    try:
        return get(url, "")
    except OSError:
        return None
