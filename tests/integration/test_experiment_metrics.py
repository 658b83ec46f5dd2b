"""Per-experiment metrics (hyperfleet.experiment_metrics) against the real server: counts per state,
the queue-wait and run-time histograms, the finished counter, retries and ageing out; then a running
monitor's /metrics parsed against the counts of a real experiment run by real workers."""

import datetime as dt

import pytest
from prometheus_client import CollectorRegistry

from hyperfleet.experiment_metrics import ExperimentMetrics
from hyperfleet.store import JOB_STATE_ERROR, JOB_STATE_NEW
from testbed.processes import free_port
from tests.helpers import (enqueue_slow_trial, finish_all, metrics_answer, sample, scrape, start_monitor, start_worker,
                           stop_all, wait_for)


def value(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def counts(registry, exp_key):
    return {state: value(registry, "hyperfleet_experiment_trials", exp_key=exp_key, state=state)
            for state in ("queued", "running", "done", "error")}


def book(store, exp_key):
    return store.reserve("test:1", {"host": "test", "pid": 1}, exp_key)


def test_counts_histograms_retries_and_ageing_out(store):
    registry = CollectorRegistry()
    metrics = ExperimentMetrics(registry, retention_seconds=60)
    early = enqueue_slow_trial(store, "a", sleep=0)
    store.finish(book(store, "a")["_id"], "test:1", {"status": "ok", "loss": 0.0})
    for _ in range(5):
        enqueue_slow_trial(store, "a", sleep=0)
    enqueue_slow_trial(store, "b", sleep=0)
    metrics.refresh(store, now=0)
    # what finished before the first refresh is counted, not observed
    assert counts(registry, "a") == {"queued": 5, "running": 0, "done": 1, "error": 0}
    assert counts(registry, "b") == {"queued": 1, "running": 0, "done": 0, "error": 0}
    assert value(registry, "hyperfleet_open_trials") == 6
    assert value(registry, "hyperfleet_experiment_run_seconds_count", exp_key="a") is None

    trials = [book(store, "a") for _ in range(4)]
    store.finish(trials[1]["_id"], "test:1", {"status": "ok", "loss": 1.0})
    store.finish(trials[2]["_id"], "test:1", {"status": "ok", "loss": 2.0})
    store.fail(trials[3]["_id"], "test:1", ("ValueError", "boom"), "traceback")
    metrics.refresh(store, now=1)
    assert counts(registry, "a") == {"queued": 1, "running": 1, "done": 3, "error": 1}
    assert value(registry, "hyperfleet_experiment_trials_finished_total", exp_key="a", state="done") == 2
    assert value(registry, "hyperfleet_experiment_trials_finished_total", exp_key="a", state="error") == 1
    assert value(registry, "hyperfleet_experiment_run_seconds_count", exp_key="a") == 3
    assert value(registry, "hyperfleet_experiment_queue_wait_seconds_count", exp_key="a") == 3
    wait = value(registry, "hyperfleet_experiment_queue_wait_seconds_sum", exp_key="a")
    assert 0 <= wait < 60, wait  # book_time (server clock) minus queued_at (this client's clock)

    # the failed trial queued again (the monitor's retry) and finished: counted once, observed twice
    failed = store.jobs.find_one({"_id": trials[3]["_id"]})
    assert failed["state"] == JOB_STATE_ERROR
    assert store.retry_failed(failed, "again")
    metrics.refresh(store, now=2)
    assert counts(registry, "a") == {"queued": 2, "running": 1, "done": 3, "error": 0}
    store.finish(trials[0]["_id"], "test:1", {"status": "ok", "loss": 0.5})
    finish_all(store, "a")
    metrics.refresh(store, now=3)
    assert counts(registry, "a") == {"queued": 0, "running": 0, "done": 6, "error": 0}
    assert value(registry, "hyperfleet_experiment_trials_finished_total", exp_key="a", state="done") == 5
    assert value(registry, "hyperfleet_experiment_run_seconds_count", exp_key="a") == 6
    assert store.count("a", [2]) == 6

    # a DONE trial queued again (the dashboard's requeue): no longer counted done
    store.jobs.update_one({"tid": early}, {"$set": {"state": JOB_STATE_NEW, "owner": None}})
    metrics.refresh(store, now=4)
    assert counts(registry, "a") == {"queued": 1, "running": 0, "done": 5, "error": 0}

    # b stays queued: kept; a, drained and idle past the retention, leaves every metric
    store.finish(book(store, "a")["_id"], "test:1", {"status": "ok", "loss": 0.0})
    metrics.refresh(store, now=5)
    metrics.refresh(store, now=100)
    assert metrics.experiments == ["b"]
    assert counts(registry, "a") == dict.fromkeys(("queued", "running", "done", "error"))
    assert value(registry, "hyperfleet_experiment_run_seconds_count", exp_key="a") is None
    assert counts(registry, "b")["queued"] == 1


def test_trials_queued_and_finished_between_two_refreshes_are_counted_and_observed(store):
    registry = CollectorRegistry()
    metrics = ExperimentMetrics(registry)
    enqueue_slow_trial(store, "fast", sleep=0)
    metrics.refresh(store, now=0)
    for _ in range(3):
        enqueue_slow_trial(store, "fast", sleep=0)
    store.allocate_tids(2)  # handed out and never used (a driver that died): looked for a few times, then given up
    finish_all(store, "fast")
    metrics.refresh(store, now=1)
    assert counts(registry, "fast") == {"queued": 0, "running": 0, "done": 4, "error": 0}
    assert value(registry, "hyperfleet_experiment_trials_finished_total", exp_key="fast", state="done") == 4
    assert value(registry, "hyperfleet_experiment_run_seconds_count", exp_key="fast") == 4
    # an id taken before a refresh, its trial inserted after it (TPE suggests in between) and finished
    # before the next one
    (late,) = store.allocate_tids(1)
    metrics.refresh(store, now=2)
    store.insert_trials([{"state": JOB_STATE_NEW, "tid": late, "exp_key": "fast", "owner": None, "book_time": None,
                          "refresh_time": None, "misc": {"tid": late, "cmd": ("token_load", "x")}}])
    store.finish(book(store, "fast")["_id"], "test:1", {"status": "ok", "loss": 0.0})
    metrics.refresh(store, now=3)
    assert counts(registry, "fast")["done"] == 5
    assert value(registry, "hyperfleet_experiment_trials_finished_total", exp_key="fast", state="done") == 5
    for now in (4, 5, 6, 7):
        metrics.refresh(store, now=now)
    assert value(registry, "hyperfleet_experiment_trials_finished_total", exp_key="fast", state="done") == 5
    assert metrics._handed_out.lowest() is None  # the ids never used are looked for a few times, then given up


def test_an_experiment_first_seen_with_a_trial_finished_since_the_first_refresh_observes_it(store):
    registry = CollectorRegistry()
    metrics = ExperimentMetrics(registry)
    assert value(registry, "hyperfleet_experiment_metrics_last_refresh_timestamp_seconds") == 0
    enqueue_slow_trial(store, "before", sleep=0)
    finish_all(store, "before")  # finished before the first refresh: counted, not observed
    metrics.refresh(store, now=0)
    assert value(registry, "hyperfleet_experiment_metrics_last_refresh_timestamp_seconds") > 0
    for _ in range(2):
        enqueue_slow_trial(store, "new", sleep=0)
    store.finish(book(store, "new")["_id"], "test:1", {"status": "ok", "loss": 0.0})
    metrics.refresh(store, now=1)  # "new" seen for the first time, one of its trials finished already
    assert counts(registry, "new") == {"queued": 1, "running": 0, "done": 1, "error": 0}
    assert value(registry, "hyperfleet_experiment_trials_finished_total", exp_key="new", state="done") == 1
    assert value(registry, "hyperfleet_experiment_run_seconds_count", exp_key="new") == 1
    finish_all(store, "new")
    metrics.refresh(store, now=2)
    assert value(registry, "hyperfleet_experiment_trials_finished_total", exp_key="new", state="done") == 2
    assert value(registry, "hyperfleet_experiment_trials_finished_total", exp_key="before", state="done") is None


def test_queue_wait_of_a_trial_inserted_by_another_client_uses_its_id(store):
    registry = CollectorRegistry()
    metrics = ExperimentMetrics(registry)
    metrics.refresh(store, now=0)
    tid = store.allocate_tids(1)[0]
    store.jobs.insert_one({"state": JOB_STATE_NEW, "tid": tid, "exp_key": "stock", "owner": None,
                           "book_time": None, "refresh_time": None, "misc": {"tid": tid}})
    metrics.refresh(store, now=1)
    trial = book(store, "stock")
    store.finish(trial["_id"], "test:1", {"status": "ok", "loss": 0.0})
    metrics.refresh(store, now=2)
    assert value(registry, "hyperfleet_experiment_queue_wait_seconds_count", exp_key="stock") == 1
    # an ObjectId's time has whole seconds: the wait is the booking's delay plus at most one second
    assert 0 <= value(registry, "hyperfleet_experiment_queue_wait_seconds_sum", exp_key="stock") < 30


@pytest.mark.timeout(180)
def test_monitor_metrics_follow_a_real_experiment(store, mongo_url):
    port = free_port()
    monitor = start_monitor(mongo_url, "--health-host", "127.0.0.1", "--health-port", str(port),
                            "--metrics-interval-seconds", "0.2")
    workers = []
    try:
        wait_for(lambda: metrics_answer(port), timeout=30)
        for _ in range(12):
            enqueue_slow_trial(store, "exp-metrics", sleep=0.3)
        enqueue_slow_trial(store, "exp-metrics", sleep=-1)  # time.sleep raises: an ERROR trial
        # nothing runs yet: the queue is what the metrics say
        queued = wait_for(lambda: (s := scrape(port))
                          and sample(s, "hyperfleet_experiment_trials", exp_key="exp-metrics", state="queued") == 13
                          and s)
        assert sample(queued, "hyperfleet_experiment_trials", exp_key="exp-metrics", state="running") == 0
        assert sample(queued, "hyperfleet_open_trials") == 13
        workers = [start_worker(mongo_url, "--log-level", "warning") for _ in range(2)]
        # while it runs: some running, never more than the workers
        busy = wait_for(lambda: (s := scrape(port))
                        and sample(s, "hyperfleet_experiment_trials", exp_key="exp-metrics", state="running") and s)
        assert 1 <= sample(busy, "hyperfleet_experiment_trials", exp_key="exp-metrics", state="running") <= 2
        final = wait_for(lambda: (s := scrape(port))
                         and sample(s, "hyperfleet_experiment_trials", exp_key="exp-metrics", state="done") == 12
                         and sample(s, "hyperfleet_experiment_trials", exp_key="exp-metrics", state="error") == 1
                         and s, timeout=60)
    finally:
        stop_all([monitor, *workers])
    assert sample(final, "hyperfleet_experiment_trials", exp_key="exp-metrics", state="queued") == 0
    assert sample(final, "hyperfleet_experiment_trials", exp_key="exp-metrics", state="running") == 0
    assert sample(final, "hyperfleet_open_trials") == 0
    assert sample(final, "hyperfleet_experiment_trials_finished_total", exp_key="exp-metrics", state="done") == 12
    assert sample(final, "hyperfleet_experiment_trials_finished_total", exp_key="exp-metrics", state="error") == 1
    assert sample(final, "hyperfleet_experiment_run_seconds_count", exp_key="exp-metrics") == 13
    run_sum = sample(final, "hyperfleet_experiment_run_seconds_sum", exp_key="exp-metrics")
    assert 12 * 0.3 <= run_sum < 12 * 0.3 + 13 * 2, run_sum
    # every trial waited in the queue at least until the workers started
    assert sample(final, "hyperfleet_experiment_queue_wait_seconds_count", exp_key="exp-metrics") == 13
    below_100ms = sample(final, "hyperfleet_experiment_queue_wait_seconds_bucket", exp_key="exp-metrics", le="0.1")
    assert below_100ms == 0
    # what the database says agrees
    assert store.count("exp-metrics", [2]) == 12 and store.count("exp-metrics", [JOB_STATE_ERROR]) == 1


def test_a_requeue_records_when_the_trial_entered_the_queue_again(store):
    # the requeuer's clock, as naive UTC like the server's book_time
    tid = enqueue_slow_trial(store, "x", sleep=0)
    trial = book(store, "x")
    store.hand_back(trial["_id"], "test:1", "test")
    doc = store.jobs.find_one({"tid": tid})
    assert isinstance(doc["hyperfleet"]["queued_at"], dt.datetime)
    assert abs((doc["hyperfleet"]["queued_at"] - store.server_time()).total_seconds()) < 30
