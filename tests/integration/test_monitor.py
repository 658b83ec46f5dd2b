"""The monitor against the real server: recovery of killed workers, races, policies, health."""

import datetime
import os
import random
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from hyperopt import fmin, hp, rand

import hyperfleet
from hyperfleet.monitor import Reaper
from hyperfleet.settings import MonitorSettings
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, JobStore
from testbed.processes import free_port
from tests.objectives import slow_quadratic
from tests.helpers import (enqueue_slow_trial, requeue_time, running_trial, start_monitor, start_worker, stop_all,
                           wait_for, worker_env)


# -- recovery of killed workers ----------------------------------------------------------------

@pytest.mark.timeout(120)
@pytest.mark.parametrize("liveness,bound", [((), "grace + interval"), (("--liveness", "process"), "interval")])
def test_kill_9_mid_trial_is_requeued_and_finished_by_another_worker(store, mongo_url, liveness, bound):
    grace, interval = 1.5, 0.2
    enqueue_slow_trial(store, sleep=1.0)
    monitor = start_monitor(mongo_url, "--grace-seconds", str(grace), "--interval-seconds", str(interval),
                            "--health-port", "0", *(liveness or ("--liveness", "none")))
    victim = start_worker(mongo_url, "--heartbeat-seconds", "0.3", "--log-level", "warning")
    rescuer = None
    try:
        doc = wait_for(lambda: running_trial(store, victim.pid))
        time.sleep(0.2)
        victim.kill()
        victim.wait()
        killed_at = store.server_time()
        requeue_time(store, doc["_id"])
        back = store.jobs.find_one({"_id": doc["_id"]})
        # on the server's clock: the kill, and the requeue's refresh_time; the process check must beat the grace
        detected = (back["refresh_time"] - killed_at).total_seconds()
        limit = grace + 2 * interval + 0.6 if bound == "grace + interval" else 2 * interval + 0.6
        assert detected <= limit, f"detected after {detected:.2f}s, limit {limit}s"
        assert back["hyperfleet"]["orphaned"] == 1
        reason = back["hyperfleet"]["history"][-1]["reason"]
        assert ("no heartbeat" in reason) if bound == "grace + interval" else (f"process {victim.pid}" in reason)
        rescuer = start_worker(mongo_url, "--log-level", "warning")
        final = wait_for(lambda: (d := store.jobs.find_one({"_id": doc["_id"], "state": JOB_STATE_DONE})) and d)
        assert final["hyperfleet"]["worker"]["pid"] == rescuer.pid
        assert final["hyperfleet"]["attempts"] == 2
    finally:
        stop_all([monitor, victim, rescuer])


@pytest.mark.timeout(180)
def test_docker_kill_of_a_worker_container_is_requeued_within_5s(store, mongo_url, docker_worker_image):
    from tests.helpers import REPO

    enqueue_slow_trial(store, sleep=60)
    name = f"hyperfleet-test-worker-{os.getpid()}-{random.randrange(10**6)}"
    monitor = start_monitor(mongo_url, "--liveness", "docker", "--grace-seconds", "60", "--interval-seconds", "0.5",
                            "--health-port", "0")
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", "host", "--label", "hyperfleet.role=worker",
         "-e", f"HYPERFLEET_CONTAINER_NAME={name}", "-e", "PYTHONPATH=/src", "-v", f"{REPO}:/src:ro",
         docker_worker_image, "worker", "--mongo", mongo_url, "--log-level", "warning"],
        check=True, capture_output=True,
    )
    try:
        doc = wait_for(lambda: running_trial(store), timeout=60)
        assert doc["hyperfleet"]["worker"]["container"] == name
        subprocess.run(["docker", "kill", name], check=True, capture_output=True)
        detected = requeue_time(store, doc["_id"], timeout=30)
        assert detected <= 5.0
        back = store.jobs.find_one({"_id": doc["_id"]})
        assert back["state"] == JOB_STATE_NEW
        assert f"container {name} is exited" in back["hyperfleet"]["history"][-1]["reason"]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        stop_all([monitor])


# -- races, proven on the store with a Reaper in this process -----------------------------------

class RaceAfterRead:
    """A liveness check that reports every holder gone, after running ``action`` between the
    sweep's read and its write: the worst moment for a worker to act."""

    name = "race"

    def __init__(self, action):
        self.action = action

    def refresh(self):
        self.action()

    def gone(self, worker):
        return "gone (test)"


def settings(mongo_url, **kw):
    return MonitorSettings(mongo_url=mongo_url, grace_seconds=kw.pop("grace_seconds", 3600), health_port=None, **kw)


def test_a_result_written_just_before_the_requeue_is_kept(store, mongo_url):
    enqueue_slow_trial(store)
    doc = store.reserve("w", {}, None)
    reaper = Reaper(store, settings(mongo_url),
                    checks=[RaceAfterRead(lambda: store.finish(doc["_id"], "w", {"loss": 1.0, "status": "ok"}))])
    report = reaper.sweep()
    assert report.running == 1 and report.requeued == 0
    final = store.jobs.find_one({"_id": doc["_id"]})
    assert final["state"] == JOB_STATE_DONE and final["result"]["loss"] == 1.0
    assert "orphaned" not in final["hyperfleet"]


def test_a_heartbeat_just_before_the_requeue_keeps_the_trial_with_its_worker(store, mongo_url):
    enqueue_slow_trial(store)
    doc = store.reserve("w", {}, None)
    time.sleep(0.02)  # the heartbeat must move refresh_time past the value the sweep read
    reaper = Reaper(store, settings(mongo_url), checks=[RaceAfterRead(lambda: store.heartbeat(doc["_id"], "w"))])
    assert reaper.sweep().requeued == 0
    assert store.jobs.find_one({"_id": doc["_id"]})["state"] == JOB_STATE_RUNNING


@pytest.mark.parametrize("sweeps_apart,requeued", [(0.1, 1), (2.0, 1), (2.5, 1), (3.0, 0), (10, 0)])
def test_a_heartbeat_is_judged_only_over_time_the_monitor_watched(store, mongo_url, sweeps_apart, requeued):
    """A server that stalls or restarts while the monitor's calls wait for it raises nothing, and the workers
    could not heartbeat either: a sweep more than half the grace after the last one judges heartbeats from
    its own start. A trial 10 s without a heartbeat (grace 5 s) is requeued when the last sweep was 0.1, 2
    or exactly 2.5 s before; when it was 3 or 10 s before, it is kept, then judged from that sweep on."""
    enqueue_slow_trial(store)
    doc = store.reserve("w", {}, None)
    now = store.server_time()
    store.server_time = lambda: now  # the sweeps' clock, pinned: they are exactly sweeps_apart apart
    store.jobs.update_one({"_id": doc["_id"]}, {"$set": {"refresh_time": now - datetime.timedelta(seconds=10)}})
    reaper = Reaper(store, settings(mongo_url, grace_seconds=5), checks=[])
    reaper.last_sweep_at = now - datetime.timedelta(seconds=sweeps_apart)
    assert reaper.sweep().requeued == requeued
    if not requeued:
        assert reaper.heartbeats_judged_from >= now
        assert reaper.sweep().requeued == 0  # the next sweep, a moment later, judges from the same start
        assert store.jobs.find_one({"_id": doc["_id"]})["state"] == JOB_STATE_RUNNING


def test_a_holder_known_gone_is_the_reason_given_even_when_its_heartbeat_ran_out_too(store, mongo_url):
    """A sweep that comes late (after a stall under half the grace) finds a killed worker's heartbeat run out
    and its container exited: the liveness check's reason is the one recorded, and counted under its name."""
    enqueue_slow_trial(store)
    doc = store.reserve("w", {}, None)
    store.jobs.update_one({"_id": doc["_id"]},
                          {"$set": {"refresh_time": store.server_time() - datetime.timedelta(seconds=10)}})
    reaper = Reaper(store, settings(mongo_url, grace_seconds=5), checks=[RaceAfterRead(lambda: None)])
    assert reaper.sweep().requeued == 1
    history = store.jobs.find_one({"_id": doc["_id"]})["hyperfleet"]["history"]
    assert [(h["event"], h["reason"]) for h in history] == [("requeued", "gone (test)")]
    registry = reaper.metrics.registry
    assert registry.get_sample_value("hyperfleet_monitor_trials_reaped_total", {"cause": "race"}) == 1
    assert registry.get_sample_value("hyperfleet_monitor_trials_reaped_total", {"cause": "heartbeat"}) is None


def test_a_late_result_from_a_reaped_worker_is_dropped(store, mongo_url):
    enqueue_slow_trial(store)
    doc = store.reserve("reaped", {}, None)
    assert Reaper(store, settings(mongo_url), checks=[RaceAfterRead(lambda: None)]).sweep().requeued == 1
    assert not store.finish(doc["_id"], "reaped", {"loss": 9.0, "status": "ok"})
    assert not store.fail(doc["_id"], "reaped", ("E", "late"), "tb")
    assert not store.heartbeat(doc["_id"], "reaped")
    assert store.jobs.find_one({"_id": doc["_id"]})["state"] == JOB_STATE_NEW  # not brought back to life
    again = store.reserve("rescuer", {}, None)
    assert store.finish(again["_id"], "rescuer", {"loss": 1.0, "status": "ok"})
    final = store.jobs.find_one({"_id": doc["_id"]})
    assert final["result"]["loss"] == 1.0 and final["state"] == JOB_STATE_DONE


def test_two_monitors_at_once_recover_each_trial_once(store, mongo_url):
    for _ in range(40):
        enqueue_slow_trial(store)
    while store.reserve("dead", {}, None):
        pass
    reports = []

    def sweep():
        own = JobStore.connect(mongo_url)
        try:
            reports.append(Reaper(own, settings(mongo_url), checks=[RaceAfterRead(lambda: None)]).sweep())
        finally:
            own.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.requeued for r in reports) == 40
    docs = list(store.jobs.find())
    assert all(d["state"] == JOB_STATE_NEW and d["hyperfleet"]["orphaned"] == 1 for d in docs)
    assert all(len([h for h in d["hyperfleet"]["history"] if h["event"] == "requeued"]) == 1 for d in docs)


# -- policies ----------------------------------------------------------------------------------

def test_error_policy_marks_orphans_error_like_hyperkops(store, mongo_url):
    enqueue_slow_trial(store)
    doc = store.reserve("w", {}, None)
    report = Reaper(store, settings(mongo_url, policy="error"), checks=[RaceAfterRead(lambda: None)]).sweep()
    assert report.errored == 1
    final = store.jobs.find_one({"_id": doc["_id"]})
    assert final["state"] == JOB_STATE_ERROR and final["error"] == ["hyperfleet.orphaned", "gone (test)"]
    (event,) = final["hyperfleet"]["history"]
    assert (event["event"], event["reason"], event["owner"]) == ("errored", "gone (test)", "w")  # the worker it was lost by


def test_infrastructure_budget_then_error(store, mongo_url):
    enqueue_slow_trial(store)
    reaper = Reaper(store, settings(mongo_url, max_retries=2), checks=[RaceAfterRead(lambda: None)])
    for expected in (JOB_STATE_NEW, JOB_STATE_NEW, JOB_STATE_ERROR):
        doc = store.reserve("w", {}, None)
        reaper.sweep()
        assert store.jobs.find_one({"_id": doc["_id"]})["state"] == expected
    final = store.jobs.find_one({"_id": doc["_id"]})
    assert "retry budget of 2 spent" in final["error"][1]
    assert final["hyperfleet"]["orphaned"] == 3


def test_objective_failures_have_their_own_budget(store, mongo_url):
    enqueue_slow_trial(store)
    reaper = Reaper(store, settings(mongo_url, max_objective_retries=1), checks=[])
    doc = store.reserve("w", {}, None)
    store.fail(doc["_id"], "w", ("E", "first"), "tb")
    assert reaper.sweep().retried == 1
    again = store.jobs.find_one({"_id": doc["_id"]})
    assert again["state"] == JOB_STATE_NEW and "error" not in again
    assert again["hyperfleet"]["history"][-1]["reason"] == "objective failed (1 of 2 tries)"
    store.reserve("w", {}, None)
    store.fail(doc["_id"], "w", ("E", "second"), "tb")
    assert reaper.sweep().retried == 0
    final = store.jobs.find_one({"_id": doc["_id"]})
    assert final["state"] == JOB_STATE_ERROR and final["error"][1] == "second"
    assert final["hyperfleet"]["objective_failures"] == 2 and "orphaned" not in final["hyperfleet"]


def test_a_sweep_reads_only_running_trials(store, mongo_url, mongo_server):
    from tests.helpers import DocsReturned
    import pymongo

    for _ in range(30):
        enqueue_slow_trial(store)
    for _ in range(25):
        d = store.reserve("w", {}, None)
        store.finish(d["_id"], "w", {"loss": 0.0, "status": "ok"})
    store.reserve("w", {}, None)
    listener = DocsReturned()
    client = pymongo.MongoClient(mongo_server.url, event_listeners=[listener])
    counted = JobStore(client, store.address)
    assert Reaper(counted, settings(mongo_url), checks=[]).sweep().running == 1
    assert listener.documents == 1
    client.close()


# -- the process: health, metrics, outages -------------------------------------------------------

def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.timeout(120)
def test_health_and_metrics(store, mongo_url):
    port = free_port()
    enqueue_slow_trial(store)
    doc = store.reserve("somewhere-else:1", {"host": "somewhere-else", "pid": 1}, None)
    store.jobs.update_one({"_id": doc["_id"]}, {"$set": {"refresh_time": doc["refresh_time"].replace(year=2000)}})
    monitor = start_monitor(mongo_url, "--health-host", "127.0.0.1", "--health-port", str(port),
                            "--interval-seconds", "0.2")
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200 if _up(port) else False)
        requeue_time(store, doc["_id"])
        status, text = wait_for(lambda: (r := http_get(f"http://127.0.0.1:{port}/metrics"))
                                and 'hyperfleet_monitor_trials_reaped_total{cause="heartbeat"} 1.0' in r[1] and r)
        assert status == 200
        assert "hyperfleet_monitor_trials_requeued_total 1.0" in text
        assert "hyperfleet_monitor_mongo_up 1.0" in text
        assert "hyperfleet_monitor_sweep_duration_seconds_count" in text
        assert "hyperfleet_monitor_detection_latency_seconds_bucket" in text
        assert http_get(f"http://127.0.0.1:{port}/nope")[0] == 404
    finally:
        stop_all([monitor])
    assert monitor.returncode == 0


def _up(port):
    try:
        http_get(f"http://127.0.0.1:{port}/healthz")
        return True
    except OSError:
        return False


@pytest.mark.timeout(120)
def test_unreachable_mongo_is_unhealthy_not_a_crash():
    port = free_port()
    monitor = start_monitor(f"mongodb://127.0.0.1:{free_port()}/db", "--health-host", "127.0.0.1",
                            "--health-port", str(port), "--connect-timeout-seconds", "0.5", "--interval-seconds", "0.2",
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _up(port), timeout=30)
        status, text = wait_for(lambda: (r := http_get(f"http://127.0.0.1:{port}/healthz")) and "reach" in r[1] and r)
        assert status == 503 and "cannot reach MongoDB" in text
        assert "hyperfleet_monitor_mongo_up 0.0" in http_get(f"http://127.0.0.1:{port}/metrics")[1]
        time.sleep(2)
        assert monitor.poll() is None
        monitor.send_signal(signal.SIGTERM)
        assert monitor.wait(15) == 0
        assert monitor.stderr.read().count("sweep: MongoDB unreachable, retrying") == 1  # once, not per attempt
    finally:
        stop_all([monitor])


def test_bad_options_are_usage_errors_naming_the_option():
    import sys

    for args, named in ((["--policy", "maybe"], "--policy"), (["--grace-seconds", "-1"], "--grace-seconds"),
                        (["--liveness", "ssh"], "--liveness"), (["--mongo", "http://x"], "--mongo")):
        proc = subprocess.run([sys.executable, "-m", "hyperfleet", "monitor", *args], env=worker_env(),
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and named in proc.stderr, (args, proc.stderr)


# -- chaos ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(300)
def test_chaos_random_sigkills_during_a_100_trial_fmin(mongo_url):
    monitor = start_monitor(mongo_url, "--liveness", "process", "--grace-seconds", "5", "--interval-seconds", "0.2",
                            "--health-port", "0", "--max-retries", "50")
    workers = [start_worker(mongo_url, "--heartbeat-seconds", "0.5", "--log-level", "error") for _ in range(4)]
    trials = hyperfleet.MongoTrials(mongo_url, exp_key="chaos")
    done = threading.Event()
    kills = []

    def chaos():
        rng = random.Random(7)
        while not done.wait(rng.uniform(1.0, 2.0)):
            i = rng.randrange(len(workers))
            workers[i].kill()
            workers[i].wait()
            kills.append(workers[i].pid)
            workers[i] = start_worker(mongo_url, "--heartbeat-seconds", "0.5", "--log-level", "error")

    killer = threading.Thread(target=chaos)
    killer.start()
    try:
        fmin(slow_quadratic, {"x": hp.uniform("x", -5, 5), "sleep": 0.25}, algo=rand.suggest, max_evals=100,
             trials=trials, max_queue_len=4, show_progressbar=False)
    finally:
        done.set()
        killer.join()
        stop_all([monitor, *workers])
    docs = list(trials.store.jobs.find({"exp_key": "chaos"}))
    assert len(kills) >= 3
    assert len(docs) == 100
    assert all(d["state"] == JOB_STATE_DONE for d in docs)
    assert len({d["tid"] for d in docs}) == 100
    recovered = [d for d in docs if d["hyperfleet"].get("orphaned")]
    assert recovered, "some trials were running when their worker was killed"


def test_a_zero_infrastructure_budget_marks_the_first_orphan_error(store, mongo_url):
    enqueue_slow_trial(store)
    doc = store.reserve("w", {}, None)
    report = Reaper(store, settings(mongo_url, max_retries=0), checks=[RaceAfterRead(lambda: None)]).sweep()
    assert (report.requeued, report.errored) == (0, 1)
    final = store.jobs.find_one({"_id": doc["_id"]})
    assert final["state"] == JOB_STATE_ERROR and "retry budget of 0 spent" in final["error"][1]


def test_each_recovery_observes_its_detection_latency_from_the_last_heartbeat(store, mongo_url):
    """An hour since the last heartbeat is observed as an hour; heartbeats dated after the sweep read the
    server's clock (one that landed between its read and its reap) as 0 s, never less."""
    for _ in range(3):
        enqueue_slow_trial(store)
        store.reserve("w", {}, None)
    now = store.server_time()
    for tid, heartbeat in ((0, now - datetime.timedelta(hours=1)), (1, now + datetime.timedelta(hours=1)),
                           (2, now + datetime.timedelta(minutes=1))):
        store.jobs.update_one({"tid": tid}, {"$set": {"refresh_time": heartbeat}})
    reaper = Reaper(store, settings(mongo_url, grace_seconds=3 * 3600), checks=[RaceAfterRead(lambda: None)])
    assert reaper.sweep().requeued == 3
    registry = reaper.metrics.registry
    assert registry.get_sample_value("hyperfleet_monitor_detection_latency_seconds_count") == 3
    assert 3600 <= registry.get_sample_value("hyperfleet_monitor_detection_latency_seconds_sum") < 3600 + 60
    assert registry.get_sample_value("hyperfleet_monitor_detection_latency_seconds_bucket", {"le": "0.5"}) == 2
    # and the sweep observes its own time: a moment, not the clock's reading
    assert 0 < registry.get_sample_value("hyperfleet_monitor_sweep_duration_seconds_sum") < 60
    assert registry.get_sample_value("hyperfleet_monitor_trials_reaped_total", {"cause": "race"}) == 3


def test_a_budget_of_one_requeues_a_trial_never_orphaned_before_and_errors_it_the_second_time(store, mongo_url):
    enqueue_slow_trial(store)
    reaper = Reaper(store, settings(mongo_url, max_retries=1), checks=[RaceAfterRead(lambda: None)])
    first = store.reserve("w", {}, None)
    assert "orphaned" not in first["hyperfleet"]
    assert reaper.sweep().requeued == 1
    store.reserve("w", {}, None)
    assert reaper.sweep().errored == 1
    assert store.jobs.find_one({"_id": first["_id"]})["hyperfleet"]["orphaned"] == 2
