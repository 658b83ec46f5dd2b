"""What the dashboard shows and does, as plain functions of a JobStore (the web layer is app.py).

Everything is read with a projection of the fields shown, so a page of an experiment of 10^4 trials
moves kilobytes, not the trials' specs and misc.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from ..status import all_statuses, experiment_status
from ..store import JOB_STATE_ERROR, STATE_NAMES, JobStore

STATES = {name: state for state, name in STATE_NAMES.items()}
#: the trial fields a table row needs (the parameters are in misc.vals)
_ROW_FIELDS = {"tid": 1, "state": 1, "result.loss": 1, "result.status": 1, "misc.vals": 1, "book_time": 1,
               "refresh_time": 1, "error": 1, "_id": 0}
SORTS = ("tid", "state", "loss", "book_time", "refresh_time")
LOG_PAGE_BYTES = 64 * 1024


class NotFound(LookupError):
    pass


class BadRequest(ValueError):
    pass


def _iso(value: Any) -> str | None:
    return value.replace(tzinfo=_dt.timezone.utc).isoformat() if isinstance(value, _dt.datetime) else None


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _params(doc: dict, choices: dict[str, list] | None = None) -> dict[str, Any]:
    """misc.vals ({label: [value]} or [] when a branch was not taken) as {label: value}; a choice
    hyperopt stores as its index is shown as the option (``choices``: label → options)."""
    out = {}
    for label, values in ((doc.get("misc") or {}).get("vals") or {}).items():
        if values:
            value = values[0]
            options = (choices or {}).get(label)
            if options is not None and isinstance(value, int) and 0 <= value < len(options) \
                    and not isinstance(options[value], (dict, list)):
                value = options[value]
            out[label] = value
    return out


def choices(store: JobStore, exp_key: str) -> dict[str, list]:
    """The options of the experiment's top-level ``choice`` parameters, from its recorded spec."""
    space = ((store.experiment(exp_key) or {}).get("spec") or {}).get("space") or {}
    return {label: entry["choice"] for label, entry in space.items()
            if isinstance(entry, dict) and isinstance(entry.get("choice"), list)}


def row(doc: dict, options: dict[str, list] | None = None) -> dict[str, Any]:
    result = doc.get("result") or {}
    return {
        "tid": doc.get("tid"),
        "state": STATE_NAMES.get(doc.get("state"), str(doc.get("state"))),
        "loss": _number(result.get("loss")) if result.get("status") == "ok" else None,
        "params": _params(doc, options),
        "started": _iso(doc.get("book_time")),
        "updated": _iso(doc.get("refresh_time")),
        "error": (doc.get("error") or [None, None])[1] if doc.get("state") == JOB_STATE_ERROR else None,
    }


def experiments(store: JobStore) -> list[dict[str, Any]]:
    return [s.as_dict() for s in all_statuses(store)]


def experiment(store: JobStore, exp_key: str) -> dict[str, Any]:
    """The summary, and every trial as (tid, state, loss, finished at, params): the plots' data."""
    if exp_key not in store.experiment_keys():
        raise NotFound(f"no experiment {exp_key!r}")
    docs = list(store.jobs.find({"exp_key": exp_key}, projection=_ROW_FIELDS, sort=[("tid", 1)]))
    options = choices(store, exp_key)
    rows = [row(d, options) for d in docs]
    record = store.experiment(exp_key) or {}
    return {
        "status": experiment_status(store, exp_key).as_dict(),
        "cancelled": bool(record.get("cancelled_at")),
        "parameters": sorted({k for r in rows for k in r["params"]}),
        "points": [{"tid": r["tid"], "state": r["state"], "loss": r["loss"], "finished": r["updated"],
                    "params": r["params"]} for r in rows if r["state"] in ("done", "error")],
    }


def trials(store: JobStore, exp_key: str, *, state: str | None = None, param: str | None = None,
           low: float | None = None, high: float | None = None, sort: str = "tid", descending: bool = False,
           offset: int = 0, limit: int = 100) -> dict[str, Any]:
    """One page of the trials table, filtered by state and by a parameter's range, sorted by a column
    or a parameter (``param:NAME``)."""
    query: dict[str, Any] = {"exp_key": exp_key}
    if state:
        if state not in STATES:
            raise BadRequest(f"state: one of {', '.join(STATES)}")
        query["state"] = STATES[state]
    if param is not None:
        if low is None and high is None:
            raise BadRequest("param: give min and/or max")
        bounds = {**({"$gte": low} if low is not None else {}), **({"$lte": high} if high is not None else {})}
        query[f"misc.vals.{param}"] = {"$elemMatch": bounds}
    if sort.startswith("param:"):
        key = f"misc.vals.{sort[len('param:'):]}"
    elif sort in SORTS:
        key = {"loss": "result.loss"}.get(sort, sort)
    else:
        raise BadRequest(f"sort: one of {', '.join(SORTS)} or param:NAME")
    if not 1 <= limit <= 1000 or offset < 0:
        raise BadRequest("limit: 1 to 1000; offset: 0 or more")
    total = store.jobs.count_documents(query)
    docs = store.jobs.find(query, projection=_ROW_FIELDS, sort=[(key, -1 if descending else 1), ("tid", 1)],
                           skip=offset, limit=limit)
    options = choices(store, exp_key)
    return {"total": total, "offset": offset, "rows": [row(d, options) for d in docs]}


def _trial_doc(store: JobStore, exp_key: str, tid: int) -> dict:
    doc = store.jobs.find_one({"exp_key": exp_key, "tid": tid})
    if doc is None:
        raise NotFound(f"no trial {tid} in {exp_key!r}")
    return doc


def trial(store: JobStore, exp_key: str, tid: int) -> dict[str, Any]:
    doc = _trial_doc(store, exp_key, tid)
    extra = doc.get("hyperfleet") or {}
    attachments = store.trial_attachments(doc)
    return {
        **row(doc, choices(store, exp_key)),
        "result": {k: v for k, v in (doc.get("result") or {}).items() if isinstance(v, (str, int, float, bool))},
        "error": doc.get("error"),
        "traceback": extra.get("traceback"),
        "attempts": extra.get("attempts"),
        "history": [{**h, "at": _iso(h.get("at"))} for h in extra.get("history") or []],
        "attachments": [{"name": name, "bytes": len(attachments[name])} for name in attachments.keys()],
    }


def attachment(store: JobStore, exp_key: str, tid: int, name: str, offset: int = 0,
               limit: int = LOG_PAGE_BYTES) -> dict[str, Any]:
    """A page of an attachment as text (a container log can be large): ``limit`` bytes from ``offset``."""
    attachments = store.trial_attachments(_trial_doc(store, exp_key, tid))
    if name not in attachments:
        raise NotFound(f"trial {tid} has no attachment {name!r}")
    if offset < 0 or not 1 <= limit <= 1024 * 1024:
        raise BadRequest("offset: 0 or more; limit: 1 to 1048576")
    data = attachments[name]
    return {"name": name, "bytes": len(data), "offset": offset,
            "text": data[offset:offset + limit].decode("utf-8", "replace"),
            "next_offset": offset + limit if offset + limit < len(data) else None}


# -- actions -----------------------------------------------------------------------------------

def cancel(store: JobStore, exp_key: str) -> dict[str, Any]:
    if exp_key not in store.experiment_keys():
        raise NotFound(f"no experiment {exp_key!r}")
    return {"withdrawn": store.cancel_experiment(exp_key)}


def requeue(store: JobStore, exp_key: str, tid: int) -> dict[str, Any]:
    doc = _trial_doc(store, exp_key, tid)
    if doc["state"] != JOB_STATE_ERROR:
        raise BadRequest(f"trial {tid} is {STATE_NAMES.get(doc['state'])}: only failed (error) trials are requeued")
    if not store.retry_failed(doc, "requeued from the dashboard"):
        raise BadRequest(f"trial {tid} changed meanwhile; reload and try again")
    return {"requeued": tid}


def delete(store: JobStore, exp_key: str) -> dict[str, Any]:
    if exp_key not in store.experiment_keys():
        raise NotFound(f"no experiment {exp_key!r}")
    return {"deleted_trials": store.delete_experiment(exp_key)}
