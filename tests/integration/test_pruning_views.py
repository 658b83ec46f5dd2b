"""Pruned trials and learning curves where people look: ``hyperfleet status``, ``hyperfleet report`` (its
CSV, JSON and plot), the monitor's /metrics and the dashboard's API, on one experiment that real
workers ran under the median rule on the real server (tests/e2e/test_dashboard_browser.py draws the
curves in a browser)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pymongo
import pytest
from hyperopt import hp, rand
from pymongo import monitoring

import hyperfleet
from hyperfleet.dashboard import data
from hyperfleet.mongo_url import parse_mongo_url
from hyperfleet.status import experiment_status
from hyperfleet.store import JOB_STATE_DONE, PROGRESS, JobStore
from testbed.processes import free_port
from tests.helpers import (REPO, metrics_answer, sample, scrape, start_dashboard, start_monitor, start_worker, stop_all,
                           wait_for, worker_env)
from tests.objectives import learning_curve

EXP = "views"
TOKEN = "views-t0ken"
# loss(step) = level + 1/(step+1), steps 0..5, one worker running the trials in this order: 1, 2 and 3
# run whole (fewer than 3 others), 5 and 8 are worse than the median at step 2 (pruned there), 0.5 is not
LEVELS = [1.0, 2.0, 3.0, 5.0, 0.5, 8.0]
PRUNED_LEVELS = {5.0, 8.0}
RULE = {"rule": "median", "warmup_steps": 2, "min_trials": 3}
STEPS = 6


@pytest.fixture(scope="module")
def ran(mongo_server, tmp_path_factory):
    """The experiment, run by one worker with a monitor watching: its URL, the monitor's last /metrics,
    and the database's truth (level -> trial document, tid -> [(step, loss)] of the progress collection)."""
    url = mongo_server.database_url("views" + str(time.time_ns()))
    log = tmp_path_factory.mktemp("views") / "steps.log"
    port = free_port()
    monitor = start_monitor(url, "--health-host", "127.0.0.1", "--health-port", str(port),
                            "--metrics-interval-seconds", "0.2")
    worker = start_worker(url, "--log-level", "warning")
    try:
        # the monitor looked once before the experiment: its counters then see every trial finish
        wait_for(lambda: metrics_answer(port)
                 and sample(scrape(port), "hyperfleet_experiment_metrics_last_refresh_timestamp_seconds"), timeout=30)
        space = {"level": hp.choice("level", LEVELS), "steps": STEPS, "log": str(log), "sleep": 0.05}
        trials = hyperfleet.MongoTrials(url, exp_key=EXP, pruning=RULE)
        hyperfleet.fmin(learning_curve, space, algo=rand.suggest, max_evals=len(LEVELS), trials=trials,
                        points_to_evaluate=[{"level": i} for i in range(len(LEVELS))], show_progressbar=False)
        # one scrape with every finish counted (the gauge) and observed (the counter)
        metrics = wait_for(lambda: (s := scrape(port))
                           and sample(s, "hyperfleet_experiment_trials", exp_key=EXP, state="done") == len(LEVELS)
                           and sample(s, "hyperfleet_experiment_trials_finished_total", exp_key=EXP,
                                      state="done") == len(LEVELS)
                           and s, timeout=30)
    finally:
        stop_all([monitor, worker])
    store = JobStore.connect(url)
    docs = {LEVELS[d["misc"]["vals"]["level"][0]]: d for d in store.jobs.find({"exp_key": EXP})}
    curves = {}
    for d in store.db[PROGRESS].find({"exp_key": EXP}, sort=[("tid", 1), ("step", 1)]):
        curves.setdefault(d["tid"], []).append((d["step"], d["loss"]))
    store.close()
    # what the views are checked against: the experiment pruned what the rule says
    assert all(d["state"] == JOB_STATE_DONE for d in docs.values())
    assert {level for level, d in docs.items() if (d.get("hyperfleet") or {}).get("pruned")} == PRUNED_LEVELS
    return {"url": url, "metrics": metrics, "docs": docs, "curves": curves}


def pruned_tids(ran) -> set[int]:
    return {ran["docs"][level]["tid"] for level in PRUNED_LEVELS}


def hyperfleet_cli(*args):
    return subprocess.run([sys.executable, "-m", "hyperfleet", *args], env=worker_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(240)
def test_status_counts_pruned_trials_among_the_done(ran):
    store = JobStore.connect(ran["url"])
    status = experiment_status(store, EXP)
    store.close()
    assert (status.done, status.pruned, status.error) == (len(LEVELS), len(PRUNED_LEVELS), 0)
    (as_json,) = json.loads(hyperfleet_cli("status", EXP, "--mongo", ran["url"], "--json").stdout)
    assert (as_json["done"], as_json["pruned"]) == (len(LEVELS), len(PRUNED_LEVELS))
    table = hyperfleet_cli("status", "--mongo", ran["url"])
    assert table.returncode == 0 and "prn" in table.stdout, table.stdout
    row = next(line for line in table.stdout.splitlines() if EXP in line)
    assert [c.strip() for c in row.split("│")[2:6]] == ["0", "0", str(len(LEVELS)), str(len(PRUNED_LEVELS))], row


@pytest.mark.timeout(240)
def test_report_has_each_trials_steps_its_pruned_mark_and_the_learning_curves(ran, tmp_path):
    out = tmp_path / "report"
    result = hyperfleet_cli("report", EXP, "--mongo", ran["url"], "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = {int(r["tid"]): r for r in csv.DictReader(open(out / "trials.csv"))}
    assert set(rows) == set(ran["curves"]) == {d["tid"] for d in ran["docs"].values()}
    for tid, curve in ran["curves"].items():
        pruned = tid in pruned_tids(ran)
        assert rows[tid]["reported_steps"] == str(len(curve)) and rows[tid]["last_step"] == str(curve[-1][0])
        assert rows[tid]["pruned"] == str(pruned)
        # a pruned trial stopped at the first step past warm-up; its loss is its last reported one
        assert len(curve) == (RULE["warmup_steps"] + 1 if pruned else STEPS)
        assert float(rows[tid]["loss"]) == pytest.approx(curve[-1][1])
    exported = {t["tid"]: t for t in json.loads((out / "trials.json").read_text())["trials"]}
    assert {tid: [tuple(p) for p in t["curve"]] for tid, t in exported.items()} == ran["curves"]
    assert (out / "learning_curves.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 3


@pytest.mark.timeout(240)
def test_the_monitors_metrics_count_the_pruned_trials_of_the_experiment(ran):
    metrics = ran["metrics"]
    assert sample(metrics, "hyperfleet_experiment_pruned_trials", exp_key=EXP) == len(PRUNED_LEVELS)
    # the monitor saw each of them finish (it was running all along)
    assert sample(metrics, "hyperfleet_experiment_trials_pruned_total", exp_key=EXP) == len(PRUNED_LEVELS)
    assert sample(metrics, "hyperfleet_experiment_trials_finished_total", exp_key=EXP, state="done") == len(LEVELS)


def get(base: str, path: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.timeout(240)
def test_the_dashboard_serves_every_curve_with_its_pruned_mark_behind_the_read_token(ran):
    dashboard, base = start_dashboard(ran["url"], "--read-token", token=TOKEN)
    try:
        assert get(base, f"/api/experiments/{EXP}/curves")[0] == 401
        status, found = get(base, f"/api/experiments/{EXP}/curves", TOKEN)
        assert status == 200 and found["trials"] == len(LEVELS)
        assert {c["tid"]: [tuple(p) for p in c["points"]] for c in found["curves"]} == ran["curves"]
        assert {c["tid"] for c in found["curves"] if c["pruned"]} == pruned_tids(ran)
        assert {c["state"] for c in found["curves"]} == {"done"}
        # the last trials only (by tid), and a limit out of range refused naming it
        last_two = sorted(ran["curves"])[-2:]
        assert [c["tid"] for c in get(base, f"/api/experiments/{EXP}/curves?limit=2", TOKEN)[1]["curves"]] == last_two
        refused = get(base, f"/api/experiments/{EXP}/curves?limit=0", TOKEN)
        assert refused[0] == 400 and "limit" in refused[1]["error"]
        (listed,) = get(base, "/api/experiments", TOKEN)[1]
        assert (listed["done"], listed["pruned"]) == (len(LEVELS), len(PRUNED_LEVELS))
        rows = {r["tid"]: r for r in get(base, f"/api/experiments/{EXP}/trials", TOKEN)[1]["rows"]}
        assert {tid: r["steps"] for tid, r in rows.items()} == {tid: len(c) for tid, c in ran["curves"].items()}
        assert {tid for tid, r in rows.items() if r["pruned"]} == pruned_tids(ran)
    finally:
        stop_all([dashboard])


class ProgressReads(monitoring.CommandListener):
    """Counts the finds on the progress collection."""

    def __init__(self):
        self.finds = 0

    def started(self, event):
        if event.command_name == "find" and event.command.get("find") == PROGRESS:
            self.finds += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.mark.timeout(240)
def test_the_curves_are_one_read_of_the_progress_collection_per_refresh_whoever_asks(ran):
    reads = ProgressReads()
    address = parse_mongo_url(ran["url"])
    store = JobStore(pymongo.MongoClient(address.uri, event_listeners=[reads]), address)
    cache = data.Experiments(store)
    try:
        cache.refresh()
        first = data.curves(cache, EXP)
        assert data.curves(cache, EXP) is first and reads.finds == 1  # a second viewer: no read
        cache.refresh()
        assert data.curves(cache, EXP) == first and reads.finds == 2  # the next snapshot: one more
    finally:
        store.close()
