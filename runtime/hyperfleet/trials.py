"""``MongoTrials``: the driver's view of a distributed experiment, a drop-in for hyperopt's.

    fmin(fn, space, algo=tpe.suggest, max_evals=100,
         trials=hyperfleet.MongoTrials("mongodb://host:27017/db", exp_key="e1"))

Differences from ``hyperopt.mongoexp.MongoTrials`` that users notice:

* it runs on pymongo 4;
* ``refresh()`` is incremental, from the ``(state, exp_key, tid)`` index: the experiment's NEW and
  RUNNING trials (one query), the trials that left that set since the last refresh (one query by
  ``_id``, when some did), and the ``job_ids`` counter (unless this object took ids since the last
  refresh: the counter's answer to that tells the same; within fmin's loop at most every 0.25 s).
  Only when ids were handed out that it saw neither open nor in its cache (trials another client
  queued and that finished in between) does it read the trials from the lowest such id on. Every
  ``resync_seconds`` it compares ``(_id, version)`` pairs of the whole experiment to catch trials
  inserted with ids of their own, or deleted, by another client. The trials it inserts itself it
  knows without reading them back;
* ``fmin`` polls every ``poll_interval_seconds`` (default 20 ms) instead of every second, and within
  its loop reads the database at most once per poll interval (hyperopt's loop asks for a refresh or a
  count six times per trial): at most about 4 commands per trial in all (the ids, the insert, the open
  trials, the finished ones; bench/README.md has the counts).
"""

from __future__ import annotations

import collections
import datetime as _dt
import logging
import os
import sys
import time
from collections.abc import Mapping
from timeit import default_timer as timer
from typing import Any

import numpy as np
import pymongo
from bson import ObjectId
from hyperopt import base, tpe
from hyperopt.fmin import FMinIter, generate_trials_to_calculate, space_eval
from pymongo.errors import ConnectionFailure, PyMongoError, ServerSelectionTimeoutError

from .mongo_url import MongoAddress
from .settings import CONNECT_TIMEOUT_SECONDS
from .pruning import parse_rule
from .store import (JOB_STATE_DONE, JOB_STATE_NEW, JOB_STATE_RUNNING, JOB_STATES, JOB_VALID_STATES, PROGRESS, HandedOutIds,
                    JobStore, OutageLog, StoreUnavailable)

log = logging.getLogger("hyperfleet.trials")

_OPEN_STATES = (JOB_STATE_NEW, JOB_STATE_RUNNING)
#: within fmin's loop, how often a refresh reads the job_ids counter when this object took no ids
COUNTER_SECONDS = 0.25
_EPOCH = _dt.datetime(1970, 1, 1)


def _is_int_tid(tid) -> bool:
    """hyperopt allows any tid; the incremental refresh (ids from the job_ids counter) needs integers."""
    return isinstance(tid, int) and not isinstance(tid, bool)


class MongoTrials(base.Trials):
    asynchronous = True

    def __init__(
        self,
        url: str | MongoAddress | JobStore,
        exp_key: str | None = None,
        refresh: bool = True,
        *,
        poll_interval_seconds: float = 0.02,
        resync_seconds: float = 30.0,
        connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
        retries: int = 0,
        outage_seconds: float = 600.0,
        pruning: Mapping | None = None,
    ):
        self.store = url if isinstance(url, JobStore) else JobStore.connect(url, timeout_seconds=connect_timeout_seconds)
        self._exp_key = exp_key
        self.poll_interval_seconds = poll_interval_seconds
        self.resync_seconds = resync_seconds
        self.retries = retries  # objective retries stamped on the trials this object inserts
        #: the pruning rule stamped on the trials this object inserts (hyperfleet.pruning), normalised
        self.pruning = parse_rule(pruning)
        self.outage_seconds = outage_seconds  # how long a MongoDB outage fmin rides out before it gives up
        self._outage = OutageLog(log, "driver")
        self._cancel_checked_at, self._cancelled = -1e9, False
        # hyperopt's base class reads these two in places we do not override
        self._ids: set[int] = set()
        self._dynamic_trials: list[dict] = []
        self._reset_cache()
        if refresh:
            self.refresh()

    # hyperopt code written for the old MongoTrials reaches the database through ``.handle``
    @property
    def handle(self) -> JobStore:
        return self.store

    def __getstate__(self) -> dict[str, Any]:
        return {
            "address": self.store.address,
            "exp_key": self._exp_key,
            "poll_interval_seconds": self.poll_interval_seconds,
            "resync_seconds": self.resync_seconds,
            "retries": self.retries,
            "pruning": self.pruning,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(
            state["address"], state["exp_key"],
            poll_interval_seconds=state["poll_interval_seconds"], resync_seconds=state["resync_seconds"],
            retries=state.get("retries", 0), pruning=state.get("pruning"),
        )

    def view(self, exp_key: str | None = None, refresh: bool = True) -> MongoTrials:
        return MongoTrials(
            self.store, self._exp_key if exp_key is None else exp_key, refresh,
            poll_interval_seconds=self.poll_interval_seconds, resync_seconds=self.resync_seconds,
            retries=self.retries, pruning=self.pruning,
        )

    # -- the local cache ----------------------------------------------------------------------

    def _reset_cache(self) -> None:
        self._docs: dict[Any, dict] = {}  # _id -> latest document seen, every state
        self._open: set = set()  # _ids of NEW and RUNNING trials
        self._tids: set = set()  # tids of the documents in the cache
        self._handed_out = HandedOutIds()  # ids the job_ids counter handed out that the cache lacks
        self._counter_known = False  # this object took ids since the last refresh: the counter is noted
        self._counter_read_at = float("-inf")
        self._read_at = float("-inf")  # when a refresh last read the database (monotonic)
        self._throttled = False  # in fmin's loop: refresh at most once per poll interval
        self._domain_ids: dict = {}  # fmin's domain attachment, by (name, exp_key): looked up once
        self._inserted: list[dict] = []  # trials this object inserted since the last refresh, as inserted
        self._int_tids = True  # every tid seen is an integer (_is_int_tid)
        self._state_counts: collections.Counter = collections.Counter()
        self._trials: list[dict] = []  # hyperopt's view: NEW, RUNNING and DONE, in tid order
        self._position: dict[Any, int] = {}
        self._last_resync = float("-inf")

    def _query(self, extra: dict | None = None) -> dict:
        query = {} if self._exp_key is None else {"exp_key": self._exp_key}
        if extra:
            query.update(extra)
        return query

    def _riding_out_outages(self, operation, *args):
        """``operation(*args)``, tried again while MongoDB is unreachable, for up to ``outage_seconds``."""
        started, dropped_while_up = time.monotonic(), 0
        while True:
            try:
                result = operation(*args)
            except ConnectionFailure as err:  # refused, reset, timed out: not an answer from the server
                if not isinstance(err, ServerSelectionTimeoutError) and self._server_answers():
                    # up, and dropped this request: a server going down does that once; one that refuses
                    # the request itself (FerretDB closes the connection on a NaN) does it again
                    dropped_while_up += 1
                    if dropped_while_up > 1:
                        raise
                    continue
                if time.monotonic() - started > self.outage_seconds:
                    raise StoreUnavailable(
                        f"MongoDB at {self.store.address.redacted()} unreachable for more than {self.outage_seconds:g}s: {err}"
                    ) from None
                self._outage.failed(err)
                time.sleep(1.0)
                continue
            self._outage.succeeded()
            return result

    def _server_answers(self) -> bool:
        """Whether the server answers a ping within a second (half a second after a dropped request)."""
        time.sleep(0.5)
        try:
            with pymongo.timeout(1.0):
                self.store.client.admin.command("ping")
            return True
        except PyMongoError:
            return False

    def refresh(self) -> None:
        inserted, self._inserted = self._inserted, []
        self._apply(inserted)
        if self._throttled and time.monotonic() - self._read_at < self.poll_interval_seconds:
            return  # fmin's loop asked again within one poll interval: nothing it needs is newer
        self._riding_out_outages(self._refresh)
        self._read_at = time.monotonic()

    def documents(self) -> list[dict]:
        """Every trial document of the experiment as of the last refresh, in every state (hyperopt's
        ``trials`` leaves out ERROR and CANCEL)."""
        return list(self._docs.values())

    def _refresh(self) -> None:
        if not self._int_tids or time.monotonic() - self._last_resync >= self.resync_seconds:
            self._resync()
            return
        jobs = self.store.jobs
        # before the read: what is handed out later, the next refresh looks for. Within fmin's loop at
        # most every COUNTER_SECONDS: it only finds trials another client queued that finished meanwhile
        now = time.monotonic()
        counter = None
        if not self._counter_known and not (self._throttled and now - self._counter_read_at < COUNTER_SECONDS):
            counter, self._counter_read_at = self.store.last_tid(), now
        self._counter_known = False
        changed = self.store.open_trials(self._exp_key)
        still_open = {doc["_id"] for doc in changed}
        left = [i for i in self._open if i not in still_open]  # finished, withdrawn or deleted since
        if left:
            found = list(jobs.find({"_id": {"$in": left}}))
            changed += found
            for _id in set(left) - {doc["_id"] for doc in found}:
                self._forget(_id)
        self._apply(changed)
        if counter is not None:
            self._note_counter(counter)
        else:
            self._handed_out.prune(self._known_tid)
        lowest = self._handed_out.lowest()
        if lowest is not None:
            self._apply(jobs.find(self._query({"tid": {"$gte": lowest}})))
            self._handed_out.looked(self._tids.__contains__)

    def _resync(self) -> None:
        """Bring the cache in line with the database, fetching only documents that differ."""
        counter = self.store.last_tid()  # before the read: what is handed out later, the next refresh looks for
        versions = {d["_id"]: d.get("version", 0) for d in self.store.jobs.find(self._query(), {"version": 1})}
        stale = [i for i, v in versions.items() if i not in self._docs or self._docs[i].get("version", 0) != v]
        gone = [i for i in self._docs if i not in versions]
        for _id in gone:
            self._forget(_id)
        fresh = list(self.store.jobs.find({"_id": {"$in": stale}})) if stale else []
        self._apply(fresh, rebuild=bool(gone))
        self._last_resync = time.monotonic()
        self._handed_out.reset(counter)
        self._counter_known = False

    def _note_counter(self, counter: int) -> None:
        """The job_ids counter stood at ``counter``: the ids below it that the cache lacks were handed out
        to others (this object's own are not looked for: it inserts them itself)."""
        self._handed_out.note(counter, self._known_tid)

    def _known_tid(self, tid: int) -> bool:
        return tid in self._tids or tid in self._ids

    def _forget(self, _id: Any) -> None:
        old = self._docs.pop(_id)
        self._state_counts[old["state"]] -= 1
        self._open.discard(_id)
        if _is_int_tid(old["tid"]):
            self._tids.discard(old["tid"])

    def _apply(self, docs, rebuild: bool = False) -> None:
        for doc in docs:
            _id = doc["_id"]
            old = self._docs.get(_id)
            if old is not None:
                self._state_counts[old["state"]] -= 1
            self._docs[_id] = doc
            self._state_counts[doc["state"]] += 1
            if doc["state"] in _OPEN_STATES:
                self._open.add(_id)
            else:
                self._open.discard(_id)
            if _is_int_tid(doc["tid"]):
                self._tids.add(doc["tid"])
            elif self._int_tids:
                self._int_tids, rebuild = False, True

            shown = doc["state"] in JOB_VALID_STATES
            index = self._position.get(_id)
            if index is not None and shown:
                self._trials[index] = doc
            elif index is None and shown and self._int_tids and (not self._trials or doc["tid"] > self._trials[-1]["tid"]):
                self._position[_id] = len(self._trials)
                self._trials.append(doc)
            else:
                rebuild = True
        if rebuild:
            # by tid; by insertion (_id), as stock does, when some tids are not integers
            order = (lambda d: d["tid"]) if self._int_tids else (lambda d: d["_id"])
            self._trials = sorted((d for d in self._docs.values() if d["state"] in JOB_VALID_STATES), key=order)
            self._position = {d["_id"]: i for i, d in enumerate(self._trials)}

    def count_by_state_unsynced(self, arg) -> int:
        states = [arg] if isinstance(arg, int) else list(arg)
        for state in states:
            if state not in JOB_STATES:
                raise ValueError("invalid state", state)
        self.refresh()
        return self.counted(states)

    def counted(self, states) -> int:
        """Trials in ``states`` as of the last refresh: no database read (fmin's loop refreshes every
        ``poll_interval_seconds``), so another thread may ask (the driver's stall watch)."""
        return sum(self._state_counts[s] for s in states)

    # -- writing ------------------------------------------------------------------------------

    def new_trial_ids(self, n: int) -> list[int]:
        tids = self._riding_out_outages(self.store.allocate_tids, n)
        self._ids.update(tids)
        if tids:  # the counter stands at tids[-1] + 1 now: the ids others took before ours are noted as a read would
            self._note_counter(tids[-1] + 1)
            self._counter_known = True
        return tids

    def _insert_trial_docs(self, docs) -> list[int]:
        docs = list(docs)
        if not all(_is_int_tid(d["tid"]) for d in docs):
            self._int_tids = False
        for doc in docs:  # ids chosen here, so an insert tried again after an outage cannot insert twice
            doc.setdefault("_id", ObjectId())
        inserted = self._riding_out_outages(
            lambda: self.store.insert_trials(docs, retries=self.retries, domain_ids=self._domain_ids,
                                             pruning=self.pruning))
        self._inserted += inserted  # shown at the next refresh, as on plain Trials; never read back
        return [d["tid"] for d in docs]

    def delete_all(self) -> None:
        """Delete this experiment's trials, their attachments and reported values, and the experiment's
        attachments."""
        self.store.delete_trials(self._query())
        self.store.db[PROGRESS].delete_many(self._query())
        attachments = self.attachments
        for name in attachments.keys():
            del attachments[name]
        self._reset_cache()
        self.refresh()

    @property
    def attachments(self):
        return self.store.experiment_attachments(self._exp_key)

    def trial_attachments(self, trial):
        return self.store.trial_attachments(trial)

    # -- fmin ---------------------------------------------------------------------------------

    def fmin(
        self, fn, space, algo=None, max_evals=None, timeout=None, loss_threshold=None, max_queue_len=1,
        rstate=None, verbose=False, pass_expr_memo_ctrl=None, catch_eval_exceptions=False,
        return_argmin=True, show_progressbar=True, early_stop_fn=None, trials_save_file="",
        points_to_evaluate=None,
    ):
        """hyperopt's fmin loop over this store, polling every ``poll_interval_seconds``.

        As on plain Trials: ``early_stop_fn`` is called once per finished trial, in the order they
        finished, with a Trials of the finished trials (``FinishedTrials``); ``points_to_evaluate``
        are queued first, when the experiment has no trials yet, and count towards ``max_evals``.
        When the timeout, the loss threshold or the early stop ends the search, the trials still
        queued are withdrawn (state CANCEL) and fmin returns once the running ones are finished.
        """
        if space == "annotated":
            raise NotImplementedError("space='annotated' is not supported with hyperfleet.MongoTrials")
        base.validate_timeout(timeout)
        base.validate_loss_threshold(loss_threshold)
        if rstate is None:
            seed = os.environ.get("HYPEROPT_FMIN_SEED", "")
            rstate = np.random.default_rng(int(seed) if seed else None)
        domain = base.Domain(fn, space, pass_expr_memo_ctrl=pass_expr_memo_ctrl)
        early_stop = FinishedTrials.early_stop(early_stop_fn) if early_stop_fn else None
        loop = FMinIter(
            algo or tpe.suggest, domain, self, rstate,
            max_queue_len=max_queue_len, poll_interval_secs=self.poll_interval_seconds,
            max_evals=sys.maxsize if max_evals is None else max_evals, timeout=timeout,
            loss_threshold=loss_threshold, verbose=verbose, show_progressbar=show_progressbar,
            early_stop_fn=early_stop, trials_save_file=trials_save_file,
        )
        loop.catch_eval_exceptions = catch_eval_exceptions
        self.refresh()
        if points_to_evaluate and not self._docs:
            self.insert_points(points_to_evaluate)

        wait_for_workers = loop.block_until_done  # run() calls it last, whatever ended the loop

        def withdraw_queued_then_wait():
            stopped_early = (
                (timeout is not None and timer() - loop.start_time >= timeout)
                or (loss_threshold is not None and self._best_loss() < loss_threshold)
                or (early_stop is not None and early_stop.triggered)
                or self._cancelled  # what was queued between the cancel and fmin seeing it
            )
            if stopped_early:
                self.store.cancel_queued(self._exp_key)
            wait_for_workers()

        loop.block_until_done = withdraw_queued_then_wait
        self._throttled = True
        try:
            loop.exhaust()
        finally:
            self._throttled = False
        if return_argmin:
            if not self.trials:
                raise Exception("There are no evaluation tasks, cannot return argmin of task losses.")
            return self.argmin
        return space_eval(space, self.argmin) if len(self) else None

    @property
    def _fmin_cancelled(self) -> bool:
        """hyperopt's fmin loop queues nothing more and ends once this is true (the convention of its
        SparkTrials): the experiment was cancelled (``JobStore.cancel_experiment``, the dashboard's
        Cancel). Read from the experiment's record at most every 0.25 s."""
        now = time.monotonic()
        if self._exp_key is not None and now - self._cancel_checked_at >= 0.25:
            self._cancel_checked_at = now
            # an outage is ridden out (and logged once) here as in refresh()
            self._cancelled = self._riding_out_outages(self.store.experiment_cancelled, self._exp_key)
        return self._cancelled

    def _best_loss(self) -> float:
        losses = [x for x in self.losses() if x is not None and not np.isnan(x)]
        return min(losses, default=float("inf"))

    def insert_points(self, points: list[dict]) -> list[int]:
        """Queue trials at these points (``{label: value}``, a choice by its index), as hyperopt's
        ``generate_trials_to_calculate`` does for plain Trials."""
        docs = generate_trials_to_calculate(points)._dynamic_trials
        for doc, tid in zip(docs, self.new_trial_ids(len(docs)), strict=True):
            doc["tid"] = doc["misc"]["tid"] = tid
            doc["misc"]["idxs"] = {label: [tid] for label in doc["misc"]["idxs"]}
            doc["exp_key"] = self._exp_key
        tids = self._insert_trial_docs(docs)
        self.refresh()
        return tids


class FinishedTrials(base.Trials):
    """What an early-stop function sees: the finished (DONE) trials, in the order they finished.

    hyperopt's early-stop functions read the newest trial's loss; in a distributed run the newest
    trial is usually still queued or running. ``early_stop(fn)`` wraps ``fn`` so that it is called
    once per newly finished trial with this view, as on plain Trials."""

    @classmethod
    def early_stop(cls, fn):
        view = cls()
        seen: set = set()

        def wrapped(trials: MongoTrials, *args):
            finished = [d for d in trials._docs.values() if d["state"] == JOB_STATE_DONE and d["_id"] not in seen]
            finished.sort(key=lambda d: (d.get("refresh_time") or _EPOCH, d["tid"]))
            for doc in finished:
                seen.add(doc["_id"])
                view._dynamic_trials.append(doc)
                view.refresh()
                stop, args = fn(view, *args)
                if stop:
                    wrapped.triggered = True
                    return True, args
            return False, args

        wrapped.triggered = False
        return wrapped


def fmin(fn, space, algo=None, max_evals=None, trials=None, points_to_evaluate=None, pruning=None, **options):
    """``hyperopt.fmin`` that keeps ``points_to_evaluate`` with a ``MongoTrials`` (hyperopt's fmin
    drops it whenever it is given a trials object). ``pruning`` (a rule, see :mod:`hyperfleet.pruning`)
    is stamped on the trials queued from now on; it needs a ``MongoTrials``: hyperopt's own Trials
    run no rule (the objective's ``hyperfleet.report`` does nothing there)."""
    if pruning is not None:
        rule = parse_rule(pruning)
        if not isinstance(trials, MongoTrials):
            raise ValueError("pruning: needs trials=hyperfleet.MongoTrials(...); hyperopt's own Trials run no pruning rule")
        trials.pruning = rule
    if isinstance(trials, MongoTrials):
        options.pop("allow_trials_fmin", None)
        return trials.fmin(fn, space, algo=algo, max_evals=max_evals, points_to_evaluate=points_to_evaluate, **options)
    from hyperopt import fmin as hyperopt_fmin

    return hyperopt_fmin(fn, space, algo=algo, max_evals=max_evals, trials=trials,
                         points_to_evaluate=points_to_evaluate, **options)
