"""``hyperopt.mongoexp``'s public names on hyperfleet's store: one import line to change.

    from hyperopt.mongoexp import MongoTrials      # stock: pymongo 3 only
    from hyperfleet.mongoexp import MongoTrials    # the same names and signatures, on pymongo 4

``MongoTrials``, ``MongoJobs``, ``MongoWorker``, ``MongoCtrl``, ``main_worker_helper``,
``main_worker``, ``parse_url``, ``as_mongo_str`` and the exceptions keep hyperopt's signatures.
hyperopt's own tests of this module pass against it (``make test-hyperopt-suite``).

Where behaviour differs from stock, on purpose:

* ``MongoWorker.run_one`` evaluates the trial as ``hyperfleet worker`` does: it heartbeats the trial,
  and a failing objective is recorded as ERROR (with its traceback) instead of raised. It polls from
  50 ms up to ``poll_interval`` instead of sleeping 1 to ``poll_interval`` seconds. With no
  ``workdir``, the objective runs in the current directory rather than in a new ``<cwd>/<_id>``.
* ``MongoJobs`` wraps a :class:`~hyperfleet.store.JobStore`; build it with ``new_from_connection_str``
  or ``alloc`` (its constructor takes the store). ``ssh`` tunnels are not supported.
* ``main_worker_helper`` leaves the process's signal handlers alone; ``hyperfleet-mongo-worker``
  (the command line) handles SIGTERM/SIGINT as ``hyperfleet worker`` does.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import sys
import time
import urllib.parse
from typing import Any

from hyperopt import base

from .contract import MONGO_PORT
from . import trials as _trials
from .settings import WorkerSettings
from .store import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, JobStore

log = logging.getLogger("hyperfleet.mongoexp")

__all__ = [
    "DomainSwapError", "InvalidMongoTrial", "MongoCtrl", "MongoJobs", "MongoTrials", "MongoWorker",
    "OperationFailure", "ReserveTimeout", "Shutdown", "WaitQuit", "as_mongo_str", "main", "main_worker",
    "main_worker_helper", "parse_url",
]


class OperationFailure(Exception):
    """A database operation failed (hyperopt's wrapper of pymongo's)."""


class Shutdown(Exception):
    """The worker was asked to shut down."""


class WaitQuit(Exception):
    """The worker was asked to quit once its trial is done."""


class InvalidMongoTrial(base.InvalidTrial):
    pass


class DomainSwapError(Exception):
    """Raised when the search domain stored with an experiment does not match the one given."""


class ReserveTimeout(Exception):
    """No trial could be reserved within the reserve timeout."""


def parse_url(url: str, pwfile: str | None = None) -> tuple:
    """``protocol://[user[:pw]@]host[:port]/db/collection[?authSource=…]`` as hyperopt's tuple:
    ``(protocol, user, password, host, port, db, collection, auth_db)``. A user without a password
    in the URL reads it from the first line of ``pwfile``."""
    protocol, sep, _ = url.partition("://")
    if not sep:
        raise ValueError(f"not a URL: {url!r}")
    parsed = urllib.parse.urlsplit("ftp" + url[len(protocol):])
    try:
        _, database, collection = parsed.path.split("/")
    except ValueError:
        raise ValueError(f"expected /database/collection in {url!r}") from None
    auth = urllib.parse.parse_qs(parsed.query).get("authSource")
    password = parsed.password
    if password is None and parsed.username is not None and pwfile:
        with open(pwfile) as f:
            password = f.read()[:-1]
    return (protocol, parsed.username, password, parsed.hostname, int(parsed.port or MONGO_PORT), database, collection,
            auth[-1] if auth else None)


def as_mongo_str(s: str) -> str:
    return s if s.startswith("mongo://") else f"mongo://{s}"


def _as_store(arg) -> JobStore:
    if isinstance(arg, MongoJobs):
        return arg.store
    if isinstance(arg, JobStore):
        return arg
    return JobStore.connect(arg)


class MongoJobs:
    """The jobs collection and its GridFS, as hyperopt's ``MongoJobs`` exposes them."""

    def __init__(self, store: JobStore, config_name: str = "spec"):
        self.store = store
        self.config_name = config_name
        self.tunnel = None

    db = property(lambda self: self.store.db)
    jobs = property(lambda self: self.store.jobs)
    collection = jobs
    gfs = property(lambda self: self.store.gfs)
    conn = property(lambda self: self.store.client)

    @classmethod
    def alloc(cls, dbname, host="localhost", auth_dbname="admin", port=MONGO_PORT, jobs_coll="jobs", gfs_coll="fs",
              ssh=False, user=None, pw=None) -> MongoJobs:
        if ssh:
            raise NotImplementedError("ssh tunnels: open one yourself (ssh -L) and connect to its local end")
        auth = ""
        if user:
            auth = urllib.parse.quote(user, safe="") + (f":{urllib.parse.quote(pw, safe='')}" if pw else "") + "@"
        query = f"?authSource={auth_dbname}" if user else ""
        return cls(JobStore.connect(f"mongo://{auth}{host}:{port}/{dbname}/{jobs_coll}{query}"))

    @classmethod
    def new_from_connection_str(cls, conn_str: str, gfs_coll: str = "fs", config_name: str = "spec") -> MongoJobs:
        if conn_str.startswith(("mongo+ssh://", "ssh+mongo://")):
            raise NotImplementedError("ssh tunnels: open one yourself (ssh -L) and connect to its local end")
        return cls(JobStore.connect(conn_str), config_name)

    def __iter__(self):
        return self.jobs.find()

    def __len__(self) -> int:
        return self.jobs.count_documents({})

    def create_jobs_indexes(self) -> None:
        self.store.ensure_indexes()

    def create_drivers_indexes(self) -> None:
        self.db.drivers.create_index("exp_key", unique=True)

    def create_indexes(self) -> None:
        self.create_jobs_indexes()
        self.create_drivers_indexes()

    def _in_state(self, state: int, cursor: bool):
        found = self.jobs.find({"state": state})
        return found if cursor else list(found)

    def jobs_complete(self, cursor=False):
        return self._in_state(JOB_STATE_DONE, cursor)

    def jobs_error(self, cursor=False):
        return self._in_state(JOB_STATE_ERROR, cursor)

    def jobs_queued(self, cursor=False):
        return self._in_state(JOB_STATE_NEW, cursor)

    def jobs_running(self, cursor=False):
        if cursor:
            raise NotImplementedError("jobs_running(cursor=True)")
        return [d for d in self.jobs.find({"state": JOB_STATE_RUNNING}) if not d.get("MIA", False)]

    def jobs_dead(self, cursor=False):
        if cursor:
            raise NotImplementedError("jobs_dead(cursor=True)")
        return [d for d in self.jobs.find({"state": JOB_STATE_RUNNING}) if d.get("MIA", False)]

    def insert(self, job: dict) -> dict:
        """Insert a copy of ``job``; return the copy, with its ``_id``."""
        doc = copy.deepcopy(job)
        try:
            self.jobs.insert_one(doc)
        except Exception as err:  # pymongo's OperationFailure and InvalidDocument alike
            raise OperationFailure(err) from err
        return doc

    def delete(self, job: dict) -> None:
        self.delete_all({"_id": job["_id"]})

    def delete_all(self, cond: dict | None = None) -> None:
        """Delete the jobs matching ``cond`` (all by default) and their attachments."""
        self.store.delete_trials(dict(cond or {}))

    def delete_all_error_jobs(self) -> None:
        self.delete_all({"state": JOB_STATE_ERROR})

    def reserve(self, host_id, cond: dict | None = None, exp_key: str | None = None) -> dict | None:
        """Take the oldest NEW job matching ``cond`` for ``host_id``; None when there is none."""
        if (cond or {}).get("owner") is not None:
            raise ValueError("refusing to reserve owned job")
        extra = {k: v for k, v in (cond or {}).items() if k not in ("owner", "state")}
        return self.store.reserve(owner_name(host_id), _identity(), exp_key, extra=extra)

    def refresh(self, doc: dict) -> None:
        self.jobs.update_one({"_id": doc["_id"]}, {"$currentDate": {"refresh_time": True}})

    def update(self, doc: dict, dct: dict, collection=None, do_sanity_checks=True) -> dict:
        """``$set`` the fields of ``dct`` on ``doc`` in the database and in ``doc``; bump its version."""
        if "_id" in dct or "version" in dct:
            raise ValueError("update() sets neither _id nor version")
        dct = copy.deepcopy(dct)
        version = doc.get("version", 0)
        coll = self.jobs if collection is None else collection
        updated = coll.update_one({"_id": doc["_id"], "version": version}, {"$set": dct, "$inc": {"version": 1}})
        if do_sanity_checks and updated.matched_count == 0:
            raise OperationFailure(f"job {doc['_id']} changed since version {version} was read")
        doc.update(dct)
        doc["version"] = version + 1
        return doc

    def attachment_names(self, doc: dict) -> list[str]:
        return list(self.store.trial_attachments(doc))

    def set_attachment(self, doc: dict, blob: bytes, name: str, collection=None) -> None:
        self.store.trial_attachments(doc)[name] = blob
        doc["_attachments"] = self.jobs.find_one({"_id": doc["_id"]}, {"_attachments": 1}).get("_attachments", [])

    def get_attachment(self, doc: dict, name: str) -> bytes:
        try:
            return self.store.trial_attachments(doc)[name]
        except KeyError:
            raise OperationFailure(f"attachment not found: {name}") from None

    def delete_attachment(self, doc: dict, name: str, collection=None) -> None:
        try:
            del self.store.trial_attachments(doc)[name]
        except KeyError:
            raise OperationFailure(f"attachment not found: {name}") from None


class MongoTrials(_trials.MongoTrials):
    """hyperfleet's ``MongoTrials`` (``hyperfleet.trials``) under hyperopt's constructor.

    ``arg`` is a connection string (``mongo://host:port/db/jobs`` or ``mongodb://…``) or a
    ``MongoJobs``; keyword options of hyperfleet's class (``poll_interval_seconds``, ``retries``…)
    pass through."""

    def __init__(self, arg, exp_key=None, cmd=None, workdir=None, refresh=True, **options):
        self._handle = arg if isinstance(arg, MongoJobs) else MongoJobs(_as_store(arg))
        self.cmd, self.workdir = cmd, workdir
        super().__init__(self._handle.store, exp_key, refresh, **options)

    @property
    def handle(self) -> MongoJobs:
        return self._handle

    def view(self, exp_key=None, cmd=None, workdir=None, refresh=True) -> MongoTrials:
        return MongoTrials(self._handle, self._exp_key if exp_key is None else exp_key,
                           self.cmd if cmd is None else cmd, self.workdir if workdir is None else workdir, refresh,
                           poll_interval_seconds=self.poll_interval_seconds, resync_seconds=self.resync_seconds,
                           retries=self.retries, pruning=self.pruning)

    def refresh_tids(self, tids) -> None:
        """Stock refreshes the given tids; this refreshes the whole view, which includes them."""
        self.refresh()

    def delete_all(self, cond: dict | None = None) -> None:
        if not cond:
            super().delete_all()
            return
        self.store.delete_trials(self._query(dict(cond)))
        self._reset_cache()
        self.refresh()


class MongoCtrl(base.Ctrl):
    """The ``ctrl`` an objective gets: checkpoints and attachments in the database."""

    def __init__(self, trials: MongoTrials, current_trial: dict, read_only: bool):
        self.trials = trials
        self.current_trial = current_trial
        self.read_only = read_only

    def debug(self, *args, **kwargs):
        return log.debug(*args, **kwargs)

    def info(self, *args, **kwargs):
        return log.info(*args, **kwargs)

    def warn(self, *args, **kwargs):
        return log.warning(*args, **kwargs)

    def error(self, *args, **kwargs):
        return log.error(*args, **kwargs)

    def checkpoint(self, result=None):
        if self.read_only:
            return None
        update: dict[str, Any] = {"$currentDate": {"refresh_time": True}}
        if result is not None:
            update["$set"] = {"result": base.SONify(result)}
        self.trials.store.jobs.update_one({"_id": self.current_trial["_id"]}, update)
        return None

    @property
    def attachments(self):
        return self.trials.trial_attachments(self.current_trial)

    @property
    def set_attachment(self):
        raise RuntimeError("set_attachment deprecated. Use `self.attachments[name] = value`")


def owner_name(host_id) -> str:
    """hyperopt's ``host_id`` (a string, a tuple such as ``("host", 3)``, or None) as an owner."""
    if host_id is None:
        return f"{socket.gethostname()}:{os.getpid()}"
    if isinstance(host_id, (tuple, list)):
        return ":".join(str(part) for part in host_id)
    return str(host_id)


def _identity() -> dict:
    from .worker import worker_identity  # the worker module loads the objective machinery

    return worker_identity()


class MongoWorker:
    poll_interval = 3.0  # seconds, the longest wait between two reservation attempts
    workdir = None

    def __init__(self, mj: MongoJobs, poll_interval=poll_interval, workdir=workdir, exp_key=None,
                 logfilename="logfile.txt"):
        self.mj = mj
        self.poll_interval = float(poll_interval)
        self.workdir = workdir
        self.exp_key = exp_key
        self.logfilename = logfilename
        self._worker = None

    def _hyperfleet_worker(self):
        if self._worker is None:
            from .worker import Worker

            workdir = os.path.expanduser(self.workdir) if self.workdir else None  # the Worker makes it absolute
            self._worker = Worker(self.mj.store, WorkerSettings(exp_key=self.exp_key, workdir=workdir,
                                                                poll_interval_seconds=self.poll_interval))
        return self._worker

    def run_one(self, host_id=None, reserve_timeout=None, erase_created_workdir=False) -> None:
        """Reserve one trial (waiting up to ``reserve_timeout`` seconds, else ``ReserveTimeout``)
        and evaluate it; the outcome, DONE or ERROR, is in the database when this returns."""
        worker = self._hyperfleet_worker()
        worker.owner = owner_name(host_id)
        started, wait = time.monotonic(), 0.05
        while True:
            doc = self.mj.store.reserve(worker.owner, worker.identity, self.exp_key)
            if doc is not None:
                break
            if reserve_timeout and time.monotonic() - started > reserve_timeout:
                raise ReserveTimeout()
            time.sleep(wait)
            wait = min(wait * 2, self.poll_interval)
        worker.erase_created_workdir = erase_created_workdir
        handler = self._log_handler()
        try:
            worker.run_trial(doc)
        finally:
            if handler:
                logging.getLogger().removeHandler(handler)
                handler.close()

    def _log_handler(self) -> logging.Handler | None:
        if not self.logfilename:
            return None
        handler = logging.FileHandler(self.logfilename)
        handler.setFormatter(logging.Formatter(fmt="%(levelname)s (%(name)s): %(message)s"))
        handler.setLevel(logging.INFO)
        logging.getLogger().addHandler(handler)
        return handler


def main_worker_helper(options, args) -> int:
    """Run trials as ``hyperopt-mongo-worker`` with these ``options`` (its optparse names) would:
    ``mongo``, ``exp_key``, ``max_jobs``, ``poll_interval``, ``reserve_timeout``, ``workdir``,
    ``last_job_timeout`` and, when present, ``max_consecutive_failures``, ``max_jobs_in_db`` and
    ``use_subprocesses``. Raises ``ReserveTimeout`` when no trial came within ``reserve_timeout``."""
    from .worker import Worker

    def option(name, convert=float):
        value = getattr(options, name, None)
        return None if value is None or value == sys.maxsize else convert(value)

    max_jobs = option("max_jobs", int)
    if max_jobs is not None and max_jobs <= 0:
        raise ValueError("N <= 0")
    settings = WorkerSettings(
        mongo_url=as_mongo_str(options.mongo),
        exp_key=getattr(options, "exp_key", None),
        poll_interval_seconds=option("poll_interval") or WorkerSettings.poll_interval_seconds,
        reserve_timeout_seconds=option("reserve_timeout"),
        last_job_timeout_seconds=option("last_job_timeout"),
        max_jobs=max_jobs,
        max_consecutive_failures=option("max_consecutive_failures", int),
        max_jobs_in_db=option("max_jobs_in_db", int),
        workdir=getattr(options, "workdir", None),
        use_subprocesses=bool(getattr(options, "use_subprocesses", False)),
    )
    store = JobStore.connect(settings.mongo_url, timeout_seconds=settings.connect_timeout_seconds)
    try:
        worker = Worker(store, settings)
        code = worker.run()
    finally:
        store.close()
    if worker.reserve_timed_out:
        raise ReserveTimeout()
    return code


def main_worker() -> None:
    """``hyperopt-mongo-worker``'s entry point: ``hyperfleet-mongo-worker``."""
    from .cli import mongo_worker_main

    mongo_worker_main()


main = main_worker
