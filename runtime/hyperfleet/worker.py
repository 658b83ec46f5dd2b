"""The worker: reserve a trial, heartbeat while the objective runs, write the result, repeat.

Shutdown follows one ladder: the first SIGTERM or SIGINT stops reservations and hands the running
trial back (state NEW, owner cleared, the hand-back counted with its reason) and the worker exits
within ``shutdown_deadline_seconds``; a second signal exits at once (``shutdown.py`` says how the
signals are caught). The objective runs in a thread (or a child process with ``use_subprocesses``), so
the main thread is free to hand the trial back.

A trial's child process forks from a server process that imported hyperopt once (multiprocessing's
forkserver, started with the worker): a fresh process per trial, whose memory the system takes back
when it exits, without a fresh interpreter's start-up (about a second of CPU importing hyperopt), and
not a fork of the worker itself, whose threads (heartbeat, MongoDB's monitors) could hold locks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import pickle
import shutil
import socket
import tempfile
import threading
import time
from typing import Any

from hyperopt import base
from pymongo.errors import ConnectionFailure, InvalidDocument, OperationFailure, PyMongoError

from .contract import CUDA_VISIBLE_DEVICES_ENV, NODE_NAME_ENV, NVIDIA_VISIBLE_DEVICES_ENV, POD_NAME_ENV, POD_NAMESPACE_ENV
from .evaluation import ChildDied, ObjectiveLoader, ObjectiveUnavailable, Outcome, run_job_file
from .liveness import container_name, docker_engine, process_start_ticks
from .objectives import remove_owned_trials
from .objectives.abandoned import abandon
from .pruning import TrialPruned, TrialReporter, reporting
from .settings import IDLE_POLL_FRACTION, WorkerSettings
from .shutdown import watch_stop_signals
from .store import JobStore, OutageLog

log = logging.getLogger("hyperfleet.worker")

# How long a result write keeps retrying while MongoDB is unreachable before it leaves the trial to
# the monitor (the heartbeat stops, so the trial is recovered as orphaned).
RESULT_WRITE_RETRY_SECONDS = 120.0
_WAIT_STEP_SECONDS = 0.05
#: how long a pruned --subprocesses child has to end on its own (TrialPruned from its report) before
#: it is killed: time for a container objective's child to remove its container and hand over the log
#: it followed (0.5 s lost that log now and then on a loaded machine)
PRUNED_CHILD_GRACE_SECONDS = 2.0
#: where --subprocesses children come from: forked by a server that has imported what they need
_CHILDREN = multiprocessing.get_context("forkserver")


def forkserver_preload(modules: tuple[str, ...]) -> list[str]:
    """What the forkserver imports, in order: the user's modules (``--preload``) in full, then
    hyperfleet.evaluation with the imports no trial uses deferred, as in the worker (hyperfleet.lean)."""
    return [*modules, "hyperfleet.lean", "hyperfleet.evaluation"]


_CHILDREN.set_forkserver_preload(forkserver_preload(()))  # Worker.run sets the worker's --preload


class SharedWorkdir:
    """The directory in-process objectives run in. ``chdir`` changes it for every thread, so when
    several threads evaluate trials (hyperopt's MongoWorker threads), the first one in enters the
    directory, the last one out returns, and a thread that wants another directory waits."""

    def __init__(self):
        self._cond = threading.Condition()
        self._path: str | None = None
        self._users = 0
        self._return_to = ""
        self._created = self._erase = False

    @contextlib.contextmanager
    def inside(self, path: str, erase_if_created: bool = False):
        with self._cond:
            self._cond.wait_for(lambda: self._users == 0 or self._path == path)
            if self._users == 0:
                self._return_to, self._created = os.getcwd(), not os.path.isdir(path)
                os.makedirs(path, exist_ok=True)
                os.chdir(path)
                self._path, self._erase = path, False
            self._users += 1
            self._erase = self._erase or erase_if_created
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                if self._users == 0:
                    os.chdir(self._return_to)
                    if self._created and self._erase:
                        shutil.rmtree(path, ignore_errors=True)
                    self._path = None
                    self._cond.notify_all()


WORKDIR = SharedWorkdir()


class TrialOutcome(enum.Enum):
    DONE = "done"
    ERROR = "error"
    HANDED_BACK = "handed back"
    LOST = "lost"  # taken from this worker (reaped) or not writable


def worker_identity(gpu: str | None = None) -> dict[str, Any]:
    """Who holds a trial; the monitor uses these fields to check the holder is still alive. Also where
    it runs: its Docker host (``engine``) or Kubernetes node (``node``), and its GPU (``gpu``, see :func:`own_gpu`)."""
    pid = os.getpid()
    identity: dict[str, Any] = {"host": socket.gethostname(), "pid": pid, "pid_start": process_start_ticks(pid)}
    container = container_name()
    if container:
        identity["container"] = container
        engine = docker_engine()
        if engine:
            identity["engine"] = engine
    for key, env in (("pod", POD_NAME_ENV), ("namespace", POD_NAMESPACE_ENV), ("node", NODE_NAME_ENV)):
        if os.environ.get(env):
            identity[key] = os.environ[env]
    gpu = own_gpu(gpu)
    if gpu:
        identity["gpu"] = gpu
    return identity


def own_gpu(pinned: str | None) -> str | None:
    """The GPU(s) this worker runs on, as the host names them: ``--gpu``, else what the NVIDIA Container
    Toolkit says it gave this container (a Kubernetes pod given GPUs by the device plugin), else None."""
    if pinned is not None:
        return pinned
    given = os.environ.get(NVIDIA_VISIBLE_DEVICES_ENV, "")
    return given if given and given not in ("all", "none", "void") else None


def pin_gpu(gpu: str) -> str:
    """Make ``gpu`` the only GPU this process's objectives see (CUDA_VISIBLE_DEVICES, before any of them
    starts CUDA); returns the value set. In a container given that GPU alone (the toolkit set
    NVIDIA_VISIBLE_DEVICES to it), CUDA numbers it 0 there; on the host itself, by its own id."""
    visible = "0" if os.environ.get(NVIDIA_VISIBLE_DEVICES_ENV) == gpu else gpu
    os.environ[CUDA_VISIBLE_DEVICES_ENV] = visible
    return visible


class Ctrl(base.Ctrl):
    """The ``ctrl`` an in-process objective gets: checkpoints and attachments go to the store."""

    def __init__(self, store: JobStore, trial: dict, owner: str):
        from .trials import MongoTrials  # the trials module imports hyperopt.fmin; keep it lazy

        super().__init__(MongoTrials(store, exp_key=trial.get("exp_key"), refresh=False), current_trial=trial)
        self._store, self._owner = store, owner

    def checkpoint(self, result=None):
        self._store.checkpoint(self.current_trial["_id"], self._owner, None if result is None else base.SONify(result))

    @property
    def attachments(self):
        return self._store.trial_attachments(self.current_trial)


class Heartbeat(threading.Thread):
    """Advances the trial's ``refresh_time`` until stopped; notices when the trial was taken away."""

    def __init__(self, store: JobStore, trial_id, owner: str, interval_seconds: float):
        super().__init__(name="hyperfleet-heartbeat", daemon=True)
        self._store, self._trial_id, self._owner = store, trial_id, owner
        self._interval = interval_seconds
        self._stopped = threading.Event()
        self.lost = threading.Event()

    def run(self):
        outage = OutageLog(log, "heartbeat")
        while not self._stopped.wait(self._interval):
            try:
                if not self._store.heartbeat(self._trial_id, self._owner):
                    self.lost.set()
                    return
                outage.succeeded()
            except PyMongoError as err:
                outage.failed(err)

    def stop(self):
        self._stopped.set()


def next_idle_wait(wait: float, idle_seconds: float, settings: WorkerSettings) -> float:
    """The wait after an attempt that found no trial, ``idle_seconds`` into the worker's idle spell: ``wait``
    doubled, up to ``poll_interval_seconds``, or, once the spell is long, up to IDLE_POLL_FRACTION of it and
    at most ``idle_poll_interval_seconds``."""
    spell = min(idle_seconds * IDLE_POLL_FRACTION, settings.idle_poll_interval_seconds)
    return min(wait * 2, max(settings.poll_interval_seconds, spell))


class Worker:
    def __init__(self, store: JobStore, settings: WorkerSettings):
        self.store = store
        self.settings = settings
        self.identity = worker_identity(settings.gpu)
        self.owner = f"{self.identity['host']}:{self.identity['pid']}"
        self.loader = ObjectiveLoader(store)
        self._stop = threading.Event()
        self._stop_reason = ""
        self.jobs_done = 0
        self.reserve_timed_out = False  # the loop ended because no trial came in reserve_timeout_seconds
        self._outage = OutageLog(log, "reserving trials")
        self.workdir = os.path.abspath(settings.workdir) if settings.workdir else None
        self.erase_created_workdir = False  # remove the workdir after the trial if the trial created it
        self._touched = 0.0

    # -- signals ------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        watch_stop_signals(self._on_stop_signal, self.settings.shutdown_deadline_seconds)

    def _on_stop_signal(self, name: str) -> None:
        log.info("%s received: handing back the running trial and exiting", name)
        self.request_stop(f"worker shutdown ({name})")

    def request_stop(self, reason: str) -> None:
        self._stop_reason = reason
        self._stop.set()

    # -- the loop -----------------------------------------------------------------------------

    def _still_alive(self) -> None:
        """Advance ``alive_file`` (at most once a second): the loop is turning, idle or in a trial."""
        path, now = self.settings.alive_file, time.monotonic()
        if not path or now - self._touched < 1.0:
            return
        self._touched = now
        try:
            with open(path, "a"):
                os.utime(path)
        except OSError as err:
            log.warning("cannot touch the alive file %s: %s", path, err)

    def run(self) -> int:
        log.info("worker %s polling %s (experiment %s)", self.owner, self.store.address.redacted(),
                 self.settings.exp_key or "any")
        if self.settings.use_subprocesses:
            _CHILDREN.set_forkserver_preload(forkserver_preload(self.settings.preload))
            multiprocessing.forkserver.ensure_running()  # its imports now, not at the first trial
        return self._loop()

    def _loop(self) -> int:
        s = self.settings
        started = idle_since = time.monotonic()
        wait = s.poll_min_seconds
        consecutive_failures = 0
        while not self._stop.is_set():
            self._still_alive()
            stop_because = self._limit_reached(started, consecutive_failures)
            if stop_because:
                log.info("exiting: %s", stop_because)
                break
            try:
                doc = self.store.reserve(self.owner, self.identity, s.exp_key)
                self._outage.succeeded()
            except PyMongoError as err:
                self._outage.failed(err)
                self._stop.wait(min(5.0, max(wait, 0.5)))
                continue
            if doc is None:
                if s.reserve_timeout_seconds is not None and time.monotonic() - idle_since > s.reserve_timeout_seconds:
                    log.info("exiting: no trial to reserve for %gs", s.reserve_timeout_seconds)
                    self.reserve_timed_out = True
                    break
                self._stop.wait(wait)
                wait = next_idle_wait(wait, time.monotonic() - idle_since, s)
                continue
            wait = s.poll_min_seconds
            outcome = self.run_trial(doc)
            idle_since = time.monotonic()
            if outcome in (TrialOutcome.DONE, TrialOutcome.ERROR):
                self.jobs_done += 1
                consecutive_failures = consecutive_failures + 1 if outcome is TrialOutcome.ERROR else 0
        return 0

    def _limit_reached(self, started: float, consecutive_failures: int) -> str | None:
        s = self.settings
        if s.max_jobs is not None and self.jobs_done >= s.max_jobs:
            return f"ran {self.jobs_done} trials (max jobs)"
        if s.last_job_timeout_seconds is not None and time.monotonic() - started > s.last_job_timeout_seconds:
            return f"last job timeout of {s.last_job_timeout_seconds:g}s passed"
        if s.max_consecutive_failures is not None and consecutive_failures >= s.max_consecutive_failures:
            return f"{consecutive_failures} consecutive trials failed"
        if s.max_jobs_in_db is not None:
            count = self.store.count_all()
            if count >= s.max_jobs_in_db:
                return f"{count} jobs in the database (max jobs in db {s.max_jobs_in_db})"
        return None

    # -- one trial ----------------------------------------------------------------------------

    def run_trial(self, doc: dict) -> TrialOutcome:
        trial_id, tid = doc["_id"], doc["tid"]
        log.info("trial %s (%s) reserved", tid, doc.get("exp_key"))
        heartbeat = Heartbeat(self.store, trial_id, self.owner, self.settings.heartbeat_seconds)
        heartbeat.start()
        reporter = TrialReporter(self.store, doc, self.owner)  # hyperfleet.report() of this trial
        try:
            try:
                if self.settings.use_subprocesses:
                    outcome = self._evaluate_in_child(doc, heartbeat, reporter)
                else:
                    outcome = self._evaluate_in_thread(doc, heartbeat, reporter)
            except Exception as err:  # a fault of ours or of the machine: the trial's error, not a crash
                log.exception("trial %s could not be evaluated", tid)
                outcome = Outcome.from_exception(err)
            if isinstance(outcome, TrialOutcome):
                removed = remove_owned_trials(self.owner)  # a container objective's trial container
                if removed:
                    log.info("removed %d trial container(s) of the abandoned trial %s", removed, tid)
                return outcome
            return self._record(doc, outcome, reporter)
        finally:
            heartbeat.stop()

    def _interrupted(self, doc: dict, heartbeat: Heartbeat) -> TrialOutcome | None:
        """Hand the trial back on shutdown; give it up if the store says it is no longer ours."""
        self._still_alive()
        if self._stop.is_set():
            try:
                handed = self.store.hand_back(doc["_id"], self.owner, self._stop_reason)
            except PyMongoError as err:
                log.error("could not hand trial %s back (the monitor will recover it): %s", doc["tid"], err)
                return TrialOutcome.LOST
            log.info("trial %s %s: %s", doc["tid"], "handed back" if handed else "was no longer ours", self._stop_reason)
            return TrialOutcome.HANDED_BACK if handed else TrialOutcome.LOST
        if heartbeat.lost.is_set():
            log.warning("trial %s was taken from this worker (reaped?); abandoning it", doc["tid"])
            return TrialOutcome.LOST
        return None

    def _evaluate_in_thread(self, doc: dict, heartbeat: Heartbeat, reporter: TrialReporter) -> Outcome | TrialOutcome:
        box: list[Outcome] = []
        done = threading.Event()

        def evaluate():
            try:
                fn = self.loader.function(doc)
                ctrl = Ctrl(self.store, doc, self.owner)
                workdir = self.workdir
                with WORKDIR.inside(workdir, self.erase_created_workdir) if workdir else contextlib.nullcontext(), \
                        reporting(reporter):
                    result = base.SONify(fn(base.spec_from_misc(doc["misc"]), ctrl))
                attachments = result.pop("attachments", None) or {}
                box.append(Outcome(result=result, attachments=attachments))
            except BaseException as err:  # noqa: BLE001 - every failure of the objective is the trial's ERROR
                box.append(Outcome.from_exception(err))
            finally:
                done.set()

        thread = threading.Thread(target=evaluate, name=f"hyperfleet-trial-{doc['tid']}", daemon=True)
        thread.start()
        while not done.wait(_WAIT_STEP_SECONDS):
            interrupted = self._interrupted(doc, heartbeat)
            if interrupted:
                abandon(thread)  # a trial container it is creating now is then in run_trial's removal
                return interrupted
        return box[0]

    def _evaluate_in_child(self, doc: dict, heartbeat: Heartbeat, reporter: TrialReporter) -> Outcome | TrialOutcome:
        """The trial in a child process. The child's ``hyperfleet.report`` sends each value here over a
        pipe and waits for the answer: this process stores and judges it (it holds the connection and
        the trial); when the trial is pruned, the child is told (its report raises TrialPruned), given
        ``PRUNED_CHILD_GRACE_SECONDS`` to end, then killed, and its trial containers removed."""
        try:
            job = self.loader.job(doc, self.workdir)
        except ObjectiveUnavailable as err:
            return Outcome.from_exception(err)
        with tempfile.TemporaryDirectory(prefix="hyperfleet-trial-") as tmp:
            in_path, out_path = os.path.join(tmp, "job.pkl"), os.path.join(tmp, "outcome.pkl")
            with open(in_path, "wb") as f:
                pickle.dump(job, f)
            reports, child_end = _CHILDREN.Pipe()
            child = _CHILDREN.Process(target=run_job_file, args=(in_path, out_path, child_end),
                                      name=f"hyperfleet-trial-{doc['tid']}")
            child.start()
            child_end.close()
            try:
                while True:
                    multiprocessing.connection.wait([child.sentinel, reports], _WAIT_STEP_SECONDS)
                    if self._answer_reports(reports, reporter):
                        child.join(PRUNED_CHILD_GRACE_SECONDS)
                        break
                    if child.exitcode is not None:
                        break
                    interrupted = self._interrupted(doc, heartbeat)
                    if interrupted:
                        return interrupted
            finally:
                if child.exitcode is None:
                    child.kill()
                    child.join()
                code = child.exitcode
                child.close()
                reports.close()
            if reporter.pruned is not None:
                removed = remove_owned_trials(self.owner)  # what the killed child left running
                if removed:
                    log.info("removed %d trial container(s) of the pruned trial %s", removed, doc["tid"])
                if not os.path.exists(out_path):  # killed: its attachments (a container's log) are lost
                    return Outcome()
            elif not os.path.exists(out_path):
                return Outcome(error=(str(ChildDied), f"evaluation process exited with code {code}"),
                               traceback=f"the child process running the objective exited with code {code} "
                                         "without writing a result")
            with open(out_path, "rb") as f:
                return pickle.load(f)

    @staticmethod
    def _answer_reports(reports, reporter: TrialReporter) -> bool:
        """Store and judge what the child reported, answer each report; True once the trial is pruned."""
        while reports.poll():
            try:
                step, loss = reports.recv()
            except (EOFError, OSError):
                return False  # the child exited (the only way its end closes): the caller sees it
            try:
                reporter.report(step, loss)
            except TrialPruned:
                reports.send(True)
                return True
            except (TypeError, ValueError):  # checked in the child already
                log.exception("trial %s: a report from the child could not be used", reporter.tid)
            reports.send(False)
        return False

    def _record(self, doc: dict, outcome: Outcome, reporter: TrialReporter | None = None) -> TrialOutcome:
        """Write the outcome, retrying while MongoDB is unreachable; a late result is dropped. A trial
        its rule pruned is recorded as pruned, whatever its objective did after the decision."""
        deadline = time.monotonic() + RESULT_WRITE_RETRY_SECONDS
        outage = OutageLog(log, f"recording trial {doc['tid']}")
        if reporter is not None and reporter.pruned is not None:
            outcome = dataclasses.replace(outcome, result=reporter.pruned_result(), error=None,
                                          pruned={k: reporter.pruned[k] for k in ("step", "rule", "at")})
        while True:
            try:
                written = self._write(doc, outcome)
                outage.succeeded()
                return written
            except ConnectionFailure as err:
                if time.monotonic() > deadline or self._stop.is_set():
                    log.error("could not record trial %s (the monitor will recover it): %s", doc["tid"], err)
                    return TrialOutcome.LOST
                outage.failed(err)
                time.sleep(1.0)

    def _write(self, doc: dict, outcome: Outcome) -> TrialOutcome:
        trial_id, tid = doc["_id"], doc["tid"]
        if outcome.attachments:  # kept whatever the outcome: a failed container's log explains it
            try:
                attachments = self.store.trial_attachments(doc)
                for name, blob in outcome.attachments.items():
                    attachments[name] = blob
            except (InvalidDocument, OperationFailure, TypeError, ValueError) as err:
                outcome = Outcome.from_exception(err)
        if outcome.pruned is not None:
            if self.store.finish_pruned(trial_id, self.owner, outcome.result, outcome.pruned):
                log.info("trial %s pruned at step %s: loss=%s", tid, outcome.pruned["step"], outcome.result["loss"])
                return TrialOutcome.DONE
            log.warning("trial %s pruned result discarded: the trial was taken from this worker", tid)
            return TrialOutcome.LOST
        if outcome.error is None:
            try:
                written = self.store.finish(trial_id, self.owner, outcome.result)
            except (InvalidDocument, OperationFailure, OverflowError, TypeError, ValueError) as err:
                # a result the database refuses (not BSON, too large, an int over 8 bytes, a str that is not
                # UTF-8, a value the server rejects)
                outcome = Outcome.from_exception(err)
            else:
                if written:
                    log.info("trial %s done: loss=%s", tid, outcome.result.get("loss"))
                    return TrialOutcome.DONE
                log.warning("trial %s result discarded: the trial was taken from this worker", tid)
                return TrialOutcome.LOST
        extra = doc.get("hyperfleet") or {}
        retry = extra.get("objective_failures", 0) < extra.get("retries", 0)
        if self.store.fail(trial_id, self.owner, outcome.error, outcome.traceback, retry=retry):
            log.warning("trial %s failed%s: %s: %s", tid, " (queued again)" if retry else "", *outcome.error)
            return TrialOutcome.ERROR
        log.warning("trial %s error discarded: the trial was taken from this worker", tid)
        return TrialOutcome.LOST


def run_worker(settings: WorkerSettings) -> int:
    """Connect, run the worker loop until a limit or a signal stops it, return the exit code."""
    if settings.gpu is not None:  # before the forkserver starts: --subprocesses children inherit it
        log.info("pinned to GPU %s (%s=%s)", settings.gpu, CUDA_VISIBLE_DEVICES_ENV, pin_gpu(settings.gpu))
    store = JobStore.connect(settings.mongo_url, timeout_seconds=settings.connect_timeout_seconds)
    try:
        worker = Worker(store, settings)
        if threading.current_thread() is threading.main_thread():
            worker.install_signal_handlers()
        return worker.run()
    finally:
        store.close()


