"""Worker processes against the real server: fmin end to end, errors, bad objectives, bad input."""

import contextlib
import datetime
import json
import subprocess
import sys
import threading
import time

import pytest
from hyperopt import fmin, hp, rand, tpe

import hyperfleet
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING
from testbed.processes import free_port
from tests.objectives import (ATTACHMENTS, RESULT_EXTRAS, checkpointing, flaky, quadratic, with_attachment,
                              with_result_extra)
from tests.helpers import enqueue_slow_trial, start_polling_workers, start_worker, stop_all, wait_for, worker_env


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fmin_of_50_trials_served_by_3_workers(mongo_url, tmp_path):
    workers = start_polling_workers(mongo_url, 3, tmp_path, "--log-level", "warning")
    try:
        trials = hyperfleet.MongoTrials(mongo_url, exp_key="fifty")
        best = fmin(quadratic, hp.uniform("x", -10, 10), algo=tpe.suggest, max_evals=50, trials=trials,
                    max_queue_len=3, show_progressbar=False)
        docs = list(trials.store.jobs.find({"exp_key": "fifty"}))
        assert len(docs) == 50
        assert all(d["state"] == JOB_STATE_DONE for d in docs)
        assert len({d["tid"] for d in docs}) == 50
        assert len({d["owner"][0] for d in docs}) >= 2  # the work was shared
        assert all(d["result"]["loss"] == pytest.approx((d["misc"]["vals"]["x"][0] - 3) ** 2) for d in docs)
        assert abs(best["x"] - 3) < 2
    finally:
        assert stop_all(workers) == [0, 0, 0]


def one_experiment_per_kind(mongo_url, mode, objective, kinds, good):
    """Each kind as an experiment of one trial (``objective(kind)``), in turn on one worker: a failed trial
    is not retried, the next one runs. Returns the store and each experiment's error; the worker is
    still running after the last and stops cleanly."""
    worker = start_worker(mongo_url, mode, "--log-level", "warning")
    try:
        for kind in kinds:
            trials = hyperfleet.MongoTrials(mongo_url, exp_key=kind)
            with pytest.raises(Exception, match="no evaluation tasks") if kind != good else contextlib.nullcontext():
                fmin(objective, hp.choice("kind", [kind]), algo=rand.suggest, max_evals=1, trials=trials,
                     show_progressbar=False)
        assert worker.poll() is None
    finally:
        assert stop_all([worker]) == [0]
    store = trials.store
    return store, {d["exp_key"]: d["error"][0] for d in store.jobs.find({"state": JOB_STATE_ERROR})}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["--subprocesses", "--no-subprocesses"])
def test_an_attachment_the_server_cannot_store_makes_the_trial_an_error_and_the_worker_carries_on(mongo_url, mode):
    """A child's attachments are stored by the worker after the objective returned (its own catch);
    in the worker's thread hyperopt's Domain.evaluate stores them, inside the objective's evaluation."""
    store, errors = one_experiment_per_kind(mongo_url, mode, with_attachment, ATTACHMENTS, good="bytes")
    assert errors == {"str": "<class 'TypeError'>", "surrogate": "<class 'UnicodeEncodeError'>",
                      "huge": "<class 'pymongo.errors.DocumentTooLarge'>"}
    assert store.jobs.find_one({"exp_key": "bytes"})["state"] == JOB_STATE_DONE


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["--subprocesses", "--no-subprocesses"])
def test_a_result_the_server_cannot_store_makes_the_trial_an_error_and_the_worker_carries_on(mongo_url, mode):
    store, errors = one_experiment_per_kind(mongo_url, mode, with_result_extra, RESULT_EXTRAS, good="plain")
    assert errors == {"huge-int": "<class 'OverflowError'>", "surrogate": "<class 'UnicodeEncodeError'>",
                      "int-key": "<class 'bson.errors.InvalidDocument'>"}
    assert store.jobs.find_one({"exp_key": "plain"})["result"] == {"loss": 1.0, "status": "ok", "note": "fine"}


@pytest.mark.timeout(120)
def test_an_objectives_checkpoint_is_the_trials_result_while_it_runs(mongo_url, tmp_path):
    worker = start_worker(mongo_url, "--no-subprocesses", "--log-level", "warning")
    release = tmp_path / "release"
    try:
        trials = hyperfleet.MongoTrials(mongo_url, exp_key="checkpoint")
        driver = threading.Thread(target=fmin, args=(checkpointing, {"release": str(release)}), daemon=True,
                                  kwargs={"algo": rand.suggest, "max_evals": 1, "trials": trials, "show_progressbar": False})
        driver.start()
        running = wait_for(lambda: trials.store.jobs.find_one({"exp_key": "checkpoint", "state": JOB_STATE_RUNNING,
                                                               "result.partial": True}), 60)
        assert running["result"] == {"status": "ok", "loss": 9.0, "partial": True}
        release.touch()
        driver.join(60)
        assert trials.store.jobs.find_one({"exp_key": "checkpoint"})["result"] == {"status": "ok", "loss": 1.0}
    finally:
        assert stop_all([worker]) == [0]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_subprocess_evaluation(mongo_url):
    workers = [start_worker(mongo_url, "--subprocesses", "--log-level", "warning")]
    try:
        trials = hyperfleet.MongoTrials(mongo_url, exp_key="sub")
        fmin(quadratic, hp.uniform("x", -10, 10), algo=rand.suggest, max_evals=4, trials=trials, show_progressbar=False)
        assert trials.count_by_state_unsynced(JOB_STATE_DONE) == 4
    finally:
        assert stop_all(workers) == [0]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["--no-subprocesses", "--subprocesses"])
def test_an_objective_that_raises_is_an_error_with_traceback_and_the_worker_carries_on(mongo_url, mode):
    workers = [start_worker(mongo_url, mode, "--log-level", "warning")]
    try:
        trials = hyperfleet.MongoTrials(mongo_url, exp_key="flaky")
        fmin(flaky, hp.uniform("x", -1, 1), algo=rand.suggest, max_evals=6, trials=trials,
             rstate=__import__("numpy").random.default_rng(3), show_progressbar=False)
        errors = list(trials.store.jobs.find({"state": JOB_STATE_ERROR}))
        # as in hyperopt, a failed trial counts toward max_evals of the run
        assert trials.count_by_state_unsynced(JOB_STATE_DONE) + len(errors) == 6
        assert errors and len(errors) < 6, "the seed gives both signs of x"
        for doc in errors:
            assert doc["error"][0] == "<class 'ValueError'>"
            assert "negative x=" in doc["error"][1]
            assert "Traceback" in doc["hyperfleet"]["traceback"] and "in flaky" in doc["hyperfleet"]["traceback"]
        assert workers[0].poll() is None
    finally:
        stop_all(workers)


@pytest.mark.timeout(120)
def test_subprocesses_give_each_trial_a_fresh_process_and_survive_one_that_dies(mongo_url):
    from tests.objectives import calls_in_this_process, exits_without_a_result

    worker = start_worker(mongo_url, "--subprocesses", "--log-level", "warning")
    try:
        trials = hyperfleet.MongoTrials(mongo_url, exp_key="fresh")
        fmin(calls_in_this_process, hp.uniform("x", 0, 1), algo=rand.suggest, max_evals=5, trials=trials,
             show_progressbar=False)
        results = [t["result"] for t in trials.trials]
        assert [r["loss"] for r in results] == [1.0] * 5  # nothing carried over from one trial to the next
        assert len({r["pid"] for r in results}) == 5 and worker.pid not in {r["pid"] for r in results}
        trials = hyperfleet.MongoTrials(mongo_url, exp_key="dies")
        with pytest.raises(Exception, match="no evaluation tasks"):  # every trial failed
            fmin(exits_without_a_result, hp.choice("x", [1]), algo=rand.suggest, max_evals=2, trials=trials,
                 show_progressbar=False)
        errors = list(trials.store.jobs.find({"exp_key": "dies"}))
        assert [d["state"] for d in errors] == [JOB_STATE_ERROR] * 2
        assert all("evaluation process exited with code 3" in d["error"][1] for d in errors), errors[0]["error"]
        assert worker.poll() is None
    finally:
        assert stop_all([worker]) == [0]


def insert_trials(store, exp_key, cmd, count):
    tids = store.allocate_tids(count)
    store.insert_trials([
        {"state": JOB_STATE_NEW, "tid": t, "spec": None, "result": {"status": "new"},
         "misc": {"tid": t, "cmd": cmd, "workdir": None, "idxs": {}, "vals": {}},
         "exp_key": exp_key, "owner": None, "book_time": None, "refresh_time": None}
        for t in tids
    ])


# a pickle (protocol 0 GLOBAL) of a function from a module that worker processes cannot import
PICKLE_FROM_A_MISSING_MODULE = b"cmodule_only_the_driver_has\nobjective\n."


@pytest.mark.parametrize(
    "cmd,blob,message",
    [
        (("domain_attachment", "FMinIter_Domain"), b"not a pickle", "cannot unpickle the experiment's domain"),
        (("domain_attachment", "FMinIter_Domain"), PICKLE_FROM_A_MISSING_MODULE, "module_only_the_driver_has"),
        (("domain_attachment", "FMinIter_Domain"), None, "attachment 'FMinIter_Domain' of experiment 'bad' not found"),
        (("token_load", "no_such_package.objective"), None, "cannot import 'no_such_package.objective'"),
        (("bandit_json evaluate", "x"), None, "unsupported trial command"),
    ],
)
@pytest.mark.parametrize("mode", ["--no-subprocesses", "--subprocesses"])
def test_an_objective_that_cannot_load_is_an_error_on_the_trial_not_a_crash(store, mongo_url, cmd, blob, message, mode):
    insert_trials(store, "bad", cmd, 3)
    if blob is not None:
        store.experiment_attachments("bad")["FMinIter_Domain"] = blob
    worker = start_worker(mongo_url, mode, "--max-jobs", "3", "--log-level", "warning")
    assert worker.wait(60) == 0  # it ran all three trials and exited by --max-jobs
    docs = list(store.jobs.find())
    assert [d["state"] for d in docs] == [JOB_STATE_ERROR] * 3
    assert all(message in d["error"][1] for d in docs), docs[0]["error"]


def test_unreachable_mongo_is_one_clear_line_and_a_bounded_exit():
    """Given 1 s, one clear line; given 6 s, the worker gives up 6 s after it began to connect (its own
    log's time of that, to its exit: the start-up before it varies by seconds on a loaded machine)."""
    url = f"mongodb://127.0.0.1:{free_port()}/db"
    quiet = start_worker(url, "--connect-timeout-seconds", "1", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logged = start_worker(url, "--connect-timeout-seconds", "6", "--log-level", "debug", "--log-json",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    error = quiet.communicate(timeout=60)[1]
    assert quiet.returncode == 1
    lines = error.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach MongoDB at {url} within 1s"), error
    lines = logged.communicate(timeout=60)[1].strip().splitlines()
    exited = datetime.datetime.now(datetime.timezone.utc)
    # the error line, and JSON log records (pymongo's threads may log after the error is printed)
    (error,) = [line for line in lines if not line.startswith("{")]
    assert logged.returncode == 1 and error.startswith(f"error: cannot reach MongoDB at {url} within 6s"), lines
    records = [json.loads(line) for line in lines if line.startswith("{")]
    (began,) = [datetime.datetime.fromisoformat(r["time"].replace("Z", "+00:00")) for r in records
                if r["message"].startswith("connecting to MongoDB at")]
    assert 5.9 <= (exited - began).total_seconds() < 12, (began, exited)  # pymongo alone would wait 30 s


def test_malformed_url_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "hyperfleet", "worker", "--mongo", "mongodb://host:port/db"],
                          env=worker_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "Invalid value for '--mongo'" in proc.stderr


def test_hyperopt_mongo_worker_entry_point_takes_stock_flags(store, mongo_url):
    """4 trials queued, --max-jobs 2: the worker runs 2 and exits (not on --reserve-timeout: trials wait)."""
    insert_trials(store, "stock", ("token_load", "tests.objectives.quadratic_trial"), 4)
    bare = mongo_url.removeprefix("mongodb://")  # hyperopt-mongo-worker's host:port/db form
    proc = subprocess.run(
        [sys.executable, "-c", "from hyperfleet.cli import mongo_worker_main; mongo_worker_main()",
         "--mongo", bare, "--exp-key", "stock", "--max-jobs", "2", "--poll-interval", "1",
         "--reserve-timeout", "10", "--max-consecutive-failures", "5", "--no-subprocesses"],
        env=worker_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert [(d["state"], d["result"].get("loss")) for d in store.jobs.find().sort("tid")] == \
        [(JOB_STATE_DONE, 9.0)] * 2 + [(JOB_STATE_NEW, None)] * 2


def test_reserve_timeout_exits_an_idle_worker_after_that_long(mongo_url):
    """From its first poll to its exit, by the worker's own log: the --reserve-timeout (0.5 s), not less,
    and not much more (idle polls are at most 0.05 s apart); start-up, however slow, is not counted."""
    proc = start_worker(mongo_url, "--reserve-timeout", "0.5", "--log-level", "info", stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    stamps = {event: datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
              for line in err.splitlines()
              for event, text in (("polling", " polling "), ("exit", "exiting: no trial to reserve for 0.5s")) if text in line}
    assert stamps.keys() == {"polling", "exit"}, err
    assert 0.5 <= (stamps["exit"] - stamps["polling"]).total_seconds() < 2.0, err


@pytest.mark.timeout(60)
def test_alive_file_is_touched_while_idle_and_the_probe_judges_its_age(mongo_url, tmp_path):
    alive = tmp_path / "alive"
    probe = [sys.executable, "-m", "hyperfleet", "alive", str(alive), "--max-age-seconds", "5"]
    missing = subprocess.run(probe, capture_output=True, text=True, env=worker_env())
    assert missing.returncode == 1 and "not alive" in missing.stderr
    worker = start_worker(mongo_url, "--alive-file", str(alive), "--log-level", "warning")
    try:
        deadline = time.monotonic() + 30
        while not alive.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        first = alive.stat().st_mtime
        # an idle worker's loop keeps turning
        assert wait_for(lambda: alive.stat().st_mtime > first, timeout=15), "the alive file was not touched again"
        assert subprocess.run(probe, env=worker_env()).returncode == 0
    finally:
        assert stop_all([worker]) == [0]
    stale = [sys.executable, "-m", "hyperfleet", "alive", str(alive), "--max-age-seconds", "0"]
    result = subprocess.run(stale, capture_output=True, text=True, env=worker_env())
    assert result.returncode == 1 and "last touched" in result.stderr


def test_an_alive_file_that_cannot_be_written_is_a_warning_not_a_crash(store, mongo_url, tmp_path):
    """A liveness probe's file in a missing directory (a mount that is not there): the worker says so
    and goes on running trials; the probe, not the worker, decides what that means."""
    insert_trials(store, "probe", ("token_load", "tests.objectives.quadratic_trial"), 2)
    unwritable = tmp_path / "not-mounted" / "alive"
    proc = subprocess.run([sys.executable, "-m", "hyperfleet", "worker", "--mongo", mongo_url, "--exp-key", "probe",
                           "--max-jobs", "2", "--alive-file", str(unwritable), "--log-level", "warning"],
                          env=worker_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [d["state"] for d in store.jobs.find()] == [JOB_STATE_DONE] * 2
    assert f"cannot touch the alive file {unwritable}" in proc.stderr


def _children(pid: int) -> list[str]:
    """The command lines of ``pid``'s child processes."""
    import pathlib

    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
            if ppid == pid:
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
    return found


def test_only_a_subprocesses_worker_starts_the_forkserver_and_before_its_first_trial(mongo_url, tmp_path):
    """--subprocesses: the server that forks each trial's process runs (its imports done) while the worker
    still waits for work; in-process, no such process is started at all."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (child_mode,) = start_polling_workers(mongo_url, 1, tmp_path / "a", "--subprocesses", "--log-level", "warning")
    (in_process,) = start_polling_workers(mongo_url, 1, tmp_path / "b", "--no-subprocesses", "--log-level", "warning")
    try:
        assert any("multiprocessing.forkserver" in c for c in _children(child_mode.pid)), _children(child_mode.pid)
        assert not any("multiprocessing" in c for c in _children(in_process.pid)), _children(in_process.pid)
    finally:
        assert stop_all([child_mode, in_process]) == [0, 0]


@pytest.mark.parametrize("preload,held", [((), "_Deferred"), (("--preload", "json,scipy.stats"), "module")])
def test_a_subprocesses_trial_finds_what_preload_names_loaded_and_scipy_stats_otherwise_deferred(store, preload, held):
    """The forkserver imports --preload in full before hyperopt; without it, hyperopt's scipy.stats is a stand-in
    there (the objective's first use loads it), so that a worker with children starts in a quarter of the CPU."""
    insert_trials(store, "preload", ("token_load", "tests.objectives.scipy_stats_trial"), 1)
    worker = start_worker(store.address.uri, "--subprocesses", *preload, "--max-jobs", "1", "--log-level", "warning")
    assert worker.wait(timeout=120) == 0
    (doc,) = store.jobs.find({"exp_key": "preload"})
    assert doc["state"] == JOB_STATE_DONE and doc["result"]["scipy_stats"] == held, doc["result"]


def _queue_xs(store, exp_key, xs):
    tids = store.allocate_tids(len(xs))
    store.insert_trials([
        {"state": JOB_STATE_NEW, "tid": t, "spec": None, "result": {"status": "new"},
         "misc": {"tid": t, "cmd": ("token_load", "tests.objectives.fails_below_zero_trial"), "workdir": None,
                  "idxs": {"x": [t]}, "vals": {"x": [x]}},
         "exp_key": exp_key, "owner": None, "book_time": None, "refresh_time": None}
        for t, x in zip(tids, xs, strict=True)])


def _worker_limits(mongo_url, exp_key, **limits):
    """A worker with these limits, in a thread of this process (the loop and its limits are the same
    code as the command's; no interpreter start per case); returns its exit code."""
    import threading

    from hyperfleet.settings import WorkerSettings
    from hyperfleet.worker import run_worker

    settings = WorkerSettings(mongo_url=mongo_url, exp_key=exp_key, reserve_timeout_seconds=2, **limits)
    codes = []
    thread = threading.Thread(target=lambda: codes.append(run_worker(settings)), daemon=True)
    thread.start()
    thread.join(60)
    assert codes, "the worker did not exit within 60 s"
    return codes[0]


def _states(store, exp_key):
    return [d["state"] for d in store.jobs.find({"exp_key": exp_key}).sort("tid")]


def test_a_run_of_failures_stops_the_worker_and_a_success_resets_the_count(store, mongo_url):
    _queue_xs(store, "fails", [-1, 1, -1, -1, -1, 1])
    assert _worker_limits(mongo_url, "fails", max_consecutive_failures=2) == 0
    E, D, N = JOB_STATE_ERROR, JOB_STATE_DONE, JOB_STATE_NEW
    assert _states(store, "fails") == [E, D, E, E, N, N]
    _queue_xs(store, "first", [-1, -1, -1])  # a run from the worker's first trial on
    assert _worker_limits(mongo_url, "first", max_consecutive_failures=2) == 0
    assert _states(store, "first") == [E, E, N]


def test_max_jobs_in_db_counts_every_document_and_stops_at_the_limit(store, mongo_url):
    _queue_xs(store, "full", [1, 2, 3])
    assert _worker_limits(mongo_url, "full", max_jobs_in_db=3) == 0
    assert _states(store, "full") == [JOB_STATE_NEW] * 3  # 3 documents: the limit, nothing run
    assert _worker_limits(mongo_url, "full", max_jobs_in_db=4) == 0
    assert _states(store, "full") == [JOB_STATE_DONE] * 3


def test_a_last_job_timeout_reserves_nothing_once_passed(store, mongo_url):
    _queue_xs(store, "late", [1, 2])
    assert _worker_limits(mongo_url, "late", last_job_timeout_seconds=0) == 0
    assert _states(store, "late") == [JOB_STATE_NEW] * 2
    assert _worker_limits(mongo_url, "late", last_job_timeout_seconds=3600, max_jobs=1) == 0
    assert _states(store, "late") == [JOB_STATE_DONE, JOB_STATE_NEW]


def test_a_workdir_the_worker_created_is_kept_after_its_trials(store, mongo_url, tmp_path):
    """--workdir: what the objectives leave there stays (only hyperopt's own mongo worker, through
    hyperfleet.mongoexp, erases a directory it created); the worker returns to where it started."""
    import os

    workdir = tmp_path / "made-by-the-worker"
    start = os.getcwd()
    _queue_xs(store, "wd", [1, 2])
    assert _worker_limits(mongo_url, "wd", workdir=str(workdir), max_jobs=2) == 0
    assert _states(store, "wd") == [JOB_STATE_DONE] * 2
    assert workdir.is_dir() and os.getcwd() == start


@pytest.mark.parametrize("mode", ["--no-subprocesses", "--subprocesses"])
@pytest.mark.parametrize("given,visible", [(None, "1"), ("1", "0")], ids=["on-the-host", "in-a-container-given-it"])
def test_a_worker_pinned_to_a_gpu_records_it_and_its_objectives_see_only_that_gpu(store, mongo_url, mode, given, visible):
    """--gpu 1: each trial records gpu 1; an in-process objective sees CUDA_VISIBLE_DEVICES=1 on the host, and 0
    in a container the toolkit gave GPU 1 alone (its NVIDIA_VISIBLE_DEVICES=1), where CUDA numbers it 0."""
    insert_trials(store, "gpu", ("token_load", "tests.objectives.visible_gpus_trial"), 2)
    env = {k: v for k, v in worker_env().items() if k not in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")}
    if given:
        env["NVIDIA_VISIBLE_DEVICES"] = given
    proc = subprocess.run([sys.executable, "-m", "hyperfleet", "worker", "--mongo", mongo_url, "--exp-key", "gpu",
                           "--gpu", "1", "--max-jobs", "2", mode], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    trials = list(store.jobs.find({"exp_key": "gpu"}).sort("tid"))
    assert [(t["state"], t["hyperfleet"]["worker"]["gpu"], t["result"]["cuda_visible_devices"],
             t["result"]["nvidia_visible_devices"]) for t in trials] == [(JOB_STATE_DONE, "1", visible, given)] * 2


def test_a_bad_gpu_is_a_usage_error_naming_the_option(mongo_url):
    proc = subprocess.run([sys.executable, "-m", "hyperfleet", "worker", "--mongo", mongo_url, "--gpu", "all"],
                          env=worker_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--gpu" in proc.stderr and "'all'" in proc.stderr, proc.stderr


HEARTBEAT_THEN_DIE = """
import os
from hyperfleet.store import JobStore
from hyperfleet.worker import Heartbeat
store = JobStore.connect(os.environ["TEST_MONGO_URL"])
Heartbeat(store, store.jobs.find_one()["_id"], "w", 0.1).start()
raise SystemExit("the main thread ends mid-trial")
"""


def test_a_worker_whose_main_thread_ends_mid_trial_is_not_kept_alive_by_its_heartbeat(store, mongo_url):
    """The heartbeat is a daemon thread: a worker process whose main thread ends mid-trial (a fault of ours)
    exits, and its trial's heartbeats stop, so the monitor recovers the trial. A heartbeat that kept the
    process alive would keep the trial its own forever."""
    insert_trials(store, "die", ("token_load", "tests.objectives.quadratic_trial"), 1)
    store.reserve("w", {}, "die")
    result = subprocess.run([sys.executable, "-c", HEARTBEAT_THEN_DIE], capture_output=True, text=True, timeout=60,
                            env=worker_env(TEST_MONGO_URL=mongo_url))  # not on the command line a timeout prints
    assert (result.returncode, result.stderr.strip().splitlines()[-1]) == (1, "the main thread ends mid-trial")


def test_the_heartbeat_keeps_advancing_all_through_a_trial_and_the_worker_records_it(store, mongo_url):
    """A 2 s trial under a 0.1 s heartbeat: its refresh_time advances again and again (each beat finds the
    trial still the worker's) and the worker records its result. A beat taken for "no longer yours" would
    make the worker abandon the trial, left RUNNING for the monitor."""
    tid = enqueue_slow_trial(store, "beats", sleep=2.0)
    worker = start_worker(mongo_url, "--exp-key", "beats", "--heartbeat-seconds", "0.1", "--max-jobs", "1")
    beats = set()

    def done():
        doc = store.jobs.find_one({"tid": tid})
        if doc["state"] == JOB_STATE_RUNNING:
            beats.add(doc["refresh_time"])
        return doc["state"] == JOB_STATE_DONE and doc
    try:
        doc = wait_for(done, timeout=60, step=0.05)
        assert worker.wait(timeout=30) == 0
    finally:
        stop_all([worker])
    assert doc["result"]["status"] == "ok" and "history" not in doc.get("hyperfleet", {}), doc
    assert len(beats) >= 5, beats  # about 20 beats in 2 s; sampled every 0.05 s, loaded machine included
