"""The worker in this process, against the test database.

Its loop, with its waits recorded instead of slept: when idle it polls again after
``poll_min_seconds``, doubling up to ``poll_interval_seconds`` (and on, after a long idle spell, up to a
tenth of it and at most ``idle_poll_interval_seconds``), and from ``poll_min_seconds`` again after a trial;
after a failed reservation (the server unreachable) it waits at least 0.5 s and at most 5 s, however its
polling is set, so an outage is neither hammered nor waited out long after it ends; its alive file
is touched at most once a second.

The monitor's loop, the same way: while Mongo cannot be reached, its waits double from its interval up
to 5 s (or its interval, if longer), with a dashboard as without. Stopped, it frees its health and
dashboard ports, and its dashboard stops refreshing.

Running a trial: a fault in evaluating it (not the objective's: the machine's, or ours) is the trial's
error, not the worker's end; the objective's failure in a trial stock hyperopt queued (no retries) is
final. Recording it: while the server is unreachable the write is tried again
every second, and given up at once on shutdown (the monitor recovers the trial); attachments the
server refuses make the trial an error that names the refusal. On shutdown the trial is handed back,
or, when the server cannot take it, left RUNNING for the monitor. A pruned trial is recorded DONE, or
LOST when it was taken meanwhile; a token_load objective's result may carry attachments."""

import datetime
import os
import threading
import time

import pytest
from pymongo.errors import AutoReconnect

import hyperfleet
import hyperfleet.worker
from hyperfleet.evaluation import Outcome
from hyperfleet.monitor import OUTAGE_BACKOFF_SECONDS, run_monitor
from hyperfleet.settings import MonitorSettings, WorkerSettings
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING
from hyperfleet.worker import TrialOutcome, Worker
from testbed.processes import free_port, port_open
from tests.helpers import wait_for
from tests.integration.test_worker import insert_trials


class RecordedWaits:
    """Takes the place of the worker's stop event: each wait is recorded, not slept; the loop ends
    after ``count`` of them."""

    def __init__(self, count: int):
        self.count, self.waits = count, []

    def is_set(self) -> bool:
        return len(self.waits) >= self.count

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.is_set()

    def set(self) -> None:
        self.count = len(self.waits)


def loop_waits(store, count: int, **settings) -> tuple[Worker, list[float]]:
    worker = Worker(store, WorkerSettings(mongo_url=store.address.uri, **settings))
    worker._stop = RecordedWaits(count)
    assert worker._loop() == 0
    return worker, worker._stop.waits


def test_idle_polling_doubles_from_its_minimum_up_to_its_interval(store):
    _, waits = loop_waits(store, 6, poll_min_seconds=0.01, poll_interval_seconds=0.05)
    assert waits == pytest.approx([0.01, 0.02, 0.04, 0.05, 0.05, 0.05])


@pytest.mark.parametrize("idle_seconds,expected", [(0.0, 0.05), (0.4, 0.05), (0.5, 0.05), (3.0, 0.3), (10.0, 1.0),
                                                   (3600.0, 1.0)])
def test_a_long_idle_spell_lets_the_wait_grow_to_a_tenth_of_it_and_at_most_the_idle_interval(idle_seconds, expected):
    settings = WorkerSettings(poll_interval_seconds=0.05, idle_poll_interval_seconds=1.0)
    assert hyperfleet.worker.next_idle_wait(10.0, idle_seconds, settings) == pytest.approx(expected)
    assert hyperfleet.worker.next_idle_wait(0.01, idle_seconds, settings) == pytest.approx(min(0.02, expected))
    # a poll interval at or past the idle one: never past the poll interval
    for poll, idle in ((2.0, 1.0), (1.0, 1.0)):
        slow = WorkerSettings(poll_interval_seconds=poll, idle_poll_interval_seconds=idle)
        assert hyperfleet.worker.next_idle_wait(10.0, idle_seconds, slow) == poll


class SleptWaits(RecordedWaits):
    """RecordedWaits that sleeps each wait: the loop's idle spell lasts as long as its waits add up to."""

    def wait(self, seconds: float) -> bool:
        time.sleep(seconds)
        return super().wait(seconds)


def test_an_idle_worker_polls_ever_less_often_up_to_its_idle_interval(store):
    worker = Worker(store, WorkerSettings(mongo_url=store.address.uri, poll_min_seconds=0.01, poll_interval_seconds=0.02,
                                          idle_poll_interval_seconds=0.2))
    worker._stop = SleptWaits(40)
    reserve, attempts = store.reserve, []

    def timed_reserve(*args, **kwargs):
        attempts.append(time.monotonic())
        return reserve(*args, **kwargs)
    store.reserve = timed_reserve
    started = time.monotonic()  # the idle spell starts after this, and each wait is chosen before its attempt
    assert worker._loop() == 0
    waits = worker._stop.waits
    assert waits[:2] == pytest.approx([0.01, 0.02]) and max(waits) == pytest.approx(0.2)
    # each wait is at most a tenth of the idle time before it (past the poll interval), never shrinks
    for attempt, wait in zip(attempts[1:], waits[1:], strict=False):
        assert wait <= max(0.02, (attempt - started) * 0.1 + 1e-9)
    assert waits == sorted(waits)


def test_polling_starts_again_from_its_minimum_after_a_trial(store):
    insert_trials(store, "loop", ("token_load", "tests.objectives.quadratic_trial"), 1)
    worker = Worker(store, WorkerSettings(mongo_url=store.address.uri, poll_min_seconds=0.01, poll_interval_seconds=1))
    worker._stop = RecordedWaits(3)
    reserve = store.reserve
    calls = []

    def reserve_after_two_empty_polls(*args, **kwargs):
        calls.append(None)
        return None if len(calls) <= 2 else reserve(*args, **kwargs)
    store.reserve = reserve_after_two_empty_polls
    assert worker._loop() == 0
    assert [d["state"] for d in store.jobs.find()] == [JOB_STATE_DONE] and worker.jobs_done == 1
    assert worker._stop.waits == pytest.approx([0.01, 0.02, 0.01])  # None, None, the trial, None


@pytest.mark.parametrize("poll_min,poll_interval,expected", [(0.01, 0.05, 0.5), (8, 10, 5.0), (2, 3, 2)])
def test_a_failed_reservation_waits_half_a_second_at_least_and_five_at_most(store, poll_min, poll_interval, expected):
    def unreachable(*args, **kwargs):
        raise AutoReconnect("the server is down")
    store.reserve = unreachable
    _, waits = loop_waits(store, 3, poll_min_seconds=poll_min, poll_interval_seconds=poll_interval)
    assert waits == pytest.approx([expected] * 3)


def test_the_alive_file_is_touched_at_most_once_a_second(store, tmp_path):
    alive = tmp_path / "alive"
    worker = Worker(store, WorkerSettings(mongo_url=store.address.uri, alive_file=str(alive)))
    worker._still_alive()
    assert alive.exists()
    for ago, touched in ((0.9, False), (1.2, True)):
        os.utime(alive, (0, 0))
        worker._touched = time.monotonic() - ago
        worker._still_alive()
        assert (alive.stat().st_mtime > 0) is touched, f"last touched {ago} s ago"


def test_attachments_the_server_refuses_make_the_trial_an_error_naming_the_refusal(store):
    """An attachment whose entry would take the trial's document past the server's 16 MB (a large
    checkpointed result is there already): the server refuses the write (an OperationFailure), and the
    trial is recorded as an error naming it, not lost. (As a --subprocesses worker stores its child's
    attachments.)"""
    insert_trials(store, "big", ("token_load", "tests.objectives.quadratic_trial"), 1)
    worker = Worker(store, WorkerSettings(mongo_url=store.address.uri))
    doc = store.reserve(worker.owner, worker.identity, "big")
    store.checkpoint(doc["_id"], worker.owner, {"status": "ok", "loss": 9.0, "pad": "x" * (8 << 20)})
    outcome = Outcome(result={"status": "ok", "loss": 1.0}, attachments={"n" * (9 << 20): b"x"})
    assert worker._record(doc, outcome) is TrialOutcome.ERROR
    failed = store.jobs.find_one({"_id": doc["_id"]})
    assert (failed["state"], failed["error"][0]) == (JOB_STATE_ERROR, "<class 'pymongo.errors.WriteError'>")


def test_a_fault_in_evaluating_a_trial_is_its_error_and_the_worker_goes_on(store):
    """The evaluation itself fails (here: no space left for the --subprocesses child's files): the trial is
    an error naming the fault, and the worker's loop takes the next one."""
    insert_trials(store, "fault", ("token_load", "tests.objectives.quadratic_trial"), 2)
    worker = Worker(store, WorkerSettings(mongo_url=store.address.uri, use_subprocesses=True, max_jobs=2))
    worker._stop = RecordedWaits(10)
    faults = []

    def evaluate_without_space(doc, heartbeat, reporter):
        faults.append(doc["tid"])
        raise OSError(28, "No space left on device")
    worker._evaluate_in_child = evaluate_without_space
    assert worker._loop() == 0 and worker.jobs_done == 2
    errors = [(d["state"], d["error"][0], d["error"][1]) for d in store.jobs.find(sort=[("tid", 1)])]
    assert errors == [(JOB_STATE_ERROR, "<class 'OSError'>", "[Errno 28] No space left on device")] * 2
    assert len(faults) == 2


def test_an_objective_that_raises_in_a_trial_without_retries_is_an_error_at_once(store):
    """A trial that stock hyperopt's MongoTrials queued (straight into the collection, without the fields
    hyperfleet's store adds) has no retries: its objective's failure is final."""
    store.jobs.insert_one({"state": JOB_STATE_NEW, "tid": 0, "spec": None, "result": {"status": "new"}, "exp_key": "once",
                           "misc": {"tid": 0, "cmd": ("token_load", "tests.objectives.fails_below_zero_trial"),
                                    "workdir": None, "idxs": {"x": [0]}, "vals": {"x": [-1.0]}},
                           "owner": None, "book_time": None, "refresh_time": None})
    loop_waits(store, 10, max_jobs=1)
    (doc,) = store.jobs.find()
    assert (doc["state"], doc.get("error")) == (JOB_STATE_ERROR, ["<class 'ValueError'>", "x=-1.0 is negative"])
    assert (doc["hyperfleet"]["attempts"], doc["hyperfleet"]["objective_failures"]) == (1, 1)


class RecordedSleeps:
    """The worker module's ``time``, its sleeps recorded instead of slept."""

    def __init__(self):
        self.sleeps = []
        self.monotonic = time.monotonic

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_a_result_is_written_again_every_second_while_the_server_is_unreachable(store, monkeypatch):
    insert_trials(store, "retried", ("token_load", "tests.objectives.quadratic_trial"), 1)
    worker = Worker(store, WorkerSettings(mongo_url=store.address.uri))
    worker._stop = RecordedWaits(10)
    doc = store.reserve(worker.owner, worker.identity, "retried")
    finish, calls = store.finish, []

    def unreachable_twice(*args, **kwargs):
        calls.append(None)
        if len(calls) <= 2:
            raise AutoReconnect("the server is down")
        return finish(*args, **kwargs)
    store.finish = unreachable_twice
    clock = RecordedSleeps()
    monkeypatch.setattr(hyperfleet.worker, "time", clock)
    assert worker._record(doc, Outcome(result={"status": "ok", "loss": 1.0})) is TrialOutcome.DONE
    assert clock.sleeps == [1.0, 1.0] and store.jobs.find_one({"_id": doc["_id"]})["state"] == JOB_STATE_DONE
    # shutting down: not tried again, the trial left RUNNING for the monitor
    insert_trials(store, "stopping", ("token_load", "tests.objectives.quadratic_trial"), 1)
    doc = store.reserve(worker.owner, worker.identity, "stopping")
    calls.clear()
    worker._stop.set()
    assert worker._record(doc, Outcome(result={"status": "ok", "loss": 1.0})) is TrialOutcome.LOST
    assert clock.sleeps == [1.0, 1.0] and len(calls) == 1
    assert store.jobs.find_one({"_id": doc["_id"]})["state"] == JOB_STATE_RUNNING


def monitor_in_thread(settings: MonitorSettings, stop) -> tuple[threading.Thread, list[int]]:
    """run_monitor started in a thread (not the main one: no signal handler of the test process is replaced),
    and the list its exit code goes to."""
    ended: list[int] = []
    thread = threading.Thread(target=lambda: ended.append(run_monitor(settings, stop)), daemon=True)
    thread.start()
    return thread, ended


@pytest.mark.parametrize("interval,expected", [(0.5, [0.5, 1.0, 2.0, 4.0, OUTAGE_BACKOFF_SECONDS, OUTAGE_BACKOFF_SECONDS]),
                                               (8.0, [8.0] * 3)])
def test_the_monitor_backs_off_while_mongo_cannot_be_reached(interval, expected):
    settings = MonitorSettings(mongo_url=f"mongodb://127.0.0.1:{free_port()}/db", interval_seconds=interval,
                               connect_timeout_seconds=0.1, health_port=None)
    stop = RecordedWaits(len(expected))
    monitor, ended = monitor_in_thread(settings, stop)
    monitor.join(60)
    assert ended == [0] and stop.waits == pytest.approx(expected)


def test_a_monitor_with_a_dashboard_starts_while_mongo_cannot_be_reached():
    """The dashboard's reader connects without checking the server (it must start while the server is away):
    the monitor backs off as without a dashboard, instead of ending."""
    settings = MonitorSettings(mongo_url=f"mongodb://127.0.0.1:{free_port()}/db", interval_seconds=0.5,
                               connect_timeout_seconds=0.1, health_port=None, health_host="127.0.0.1",
                               dashboard_port=free_port())
    stop = RecordedWaits(2)
    monitor, ended = monitor_in_thread(settings, stop)
    monitor.join(60)
    assert ended == [0] and stop.waits == pytest.approx([0.5, 1.0])


def test_a_stopped_monitor_frees_its_ports_and_its_dashboard_stops_refreshing(mongo_url):
    health, dashboard = free_port(), free_port()
    settings = MonitorSettings(mongo_url=mongo_url, interval_seconds=0.2, health_host="127.0.0.1", health_port=health,
                               dashboard_port=dashboard)
    stop, before = threading.Event(), set(threading.enumerate())
    monitor, ended = monitor_in_thread(settings, stop)
    wait_for(lambda: port_open("127.0.0.1", health) and port_open("127.0.0.1", dashboard), timeout=30, step=0.1)
    refresh = [t for t in set(threading.enumerate()) - before if t.name == "hyperfleet-dashboard-refresh"]
    assert len(refresh) == 1
    stop.set()
    monitor.join(30)
    assert ended == [0]
    # the dashboard's server notices its exit flag within a few of its 0.1 s ticks, and stops its cache's refresh;
    # the health server, shut down, is closed with its last reference
    wait_for(lambda: not port_open("127.0.0.1", health) and not port_open("127.0.0.1", dashboard), timeout=10, step=0.1)
    refresh[0].join(10)
    assert not refresh[0].is_alive()


def test_on_shutdown_the_trial_is_handed_back_or_if_the_server_cannot_take_it_left_to_the_monitor(store):
    insert_trials(store, "handback", ("token_load", "tests.objectives.quadratic_trial"), 2)
    worker = Worker(store, WorkerSettings(mongo_url=store.address.uri))
    first, second = (store.reserve(worker.owner, worker.identity, "handback") for _ in range(2))
    heartbeat = hyperfleet.worker.Heartbeat(store, first["_id"], worker.owner, 60.0)  # never started
    assert worker._interrupted(first, heartbeat) is None  # not stopping: the trial runs on
    worker.request_stop("worker shutdown (SIGTERM)")
    assert worker._interrupted(first, heartbeat) is TrialOutcome.HANDED_BACK
    assert store.jobs.find_one({"_id": first["_id"]})["state"] == JOB_STATE_NEW

    def unreachable(*args, **kwargs):
        raise AutoReconnect("the server is down")
    store.hand_back = unreachable
    assert worker._interrupted(second, heartbeat) is TrialOutcome.LOST
    assert store.jobs.find_one({"_id": second["_id"]})["state"] == JOB_STATE_RUNNING


@pytest.mark.parametrize("use_subprocesses", [False, True], ids=["in-thread", "in-a-child"])
def test_attachments_in_a_token_load_objectives_result_are_stored(store, use_subprocesses):
    insert_trials(store, "attaching", ("token_load", "tests.objectives.attaching_trial"), 1)
    worker, _ = loop_waits(store, 10, use_subprocesses=use_subprocesses, max_jobs=1)
    assert worker.jobs_done == 1
    doc = store.jobs.find_one()
    assert doc["state"] == JOB_STATE_DONE and "attachments" not in doc["result"]
    assert dict(hyperfleet.MongoTrials(store.address.uri, exp_key="attaching").trial_attachments(doc)) == \
        {"note": b"from the result"}


def test_a_pruned_trial_is_recorded_done_or_if_it_was_taken_lost(store):
    insert_trials(store, "pruned", ("token_load", "tests.objectives.quadratic_trial"), 2)
    worker = Worker(store, WorkerSettings(mongo_url=store.address.uri))
    kept, taken = (store.reserve(worker.owner, worker.identity, "pruned") for _ in range(2))
    pruned = {"step": 3, "rule": "median", "at": datetime.datetime.now(datetime.timezone.utc)}
    outcome = Outcome(result={"status": "ok", "loss": 2.5, "pruned": True}, pruned=pruned)
    assert worker._record(kept, outcome) is TrialOutcome.DONE
    doc = store.jobs.find_one({"_id": kept["_id"]})
    assert (doc["state"], doc["result"]["loss"], doc["hyperfleet"]["pruned"]["step"]) == (JOB_STATE_DONE, 2.5, 3)
    store.jobs.update_one({"_id": taken["_id"]}, {"$set": {"owner": ["another-worker:1"]}})  # requeued, taken again
    assert worker._record(taken, outcome) is TrialOutcome.LOST
    assert store.jobs.find_one({"_id": taken["_id"]})["state"] == JOB_STATE_RUNNING
