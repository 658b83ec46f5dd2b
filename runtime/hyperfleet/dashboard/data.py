"""What the dashboard shows and does, as plain functions (the web layer is app.py).

Reads come from :class:`Experiments`, a cache of every experiment's trial documents that a background
thread keeps fresh with MongoTrials' incremental refresh (new tids, and the trials still queued or
running; a full check of versions every 30 s). A request never scans the trials collection: with
10^4 trials a scan costs seconds on a server that cannot use an index for it (FerretDB), and
milliseconds on mongod. The price: what the page shows is up to one refresh old. Actions write to
the database and refresh their experiment at once.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
import threading
import time
from typing import Any

from pymongo.errors import PyMongoError

from ..experiment_report import iso_time as _iso
from ..experiment_report import option_value
from ..placement import ran_on, worker_of
from ..spec import space_labels
from ..status import is_pruned, status_from_docs
from ..store import JOB_STATE_ERROR, STATE_NAMES, JobStore
from ..trials import MongoTrials

log = logging.getLogger("hyperfleet.dashboard")
STATES = {name: state for state, name in STATE_NAMES.items()}
SORTS = ("tid", "state", "loss", "book_time", "refresh_time")
LOG_PAGE_BYTES = 64 * 1024
#: how many trials' learning curves the page asks for (the last ones by tid), and the most it may
CURVES_TRIALS, MAX_CURVES_TRIALS = 500, 5000


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One experiment as of a refresh: its trials by tid, its record, the server's time then."""

    docs: list[dict]
    record: dict
    now: _dt.datetime
    #: what was computed from it once (the experiment's summary and points), kept with it
    memo: dict = dataclasses.field(default_factory=dict, compare=False)


class Experiments:
    """Every experiment's trials, refreshed every ``refresh_seconds`` in a thread (``start``); the list
    of experiments every ``keys_seconds``. Requests read published snapshots and never wait for the
    database: a refresh publishes a new snapshot when it is done."""

    def __init__(self, store: JobStore, refresh_seconds: float = 1.0, keys_seconds: float = 10.0):
        self.store = store
        self.refresh_seconds, self.keys_seconds = refresh_seconds, keys_seconds
        self._refreshing = threading.Lock()  # one refresh at a time (the thread's, or an action's)
        self._lock = threading.Lock()  # guards _published, held only to swap or read a reference
        self._trials: dict[str, MongoTrials] = {}
        self._published: dict[str, Snapshot] = {}
        self._keys_at = float("-inf")
        self._stop = threading.Event()

    def start(self, preload: bool = True) -> Experiments:
        """Keep the cache fresh in a daemon thread; with ``preload``, load it here first (so the first
        page has it). A database that is away is waited for in the thread."""
        if preload:
            self._refresh_logged()
        threading.Thread(target=self._loop, args=(not preload,), name="hyperfleet-dashboard-refresh",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, now: bool) -> None:
        if now:
            self._refresh_logged()
        while not self._stop.wait(self.refresh_seconds):
            self._refresh_logged()

    def _refresh_logged(self) -> None:
        try:
            self.refresh()
        except (PyMongoError, RuntimeError) as err:  # an outage: the page keeps the last data
            log.warning("dashboard refresh: %s", err)

    def refresh(self, only: str | None = None) -> None:
        with self._refreshing:
            if only is None:
                self._update_keys()
            now = self.store.server_time()
            for key in [only] if only else list(self._trials):
                trials = self._trials.get(key)
                if trials is None:
                    continue
                record = self.store.experiment(key) or {}
                trials.refresh()
                docs = sorted(trials.documents(), key=lambda d: (str(type(d["tid"])), d["tid"]))
                with self._lock:
                    self._published[key] = Snapshot(docs, record, now)

    def _update_keys(self) -> None:
        """The recorded experiments at every refresh (a small collection); those with trials but no
        record (MongoTrials used directly), and the deleted ones, less often (an aggregation)."""
        everything = time.monotonic() - self._keys_at >= self.keys_seconds
        keys = self.store.experiment_keys() if everything else self.store.recorded_experiment_keys()
        if everything:
            for key in set(self._trials) - set(keys):
                self.forget(key)
            self._keys_at = time.monotonic()
        for key in keys:
            if key not in self._trials:
                self._trials[key] = MongoTrials(self.store, exp_key=key, refresh=False, outage_seconds=0)
        log.debug("experiments: %s", ", ".join(keys))

    def forget(self, key: str) -> None:
        self._trials.pop(key, None)
        with self._lock:
            self._published.pop(key, None)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._published)

    def snapshot(self, key: str) -> Snapshot:
        """The experiment as of the last refresh; one recorded since then is looked up now."""
        with self._lock:
            found = self._published.get(key)
        if found is None and key in self.store.recorded_experiment_keys():
            with self._refreshing:
                self._trials.setdefault(key, MongoTrials(self.store, exp_key=key, refresh=False, outage_seconds=0))
            self.refresh(only=key)
            with self._lock:
                found = self._published.get(key)
        if found is None:
            raise NotFound(f"no experiment {key!r}")
        return found


class NotFound(LookupError):
    pass


class BadRequest(ValueError):
    pass


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _params(doc: dict, labels: dict[str, tuple[str, list]] | None = None) -> dict[str, Any]:
    """misc.vals ({label: [value]}, or [] when a branch was not taken) as {label: value}, a choice shown
    by its option, as the report shows it (``labels``: from the experiment's recorded space)."""
    return {label: option_value((labels or {}).get(label), values[0])
            for label, values in ((doc.get("misc") or {}).get("vals") or {}).items() if values}


def _val(doc: dict, label: str) -> Any:
    """A parameter's stored value (a choice by its index), None when the trial has none."""
    return ((((doc.get("misc") or {}).get("vals") or {}).get(label)) or [None])[0]


def row(doc: dict, params: dict[str, tuple[str, list]] | None = None) -> dict[str, Any]:
    result = doc.get("result") or {}
    progress = (doc.get("hyperfleet") or {}).get("progress") or {}
    return {
        "tid": doc.get("tid"),
        "state": STATE_NAMES.get(doc.get("state"), str(doc.get("state"))),
        "loss": _number(result.get("loss")) if result.get("status") == "ok" else None,
        "params": _params(doc, params),
        "started": _iso(doc.get("book_time")),
        "updated": _iso(doc.get("refresh_time")),
        "error": (doc.get("error") or [None, None])[1] if doc.get("state") == JOB_STATE_ERROR else None,
        "steps": progress.get("steps"),
        "pruned": is_pruned(doc),
        "ran_on": ran_on(worker_of(doc)),  # host, and GPU (hyperfleet.placement)
    }


def labels(record: dict) -> dict[str, tuple[str, list]]:
    """The experiment's parameters from its recorded spec (``spec.space_labels``)."""
    space = (record.get("spec") or {}).get("space")
    return space_labels(space) if space else {}


def _status(key: str, snap: Snapshot) -> dict[str, Any]:
    if "status" not in snap.memo:
        snap.memo["status"] = status_from_docs(key, snap.docs, snap.now, snap.record.get("max_evals")).as_dict()
    return snap.memo["status"]


def experiments(cache: Experiments) -> list[dict[str, Any]]:
    out = []
    for key in cache.keys():
        try:
            out.append(_status(key, cache.snapshot(key)))
        except NotFound:  # deleted meanwhile
            continue
    return out


def experiment(cache: Experiments, exp_key: str) -> dict[str, Any]:
    """The summary, and every finished trial as (tid, state, loss, finished at, params): the plots' data."""
    snap = cache.snapshot(exp_key)
    if "experiment" not in snap.memo:
        params = labels(snap.record)
        rows = [row(d, params) for d in snap.docs]
        snap.memo["experiment"] = {
            "status": _status(exp_key, snap),
            "cancelled": bool(snap.record.get("cancelled_at")),
            "parameters": sorted({k for r in rows for k in r["params"]}),
            "points": [{"tid": r["tid"], "state": r["state"], "loss": r["loss"], "finished": r["updated"],
                        "params": r["params"]} for r in rows if r["state"] in ("done", "error")],
        }
    return snap.memo["experiment"]


def curves(cache: Experiments, exp_key: str, limit: int = CURVES_TRIALS) -> dict[str, Any]:
    """The learning curves (loss against step) of the experiment's last ``limit`` trials by tid, each
    with its state and pruned mark: one indexed read of the progress collection per snapshot, whoever
    asks (the page asks every 2 s)."""
    if not 1 <= limit <= MAX_CURVES_TRIALS:
        raise BadRequest(f"limit: 1 to {MAX_CURVES_TRIALS}")
    snap = cache.snapshot(exp_key)
    memo = ("curves", limit)
    if memo not in snap.memo:
        tids = [d["tid"] for d in snap.docs if isinstance(d.get("tid"), int)]
        low = tids[-limit] if len(tids) > limit else 0  # the snapshot is in tid order
        docs = {d["tid"]: d for d in snap.docs}
        found = cache.store.trial_curves(exp_key, low)
        snap.memo[memo] = {
            "trials": len(found), "limit": limit, "from_tid": low,
            "curves": [{"tid": tid, "state": STATE_NAMES.get((docs.get(tid) or {}).get("state"), "running"),
                        "pruned": is_pruned(docs.get(tid) or {}), "points": [list(p) for p in points]}
                       for tid, points in found.items()],
        }
    return snap.memo[memo]


def _sort_value(doc: dict, field: str):
    """What a trial sorts by: values of one kind in order, missing ones last (whatever the direction)."""
    if field.startswith("param:"):
        value = _val(doc, field[len("param:"):])
    elif field == "loss":
        result = doc.get("result") or {}
        value = _number(result.get("loss")) if result.get("status") == "ok" else None
    else:
        value = doc.get(field)
    if value is None:
        return None
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def trials(cache: Experiments, exp_key: str, *, state: str | None = None, param: str | None = None,
           low: float | None = None, high: float | None = None, sort: str = "tid", descending: bool = False,
           offset: int = 0, limit: int = 100) -> dict[str, Any]:
    """One page of the trials table, filtered by state and by a parameter's range, sorted by a column
    or a parameter (``param:NAME``)."""
    if state and state not in STATES:
        raise BadRequest(f"state: one of {', '.join(STATES)}")
    if param is not None and low is None and high is None:
        raise BadRequest("param: give min and/or max")
    if not (sort.startswith("param:") or sort in SORTS):
        raise BadRequest(f"sort: one of {', '.join(SORTS)} or param:NAME")
    if not 1 <= limit <= 1000 or offset < 0:
        raise BadRequest("limit: 1 to 1000; offset: 0 or more")
    snap = cache.snapshot(exp_key)
    docs = snap.docs
    if state:
        docs = [d for d in docs if d["state"] == STATES[state]]
    if param is not None:
        def inside(d):
            v = _val(d, param)
            return isinstance(v, (int, float)) and (low is None or v >= low) and (high is None or v <= high)
        docs = [d for d in docs if inside(d)]
    if sort != "tid":  # the snapshot is in tid order already
        keyed = [(_sort_value(d, sort), d) for d in docs]
        docs = [d for _, d in sorted(((k, d) for k, d in keyed if k is not None), key=lambda p: p[0],
                                     reverse=descending)] + [d for k, d in keyed if k is None]
    elif descending:
        docs = docs[::-1]
    params = labels(snap.record)
    return {"total": len(docs), "offset": offset, "rows": [row(d, params) for d in docs[offset:offset + limit]]}


def _trial_doc(cache: Experiments, exp_key: str, tid: int) -> dict:
    doc = next((d for d in cache.snapshot(exp_key).docs if d["tid"] == tid), None)
    if doc is None:
        raise NotFound(f"no trial {tid} in {exp_key!r}")
    return doc


def _current_doc(cache: Experiments, exp_key: str, tid: int) -> dict:
    """The trial as the database holds it now (the snapshot finds it; a page or an action needs it fresh)."""
    doc = cache.store.jobs.find_one({"_id": _trial_doc(cache, exp_key, tid)["_id"]})
    if doc is None:
        raise NotFound(f"no trial {tid} in {exp_key!r}")
    return doc


def trial(cache: Experiments, exp_key: str, tid: int) -> dict[str, Any]:
    doc = _current_doc(cache, exp_key, tid)
    extra = doc.get("hyperfleet") or {}
    attachments = cache.store.trial_attachments(doc)
    return {
        **row(doc, labels(cache.snapshot(exp_key).record)),
        "result": {k: v for k, v in (doc.get("result") or {}).items() if isinstance(v, (str, int, float, bool))},
        "error": doc.get("error"),
        "traceback": extra.get("traceback"),
        "attempts": extra.get("attempts"),
        "history": [{**h, "at": _iso(h.get("at"))} for h in extra.get("history") or []],
        "attachments": [{"name": name, "bytes": len(attachments[name])} for name in attachments.keys()],
    }


def attachment(cache: Experiments, exp_key: str, tid: int, name: str, offset: int = 0,
               limit: int = LOG_PAGE_BYTES) -> dict[str, Any]:
    """A page of an attachment as text (a container log can be large): ``limit`` bytes from ``offset``."""
    attachments = cache.store.trial_attachments(_current_doc(cache, exp_key, tid))
    if name not in attachments:
        raise NotFound(f"trial {tid} has no attachment {name!r}")
    if offset < 0 or not 1 <= limit <= 1024 * 1024:
        raise BadRequest("offset: 0 or more; limit: 1 to 1048576")
    data = attachments[name]
    return {"name": name, "bytes": len(data), "offset": offset,
            "text": data[offset:offset + limit].decode("utf-8", "replace"),
            "next_offset": offset + limit if offset + limit < len(data) else None}


# -- actions -----------------------------------------------------------------------------------

def cancel(cache: Experiments, exp_key: str) -> dict[str, Any]:
    cache.snapshot(exp_key)  # NotFound
    withdrawn = cache.store.cancel_experiment(exp_key)
    cache.refresh(only=exp_key)
    return {"withdrawn": withdrawn}


def requeue(cache: Experiments, exp_key: str, tid: int) -> dict[str, Any]:
    doc = _current_doc(cache, exp_key, tid)
    if doc["state"] != JOB_STATE_ERROR:
        raise BadRequest(f"trial {tid} is {STATE_NAMES.get(doc['state'])}: only failed (error) trials are requeued")
    if not cache.store.retry_failed(doc, "requeued from the dashboard"):
        raise BadRequest(f"trial {tid} changed meanwhile; reload and try again")
    cache.refresh(only=exp_key)
    return {"requeued": tid}


def delete(cache: Experiments, exp_key: str) -> dict[str, Any]:
    cache.snapshot(exp_key)  # NotFound
    deleted = cache.store.delete_experiment(exp_key)
    cache.forget(exp_key)
    return {"deleted_trials": deleted}
