"""The job store: hyperopt's trial documents in MongoDB, on pymongo 4.

Documents keep hyperopt's schema so hyperopt's own tools can read them:
``state`` (hyperopt's values, written once as :class:`hyperfleet.contract.TrialState`: NEW, RUNNING,
DONE, ERROR, and CANCEL for a queued trial withdrawn), ``tid`` from a global counter in the ``job_ids``
collection, ``exp_key``, ``owner``, ``book_time``, ``refresh_time``, ``spec``, ``result``, ``misc``,
``version``, ``error`` and GridFS attachments (``_attachments`` on a trial, or files named after the
attachment with an ``exp_key`` field for experiment-wide ones).

What hyperfleet adds lives under one sub-document, ``hyperfleet`` (see runtime/README.md):
``attempts``, ``requeues``, ``orphaned``, ``retries`` (how often the trial is queued again when its
objective failed, stamped when it is inserted), ``objective_failures``, ``worker``, ``history``,
``traceback``, ``domain_file_id``, ``queued_at`` (when the trial last entered the queue, by the
clock of whoever queued it: FerretDB can't ``$currentDate`` a nested field), ``pruning`` (the trial's
pruning rule, stamped when it is inserted), ``progress`` (its last reported value) and ``pruned`` (why
and when it was stopped early; see :mod:`hyperfleet.pruning`).

The values a trial reports while it runs are in the collection ``PROGRESS``, one document per
``(exp_key, tid, step)``: ``{exp_key, tid, step, loss, at}`` (and ``rungs``: the ASHA rungs that value
stands for), indexed so that the values at one step (or rung) of an experiment are one range read.

Every write that moves a trial out of RUNNING is conditional: a worker's on it still owning the
trial, the monitor's on the trial being exactly as its sweep read it. So a worker whose trial was
handed back or reaped can never overwrite what happened since, and a recovery never overwrites a
result or a newer heartbeat.
``book_time`` and ``refresh_time`` come from the database server's clock (``$currentDate``), so
heartbeat age does not depend on the clocks of the workers.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import gridfs
import pymongo
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, ConfigurationError, DuplicateKeyError, OperationFailure, PyMongoError, WriteError

from .contract import TrialState
from .mongo_url import MongoAddress, parse_mongo_url, parse_uri_user, redact_url
from .settings import CONNECT_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

# the trial states under hyperopt's names (contract.TrialState; plain ints, as documents store them)
JOB_STATE_NEW = int(TrialState.NEW)
JOB_STATE_RUNNING = int(TrialState.RUNNING)
JOB_STATE_DONE = int(TrialState.DONE)
JOB_STATE_ERROR = int(TrialState.ERROR)
JOB_STATE_CANCEL = int(TrialState.CANCEL)
JOB_STATES = tuple(int(s) for s in TrialState)
#: the states hyperopt's Trials shows in ``trials.trials`` (hyperopt.base.JOB_VALID_STATES)
JOB_VALID_STATES = (JOB_STATE_NEW, JOB_STATE_RUNNING, JOB_STATE_DONE)
#: the states a trial's ``state`` can have, by name (reports, status)
STATE_NAMES = {int(s): s.name.lower() for s in TrialState}

# The history of hand-backs kept on a trial is bounded so a flapping trial cannot grow without limit.
HISTORY_LIMIT = 20
#: a history entry's reason keeps this many characters at most (an objective's error message may be long)
HISTORY_REASON_LIMIT = 2000
# what `hyperfleet run` ran, by exp_key (its spec and max_evals), for status and reports
EXPERIMENTS = "hyperfleet_experiments"
#: the values trials report while they run (hyperfleet.report): one document per (exp_key, tid, step)
PROGRESS = "hyperfleet_progress"
# what the experiment metrics read of a finished trial
_TIMES = ["tid", "exp_key", "state", "book_time", "refresh_time", "hyperfleet.queued_at", "hyperfleet.pruned"]


#: how often an upsert that lost a race to create its document is tried in all. Clients that race to create
#: a fresh database's first document deadlock again and again when they come back together: with 5 tries
#: and waits of at most 0.02 s times the tries so far, 7 of the 8 clients of test_store's race failed under
#: load (and 2 runs of 6 with 10 tries); with these, 4 runs of 4 passed under the same load
UPSERT_ATTEMPTS = 10
#: the most a retried upsert waits before its next try, times the tries so far (a random share of it: clients
#: that deadlocked together do not all come back at once)
UPSERT_BACKOFF_SECONDS = 0.1


def upsert_conflict(err: PyMongoError) -> bool:
    """Did an upsert lose a race with another client's upsert of the same new document? mongod says so
    with DuplicateKeyError; DocumentDB (FerretDB 2) with code 1 and PostgreSQL's words for it."""
    if isinstance(err, DuplicateKeyError):
        return True
    return (isinstance(err, OperationFailure) and err.code == 1
            and any(words in str(err) for words in ("deadlock detected", "violates exclusion constraint")))


def retry_upsert(upsert: Callable[[], Any]) -> Any:
    """``upsert()``, again when it lost a race to create its document (the winner's document is there
    then, so the next attempt updates it), after a short random wait (a deadlock between racing clients
    recurs when they all try again at once)."""
    for attempt in range(1, UPSERT_ATTEMPTS):
        try:
            return upsert()
        except PyMongoError as err:
            if not upsert_conflict(err):
                raise
        time.sleep(random.uniform(0, UPSERT_BACKOFF_SECONDS * attempt))
    return upsert()


#: how many reads look for a handed-out trial id before giving it up (its trial may never be inserted)
HANDED_OUT_LOOKS = 3


class HandedOutIds:
    """Trial ids the ``job_ids`` counter handed out that a reader (the driver's refresh, the monitor's
    metrics) has not seen yet: a trial another client queued and that finished between two reads, one
    not inserted yet (a driver takes ids, suggests, then inserts), or one never inserted. Each is looked
    for at the next :data:`HANDED_OUT_LOOKS` reads, then given up."""

    def __init__(self):
        self._counter: int | None = None
        self._looks_left: dict[int, int] = {}

    def reset(self, counter: int) -> None:
        """The reader has read everything up to ``counter`` (a full read): nothing to look for."""
        self._counter, self._looks_left = counter, {}

    def note(self, counter: int, known: Callable[[int], bool]) -> None:
        """The counter as read now: the ids handed out since the last note are to be looked for, but
        not those ``known`` (seen already, or the reader's own), nor any noted before that are now."""
        if self._counter is not None:
            self._looks_left.update((tid, HANDED_OUT_LOOKS) for tid in range(self._counter, counter))
        self._counter = counter
        self.prune(known)

    def prune(self, known: Callable[[int], bool]) -> None:
        """Stop looking for the ids that are ``known`` now."""
        for tid in [t for t in self._looks_left if known(t)]:
            del self._looks_left[tid]

    def looking_for(self, tid: int) -> bool:
        """``tid`` was handed out since the first note and is not seen yet."""
        return tid in self._looks_left

    def lowest(self) -> int | None:
        """The lowest id to look for (a read of the tids from it on finds them), or None."""
        return min(self._looks_left, default=None)

    def looked(self, found: Callable[[int], bool]) -> None:
        """A read looked for them: those ``found`` and those looked for often enough are given up."""
        for tid in list(self._looks_left):
            self._looks_left[tid] -= 1
            if found(tid) or self._looks_left[tid] <= 0:
                del self._looks_left[tid]


class OutageLog:
    """Says that MongoDB is unreachable once, when it starts failing, and once when it answers again,
    instead of on every failed attempt (a worker polls many times a second)."""

    def __init__(self, logger: logging.Logger, activity: str):
        self._log, self._activity = logger, activity
        self._since: float | None = None

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, err: Exception) -> None:
        if self._since is None:
            self._since = time.monotonic()
            self._log.warning("%s: MongoDB unreachable, retrying until it answers: %s", self._activity, err)

    def succeeded(self) -> None:
        if self._since is not None:
            self._log.warning("%s: MongoDB answers again after %.1fs", self._activity, time.monotonic() - self._since)
            self._since = None


class StoreUnavailable(RuntimeError):
    """The database cannot be reached; the message names the address and the cause."""


class CredentialsRefused(StoreUnavailable):
    """The server answered and refused the credentials: retrying cannot help."""


def _refused(address: MongoAddress, err: OperationFailure) -> StoreUnavailable:
    """The server answered but refused: wrong credentials (mongod: code 18; FerretDB on PostgreSQL: its
    backend's "password authentication failed"), or a user without the rights."""
    text = str(err)
    if err.code in (13, 18) or "authentication failed" in text.lower():
        user = parse_uri_user(address.uri)
        return CredentialsRefused(f"MongoDB at {address.redacted()} refused the credentials"
                                f"{f' of user {user!r}' if user else ''}: authentication failed")
    return StoreUnavailable(f"MongoDB at {address.redacted()} refused the connection's first command: "
                            f"{redact_url(text.splitlines()[0])[:300]}")


class JobStore:
    """Reads and writes hyperopt trial documents in one database and jobs collection."""

    def __init__(self, client: pymongo.MongoClient, address: MongoAddress):
        self.client = client
        self.address = address
        self.db = client[address.database]
        self.jobs = self.db[address.collection]
        self.gfs = gridfs.GridFS(self.db)

    @classmethod
    def connect(cls, url: str | MongoAddress, *, timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
                check: bool = True) -> JobStore:
        """Connect and check the server answers within ``timeout_seconds`` (with ``check=False``, the
        first command finds out: for a reader that must start while the server is away)."""
        address = url if isinstance(url, MongoAddress) else parse_mongo_url(url)
        timeout_ms = max(1, int(timeout_seconds * 1000))
        log.debug("connecting to MongoDB at %s (giving up after %gs)", address.redacted(), timeout_seconds)
        try:
            client = pymongo.MongoClient(
                address.uri,
                serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms,
                appname="hyperfleet",
            )
        except ConfigurationError as err:  # e.g. an authMechanism without a user
            raise StoreUnavailable(f"cannot use the MongoDB address {address.redacted()}: {err}") from None
        if not check:
            return cls(client, address)
        try:
            client.admin.command("ping")
        except OperationFailure as err:
            client.close()
            raise _refused(address, err) from None
        except PyMongoError as err:
            client.close()
            reason = str(err).split(",")[0].split(" (configured timeouts")[0]
            raise StoreUnavailable(
                f"cannot reach MongoDB at {address.redacted()} within {timeout_seconds:g}s: {reason}"
            ) from None
        store = cls(client, address)
        try:  # the first command that touches the data: some servers check credentials only here
            store.ensure_indexes()
        except OperationFailure as err:
            client.close()
            raise _refused(address, err) from None
        return store

    def close(self) -> None:
        self.client.close()

    def ensure_indexes(self) -> None:
        # reserve: the oldest NEW trial of an experiment; counts by state
        self.jobs.create_index([("state", 1), ("exp_key", 1), ("tid", 1)])
        # the driver's refresh: trials of one experiment by tid
        self.jobs.create_index([("exp_key", 1), ("tid", 1)])
        # the monitor's sweep reads RUNNING trials through the state index above
        self.db.job_ids.create_index("a", unique=True)
        # reported values: one per trial and step (a trial run again overwrites its own), and a pruning
        # decision's read of the other trials' values at one step or ASHA rung
        self.db[PROGRESS].create_index([("exp_key", 1), ("tid", 1), ("step", 1)], unique=True)
        self.db[PROGRESS].create_index([("exp_key", 1), ("step", 1), ("loss", 1)])
        self.db[PROGRESS].create_index([("exp_key", 1), ("rungs", 1), ("loss", 1)])

    # -- time ---------------------------------------------------------------------------------

    def server_time(self) -> _dt.datetime:
        """The database server's clock (naive UTC, as pymongo returns dates)."""
        return self.db.command("hello")["localTime"]

    # -- driver side --------------------------------------------------------------------------

    def allocate_tids(self, count: int) -> list[int]:
        """Reserve ``count`` consecutive trial ids, unique across the whole database."""
        if count <= 0:
            return []
        before = retry_upsert(lambda: self.db.job_ids.find_one_and_update(
            {"a": 0}, {"$inc": {"last_id": count}}, upsert=True, return_document=ReturnDocument.BEFORE))
        first = (before or {}).get("last_id", 0)
        return list(range(first, first + count))

    def insert_trials(self, docs: Iterable[dict], retries: int = 0,
                      domain_ids: dict[tuple, ObjectId | None] | None = None, pruning: Mapping | None = None) -> list[dict]:
        """Insert NEW trials; returns the documents as inserted. Each trial that evaluates an experiment
        attachment (fmin's pickled domain) is stamped with that file's id, so workers need not look it
        up per trial (``domain_ids``: a cache of those ids by (name, exp_key) that the caller keeps
        across calls, one lookup per experiment instead of one per insert); ``retries`` is how often a
        worker runs a trial again whose objective failed; ``pruning`` the rule that may stop it early
        (normalised by :func:`hyperfleet.pruning.parse_rule`)."""
        prepared = []
        domain_ids = {} if domain_ids is None else domain_ids
        queued_at = _utcnow()
        for doc in docs:
            doc = dict(doc)
            doc.setdefault("version", 0)
            extra = {"attempts": 0, "requeues": 0, "retries": retries, "queued_at": queued_at}
            if pruning is not None:
                extra["pruning"] = dict(pruning)
            cmd = (doc.get("misc") or {}).get("cmd") or ()
            if len(cmd) == 2 and cmd[0] == "domain_attachment":
                key = (cmd[1], doc.get("exp_key"))
                if key not in domain_ids:
                    domain_ids[key] = self.latest_attachment_id(*key)
                if domain_ids[key] is not None:
                    extra["domain_file_id"] = domain_ids[key]
            doc.setdefault("hyperfleet", extra)
            prepared.append(doc)
        if not prepared:
            return []
        try:
            self.jobs.insert_many(prepared, ordered=False)
        except BulkWriteError as err:
            # inserted again after a connection was lost: the trials already there (same _id) stay as they are
            errors = err.details.get("writeErrors") or []
            if not errors or any(e.get("code") != 11000 for e in errors):
                raise
        return prepared

    def cancel_queued(self, exp_key: str | None) -> int:
        """Withdraw the experiment's NEW trials (state CANCEL); a worker that already took one keeps it."""
        query: dict[str, Any] = {"state": JOB_STATE_NEW}
        if exp_key is not None:
            query["exp_key"] = exp_key
        return self.jobs.update_many(query, {"$set": {"state": JOB_STATE_CANCEL}, "$inc": {"version": 1}}).modified_count

    def count(self, exp_key: str | None, states: Iterable[int]) -> int:
        query: dict[str, Any] = {"state": {"$in": list(states)}}
        if exp_key is not None:
            query["exp_key"] = exp_key
        return self.jobs.count_documents(query)

    def count_all(self) -> int:
        return self.jobs.estimated_document_count()

    # -- worker side --------------------------------------------------------------------------

    def reserve(self, owner: str, worker: Mapping[str, Any], exp_key: str | None = None,
                extra: Mapping[str, Any] | None = None) -> dict | None:
        """Atomically take the oldest NEW trial (of ``exp_key`` if given, matching the filter
        ``extra`` if given) for ``owner``."""
        query: dict[str, Any] = {**(extra or {}), "state": JOB_STATE_NEW, "owner": None}
        if exp_key is not None:
            query["exp_key"] = exp_key
        return self.jobs.find_one_and_update(
            query,
            {
                "$set": {"state": JOB_STATE_RUNNING, "owner": [owner], "hyperfleet.worker": dict(worker)},
                "$currentDate": {"book_time": True, "refresh_time": True},
                "$inc": {"version": 1, "hyperfleet.attempts": 1},
            },
            sort=[("tid", 1)],
            return_document=ReturnDocument.AFTER,
        )

    def _owned(self, trial_id: ObjectId, owner: str) -> dict:
        return {"_id": trial_id, "state": JOB_STATE_RUNNING, "owner": [owner]}

    def heartbeat(self, trial_id: ObjectId, owner: str) -> bool:
        """Advance ``refresh_time``; False when ``owner`` no longer holds the trial."""
        res = self.jobs.update_one(self._owned(trial_id, owner), {"$currentDate": {"refresh_time": True}})
        return res.matched_count == 1

    def checkpoint(self, trial_id: ObjectId, owner: str, result: Mapping | None) -> bool:
        update: dict[str, Any] = {"$currentDate": {"refresh_time": True}}
        if result is not None:
            update["$set"] = {"result": dict(result)}
        return self.jobs.update_one(self._owned(trial_id, owner), update).matched_count == 1

    def finish(self, trial_id: ObjectId, owner: str, result: Mapping) -> bool:
        """Record the result (DONE); False when the trial was taken from ``owner`` meanwhile."""
        res = self.jobs.update_one(
            self._owned(trial_id, owner),
            {
                "$set": {"state": JOB_STATE_DONE, "result": dict(result)},
                "$currentDate": {"refresh_time": True},
                "$inc": {"version": 1},
            },
        )
        return res.matched_count == 1

    def finish_pruned(self, trial_id: ObjectId, owner: str, result: Mapping, pruned: Mapping) -> bool:
        """Record a trial stopped by its pruning rule: DONE with ``result`` (status ok, its last reported
        loss, ``pruned: True``) and ``hyperfleet.pruned``; never a failure. False when the trial was
        taken from ``owner`` meanwhile."""
        res = self.jobs.update_one(
            self._owned(trial_id, owner),
            {
                "$set": {"state": JOB_STATE_DONE, "result": dict(result), "hyperfleet.pruned": dict(pruned)},
                "$currentDate": {"refresh_time": True},
                "$inc": {"version": 1},
            },
        )
        return res.matched_count == 1

    # -- reported values (hyperfleet.pruning) ---------------------------------------------------

    def record_progress(self, exp_key: str | None, tid: int, step: int, loss: float, rungs: list[int] = ()) -> None:
        """Store one reported value (a trial run again overwrites its own value at that step)."""
        fields: dict[str, Any] = {"loss": loss, "at": _utcnow()}
        if rungs:
            fields["rungs"] = list(rungs)
        retry_upsert(lambda: self.db[PROGRESS].update_one(
            {"exp_key": exp_key, "tid": tid, "step": step}, {"$set": fields}, upsert=True))

    def trial_progress(self, trial_id: ObjectId, owner: str, progress: Mapping, pruned: Mapping | None = None) -> bool:
        """The trial's last reported value (and the pruning decision, once taken) on its document;
        False when ``owner`` no longer holds the trial."""
        fields: dict[str, Any] = {"hyperfleet.progress": dict(progress)}
        if pruned is not None:
            fields["hyperfleet.pruned"] = dict(pruned)
        return self.jobs.update_one(self._owned(trial_id, owner), {"$set": fields}).matched_count == 1

    def progress_at_step(self, exp_key: str | None, step: int, except_tid: int) -> list[float]:
        """The values the other trials of the experiment reported at ``step``: one index range."""
        return self._others_values(exp_key, "step", step, except_tid)

    def progress_at_rung(self, exp_key: str | None, rung: int, except_tid: int) -> list[float]:
        """The values the other trials of the experiment reached ASHA's ``rung`` with."""
        return self._others_values(exp_key, "rungs", rung, except_tid)

    def _others_values(self, exp_key: str | None, field: str, value: int, except_tid: int) -> list[float]:
        query = {"exp_key": exp_key, field: value, "tid": {"$ne": except_tid}}
        return [d["loss"] for d in self.db[PROGRESS].find(query, projection={"loss": 1, "_id": 0})]

    def trial_curves(self, exp_key: str | None, min_tid: int = 0) -> dict[int, list[tuple[int, float]]]:
        """Every reported value of an experiment (of its trials from ``min_tid`` on): tid -> [(step,
        loss), ...] by step (learning curves); one range of the ``(exp_key, tid, step)`` index."""
        curves: dict[int, list[tuple[int, float]]] = {}
        query = {"exp_key": exp_key, "tid": {"$gte": min_tid}}
        for d in self.db[PROGRESS].find(query, projection={"tid": 1, "step": 1, "loss": 1, "_id": 0},
                                        sort=[("tid", 1), ("step", 1)]):
            curves.setdefault(d["tid"], []).append((d["step"], d["loss"]))
        return curves

    def fail(self, trial_id: ObjectId, owner: str, error: tuple[str, str], traceback: str,
             retry: bool = False) -> bool:
        """Record an ERROR of the objective: hyperopt's ``error`` pair and the full traceback; with
        ``retry`` the trial is queued again instead, the error kept in its history."""
        if retry:
            reason = f"objective failed, run again: {error[1]}"[:HISTORY_REASON_LIMIT]
            return self._requeue(self._owned(trial_id, owner), "retried", reason, owner,
                                 {"hyperfleet.objective_failures": 1}, unset_error=True)
        res = self.jobs.update_one(
            self._owned(trial_id, owner),
            {
                "$set": {"state": JOB_STATE_ERROR, "error": list(error), "hyperfleet.traceback": traceback},
                "$currentDate": {"refresh_time": True},
                "$inc": {"version": 1, "hyperfleet.objective_failures": 1},
            },
        )
        return res.matched_count == 1

    def hand_back(self, trial_id: ObjectId, owner: str, reason: str) -> bool:
        """A worker returns its RUNNING trial to the queue (NEW, no owner) and records why."""
        return self._requeue(self._owned(trial_id, owner), "handed back", reason, owner, {})

    # -- monitor side -------------------------------------------------------------------------

    def running_trials(self, exp_key: str | None = None) -> list[dict]:
        """RUNNING trials with what the monitor needs; the state index makes this O(running)."""
        query: dict[str, Any] = {"state": JOB_STATE_RUNNING}
        if exp_key is not None:
            query["exp_key"] = exp_key
        fields = ["tid", "exp_key", "owner", "refresh_time", "book_time", "hyperfleet"]
        return list(self.jobs.find(query, projection=fields))

    def last_tid(self) -> int:
        """How many trial ids were handed out so far (the ``job_ids`` counter; 0 before the first)."""
        doc = self.db.job_ids.find_one({"a": 0}, projection=["last_id"])
        return int((doc or {}).get("last_id") or 0)

    def trial_times(self, trial_id: ObjectId) -> dict | None:
        """One trial's state and times, by ``_id``."""
        return self.jobs.find_one({"_id": trial_id}, projection=_TIMES)

    def open_trials(self, exp_key: str | None = None, fields: list[str] | None = None) -> list[dict]:
        """NEW and RUNNING trials (``fields`` of them, whole when None): one query, served by the
        ``(state, exp_key, tid)`` index."""
        query: dict[str, Any] = {"state": {"$in": [JOB_STATE_NEW, JOB_STATE_RUNNING]}}
        if exp_key is not None:
            query["exp_key"] = exp_key
        return list(self.jobs.find(query, projection=fields))

    def finished_trials(self, exp_key: str, state: int, min_tid: int) -> list[dict]:
        """An experiment's trials in ``state`` (DONE or ERROR) from ``min_tid`` on, with their times:
        a range of the ``(state, exp_key, tid)`` index."""
        query = {"state": state, "exp_key": exp_key, "tid": {"$gte": min_tid}}
        return list(self.jobs.find(query, projection=_TIMES))

    def failed_trials(self, max_objective_failures: int, exp_key: str | None = None) -> list[dict]:
        """ERROR trials of the objective still within a retry budget of ``max_objective_failures``."""
        query: dict[str, Any] = {"state": JOB_STATE_ERROR,
                                 "hyperfleet.objective_failures": {"$gte": 1, "$lte": max_objective_failures}}
        if exp_key is not None:
            query["exp_key"] = exp_key
        return list(self.jobs.find(query, projection=["tid", "exp_key", "version", "error", "hyperfleet"]))

    @staticmethod
    def _as_seen(trial: Mapping) -> dict:
        """Matches the trial only while it is exactly as a sweep saw it: same holder, no newer heartbeat."""
        return {"_id": trial["_id"], "state": JOB_STATE_RUNNING, "owner": trial["owner"],
                "refresh_time": trial["refresh_time"]}

    def requeue_orphan(self, trial: Mapping, reason: str) -> bool:
        """NEW again, counted against the infrastructure budget; False if the trial moved meanwhile."""
        owner = (trial.get("owner") or [None])[0]
        return self._requeue(self._as_seen(trial), "requeued", reason, owner, {"hyperfleet.orphaned": 1})

    def error_orphan(self, trial: Mapping, reason: str) -> bool:
        """ERROR (retry budget spent, or the ``error`` policy); False if the trial moved meanwhile."""
        res = self.jobs.update_one(
            self._as_seen(trial),
            {
                "$set": {"state": JOB_STATE_ERROR, "error": ["hyperfleet.orphaned", reason]},
                "$currentDate": {"refresh_time": True},
                "$inc": {"version": 1, "hyperfleet.orphaned": 1},
                "$push": _history("errored", reason, (trial.get("owner") or [None])[0]),
            },
        )
        return res.matched_count == 1

    def retry_failed(self, trial: Mapping, reason: str) -> bool:
        """Queue an ERROR trial of the objective again; False if it changed since it was read."""
        return self._requeue(
            {"_id": trial["_id"], "state": JOB_STATE_ERROR, "version": trial["version"]},
            "retried", reason, None, {}, unset_error=True,
        )

    def _requeue(self, query: dict, event: str, reason: str, owner: str | None, counters: dict,
                 unset_error: bool = False) -> bool:
        update: dict[str, Any] = {
            "$set": {"state": JOB_STATE_NEW, "owner": None, "book_time": None, "hyperfleet.worker": None,
                     "hyperfleet.queued_at": _utcnow()},
            "$currentDate": {"refresh_time": True},
            "$inc": {"version": 1, "hyperfleet.requeues": 1, **counters},
            "$push": _history(event, reason, owner),
        }
        # a pruning decision of the attempt that ends here is not the next attempt's
        update["$unset"] = {"hyperfleet.pruned": ""}
        if unset_error:
            update["$unset"].update({"error": "", "hyperfleet.traceback": ""})
        return self.jobs.update_one(query, update).matched_count == 1

    # -- experiments ----------------------------------------------------------------------------

    def save_experiment(self, exp_key: str, spec: Mapping[str, Any], max_evals: int | None) -> None:
        """Record what the driver runs (the spec as JSON text: spaces may hold nested lists)."""
        retry_upsert(lambda: self.db[EXPERIMENTS].update_one(
            {"_id": exp_key},
            # a run resumes an experiment, also one that was cancelled
            {"$set": {"spec_json": json.dumps(spec, sort_keys=True), "max_evals": max_evals},
             "$currentDate": {"updated": True}, "$unset": {"cancelled_at": ""}},
            upsert=True,
        ))

    def cancel_experiment(self, exp_key: str) -> int:
        """Stop an experiment: its record says so (its driver reads that and queues nothing more), and its
        queued trials are withdrawn (CANCEL); running ones finish. Returns how many were withdrawn."""
        retry_upsert(lambda: self.db[EXPERIMENTS].update_one(
            {"_id": exp_key}, {"$currentDate": {"cancelled_at": True}}, upsert=True))
        return self.cancel_queued(exp_key)

    def experiment_cancelled(self, exp_key: str) -> bool:
        doc = self.db[EXPERIMENTS].find_one({"_id": exp_key}, projection=["cancelled_at"])
        return bool(doc and doc.get("cancelled_at"))

    def delete_experiment(self, exp_key: str) -> int:
        """Delete an experiment's trials, their attachments, its own attachments and its record."""
        deleted = self.delete_trials({"exp_key": exp_key})
        self.db[PROGRESS].delete_many({"exp_key": exp_key})
        for doc in self.db.fs.files.find({"exp_key": exp_key}, projection={"_id": 1}):
            self.gfs.delete(doc["_id"])
        self.db[EXPERIMENTS].delete_one({"_id": exp_key})
        return deleted

    def experiment(self, exp_key: str) -> dict | None:
        doc = self.db[EXPERIMENTS].find_one({"_id": exp_key})
        if doc and doc.get("spec_json"):
            doc["spec"] = json.loads(doc["spec_json"])
        return doc

    def experiment_keys(self) -> list[str]:
        """Every exp_key with trials or a record, sorted."""
        keys = {d["_id"]["exp_key"] for d in self.jobs.aggregate([{"$group": {"_id": {"exp_key": "$exp_key"}}}])}
        return sorted(k for k in keys.union(self.recorded_experiment_keys()) if k is not None)

    def recorded_experiment_keys(self) -> list[str]:
        """The exp_keys `hyperfleet run` recorded: a small collection, cheap to read often."""
        return sorted(d["_id"] for d in self.db[EXPERIMENTS].find({}, projection=["_id"]))

    def state_counts(self, exp_key: str) -> dict[int, int]:
        rows = self.jobs.aggregate([{"$match": {"exp_key": exp_key}},
                                    {"$group": {"_id": {"state": "$state"}, "n": {"$sum": 1}}}])
        return {row["_id"]["state"]: row["n"] for row in rows}

    def best_trial(self, exp_key: str) -> dict | None:
        return self.jobs.find_one({"exp_key": exp_key, "state": JOB_STATE_DONE, "result.status": "ok"},
                                  sort=[("result.loss", 1)])

    def finished_since(self, exp_key: str, since: _dt.datetime) -> int:
        return self.jobs.count_documents({"exp_key": exp_key, "state": {"$in": [JOB_STATE_DONE, JOB_STATE_ERROR]},
                                          "refresh_time": {"$gte": since}})

    def first_booked(self, exp_key: str) -> _dt.datetime | None:
        doc = self.jobs.find_one({"exp_key": exp_key, "book_time": {"$ne": None}}, sort=[("book_time", 1)],
                                 projection=["book_time"])
        return doc["book_time"] if doc else None

    def experiment_trials(self, exp_key: str) -> list[dict]:
        """Every trial of an experiment by tid, for reports."""
        return list(self.jobs.find({"exp_key": exp_key}, sort=[("tid", 1)]))

    def pruned_count(self, exp_key: str) -> int:
        """The experiment's trials that its pruning rule stopped (DONE, with ``hyperfleet.pruned``)."""
        return self.jobs.count_documents({"state": JOB_STATE_DONE, "exp_key": exp_key,
                                          "hyperfleet.pruned": {"$exists": True}})

    def delete_trials(self, query: Mapping[str, Any]) -> int:
        """Delete the trials matching ``query`` and their attachments."""
        for doc in self.jobs.find(query, projection={"_attachments": 1}):
            for _name, file_id in attachment_entries(doc):
                self.gfs.delete(file_id)
        return self.jobs.delete_many(query).deleted_count

    # -- attachments --------------------------------------------------------------------------

    def experiment_attachments(self, exp_key: str | None) -> ExperimentAttachments:
        return ExperimentAttachments(self, exp_key)

    def trial_attachments(self, trial: Mapping) -> TrialAttachments:
        return TrialAttachments(self, trial)

    def latest_attachment_id(self, name: str, exp_key: str | None) -> ObjectId | None:
        query: dict[str, Any] = {"filename": name}
        if exp_key is not None:
            query["exp_key"] = exp_key
        doc = self.db.fs.files.find_one(query, projection={"_id": 1}, sort=[("uploadDate", -1)])
        return doc["_id"] if doc else None

    def read_file(self, file_id: ObjectId) -> bytes:
        return self.gfs.get(file_id).read()


def attachment_entries(doc: Mapping | None) -> list[tuple[str, ObjectId]]:
    """``(name, file_id)`` pairs from a trial's ``_attachments``, in either stored form."""
    return [
        (e["name"], e["file_id"]) if isinstance(e, dict) else (e[0], e[1])
        for e in (doc or {}).get("_attachments", [])
    ]


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _history(event: str, reason: str, owner: str | None) -> dict:
    entry = {"event": event, "reason": reason, "owner": owner, "at": _utcnow()}
    return {"hyperfleet.history": {"$each": [entry], "$slice": -HISTORY_LIMIT}}


class ExperimentAttachments:
    """``trials.attachments``: blobs for a whole experiment, stored as hyperopt stores them."""

    def __init__(self, store: JobStore, exp_key: str | None):
        self._store = store
        self._query = {"exp_key": exp_key} if exp_key is not None else {}

    def __contains__(self, name: str) -> bool:
        return self._store.gfs.exists(filename=name, **self._query)

    def __getitem__(self, name: str) -> bytes:
        try:
            return self._store.gfs.get_version(filename=name, **self._query).read()
        except gridfs.NoFile:
            raise KeyError(name) from None

    def __setitem__(self, name: str, value: bytes | str) -> None:
        old = [f._id for f in self._store.gfs.find({"filename": name, **self._query})]
        self._store.gfs.put(value, filename=name, encoding="utf-8", **self._query)
        for file_id in old:
            self._store.gfs.delete(file_id)

    def __delitem__(self, name: str) -> None:
        files = [f._id for f in self._store.gfs.find({"filename": name, **self._query})]
        if not files:
            raise KeyError(name)
        for file_id in files:
            self._store.gfs.delete(file_id)

    def __iter__(self) -> Iterator[str]:
        names = self._store.db.fs.files.distinct("filename", self._query)
        return iter(sorted(names))

    def keys(self) -> list[str]:
        return list(self)


class TrialAttachments:
    """``ctrl.attachments`` / ``trials.trial_attachments(doc)``: blobs of one trial.

    The trial lists them in ``_attachments`` as hyperopt does, ``[[name, file_id], ...]``. Servers
    that refuse nested arrays (FerretDB v1) get ``[{"name": ..., "file_id": ...}, ...]`` instead;
    both forms are read.
    """

    def __init__(self, store: JobStore, trial: Mapping):
        self._store = store
        self._trial_id = trial["_id"]

    def _entries(self) -> list[tuple[str, ObjectId]]:
        return attachment_entries(self._store.jobs.find_one({"_id": self._trial_id}, projection={"_attachments": 1}))

    def __contains__(self, name: str) -> bool:
        return any(n == name for n, _ in self._entries())

    def __iter__(self) -> Iterator[str]:
        return iter([n for n, _ in self._entries()])

    def __len__(self) -> int:
        return len(self._entries())

    def keys(self) -> list[str]:
        return list(self)

    def __getitem__(self, name: str) -> bytes:
        for n, file_id in self._entries():
            if n == name:
                return self._store.read_file(file_id)
        raise KeyError(name)

    def __setitem__(self, name: str, value: bytes) -> None:
        file_id = self._store.gfs.put(value, filename=f"{self._trial_id}_{name}")
        entries = self._entries()
        self._set([(n, fid) for n, fid in entries if n != name] + [(name, file_id)])
        for n, fid in entries:
            if n == name:
                self._store.gfs.delete(fid)

    def __delitem__(self, name: str) -> None:
        entries = self._entries()
        gone = [fid for n, fid in entries if n == name]
        if not gone:
            raise KeyError(name)
        self._set([(n, fid) for n, fid in entries if n != name])
        for fid in gone:
            self._store.gfs.delete(fid)

    def _set(self, entries: list[tuple[str, ObjectId]]) -> None:
        update = self._store.jobs.update_one
        try:
            update({"_id": self._trial_id}, {"$set": {"_attachments": [[n, fid] for n, fid in entries]}})
        except WriteError as err:
            if "nested arrays" not in str(err):
                raise
            update({"_id": self._trial_id}, {"$set": {"_attachments": [{"name": n, "file_id": fid} for n, fid in entries]}})
