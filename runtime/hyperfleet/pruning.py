"""Stopping unpromising trials early: intermediate values, the rules that judge them, and ``report``.

An objective reports how it is doing while it runs::

    for epoch in range(50):
        loss = train_one_epoch()
        hyperfleet.report(epoch, loss)   # raises hyperfleet.TrialPruned when the rule says stop

In a hyperfleet worker (in its thread, or its ``--subprocesses`` child) each value is stored (the
store's ``PROGRESS`` collection, and ``hyperfleet.progress`` on the trial) and, when the trial carries a
rule (``hyperfleet.pruning``, stamped when it was queued), judged against the other trials' values at
the same step. Outside a worker (plain hyperopt ``Trials``, a notebook) ``report`` checks its arguments
and does nothing else, so the same objective runs anywhere. Container and pod objectives print lines
instead (:data:`hyperfleet.objectives.contract.PROGRESS_MARK`); the worker reports them for the
container. docs/pruning.md describes the rules and what a pruned trial looks like.

The rules (a mapping, from a spec's ``pruning:`` or ``MongoTrials(pruning=...)``):

* ``{rule: median, warmup_steps: 0, min_trials: 5}``: at step s with value v, once s >= warmup_steps
  and at least min_trials other trials have a value at step s, the trial stops when its best value so
  far is greater than the median of those values (the defaults are Optuna's MedianPruner's);
* ``{rule: asha, min_step: 1, reduction_factor: 3, max_step: null}``: stop-only asynchronous
  successive halving. Rungs are at min_step * reduction_factor**k (k = 0, 1, ...) below max_step (no
  bound when null). When a trial first reports a step at or past a rung, its value there joins the
  rung's values (every trial's value at its first report at or past the rung); it continues only if
  it is among the best floor(n / reduction_factor) of the n values, and with fewer than
  reduction_factor values only if it is the best so far (the rule Optuna's SuccessiveHalvingPruner
  follows for the first trials at a rung). Ties continue. A report at or past max_step is never judged:
  the trial ends there anyway.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import operator
import statistics
import threading
from collections.abc import Mapping
from typing import Any

from pymongo.errors import PyMongoError

log = logging.getLogger("hyperfleet.pruning")

MEDIAN, ASHA = "median", "asha"
#: each rule's keys and their defaults (None: no bound)
RULES: dict[str, dict[str, int | None]] = {
    MEDIAN: {"warmup_steps": 0, "min_trials": 5},
    ASHA: {"min_step": 1, "reduction_factor": 3, "max_step": None},
}
#: the least value of each key (max_step must also be greater than min_step)
_MINIMA = {"warmup_steps": 0, "min_trials": 1, "min_step": 1, "reduction_factor": 2, "max_step": 1}


class TrialPruned(Exception):
    """Raised by :func:`report` when the trial's rule says it should stop. Let it propagate: the
    worker records the trial as pruned (DONE, status ok, its last reported loss)."""


class PruningError(ValueError):
    """A pruning rule that cannot be used; the message names the key, e.g. ``pruning.min_trials: ...``."""


def parse_rule(value: Any, path: str = "pruning") -> dict | None:
    """The normalised rule (every key, defaults filled in) of a mapping, or None for None."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise PruningError(f"{path}: needs a mapping such as {{rule: median}} or {{rule: asha}}")
    rule = value.get("rule")
    if rule not in RULES:
        raise PruningError(f"{path}.rule: needs one of {', '.join(RULES)}, got {rule!r}")
    unknown = sorted(str(k) for k in value if k != "rule" and k not in RULES[rule])
    if unknown:
        raise PruningError(f"{path}.{unknown[0]}: unknown key for rule {rule} (its keys: {', '.join(RULES[rule])})")
    normalised: dict[str, Any] = {"rule": rule}
    for key, default in RULES[rule].items():
        given = value.get(key, default)
        if given is None and default is None:
            normalised[key] = None
            continue
        if isinstance(given, bool) or not isinstance(given, int) or given < _MINIMA[key]:
            raise PruningError(f"{path}.{key}: needs an integer >= {_MINIMA[key]}, got {given!r}")
        normalised[key] = given
    if rule == ASHA and normalised["max_step"] is not None and normalised["max_step"] <= normalised["min_step"]:
        raise PruningError(f"{path}.max_step: needs to be greater than min_step ({normalised['min_step']}), "
                           f"got {normalised['max_step']}")
    return normalised


def check_value(step: Any, loss: Any) -> tuple[int, float]:
    """``report``'s arguments as (int, float): a step >= 0 and a finite loss."""
    try:
        if isinstance(step, bool):
            raise TypeError
        step = operator.index(step)
    except TypeError:
        raise TypeError(f"report(step, loss): step must be an integer, got {step!r}") from None
    if step < 0:
        raise ValueError(f"report(step, loss): step must be >= 0, got {step}")
    try:
        loss = float(loss)
    except (TypeError, ValueError):
        raise TypeError(f"report(step, loss): loss must be a number, got {loss!r}") from None
    if not math.isfinite(loss):
        raise ValueError(f"report(step, loss): loss must be finite, got {loss}")
    return step, loss


# -- the decisions -----------------------------------------------------------------------------

def median_prunes(rule: Mapping, step: int, best: float, others: list[float]) -> bool:
    """The median rule: prune when past warm-up, enough others have a value at this step, and this
    trial's best value so far is greater than their median."""
    if step < rule["warmup_steps"] or len(others) < rule["min_trials"]:
        return False
    return best > statistics.median(others)


def asha_rungs(rule: Mapping, previous_step: int | None, step: int) -> list[int]:
    """The rungs a trial reaches with a report at ``step`` after one at ``previous_step`` (None: its
    first report): those in (previous_step, step], below max_step."""
    rungs, rung = [], rule["min_step"]
    max_step = rule["max_step"]
    while rung <= step and (max_step is None or rung < max_step):
        if previous_step is None or rung > previous_step:
            rungs.append(rung)
        rung *= rule["reduction_factor"]
    return rungs


def asha_prunes(rule: Mapping, value: float, others: list[float]) -> bool:
    """At a rung: continue when ``value`` is among the best floor(n / reduction_factor) of the n values
    at the rung (``others`` and this one), or the best when n < reduction_factor; else prune."""
    values = sorted([*others, value])
    keep = max(1, len(values) // rule["reduction_factor"])
    return value > values[keep - 1]


# -- reporting ---------------------------------------------------------------------------------

def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class TrialReporter:
    """The reports of one trial in a worker: stores each value, judges it by the trial's rule, and
    remembers the decision (``pruned``: ``{"step", "rule", "at"}``) for the worker to record."""

    def __init__(self, store, trial: Mapping, owner: str):
        self._store, self._owner = store, owner
        self._trial_id, self.exp_key, self.tid = trial["_id"], trial.get("exp_key"), trial["tid"]
        self.rule: dict | None = (trial.get("hyperfleet") or {}).get("pruning")
        self.last: tuple[int, float] | None = None
        self.best: float | None = None
        self._steps: set[int] = set()
        self.pruned: dict | None = None
        self._lock = threading.Lock()  # the objective may report from threads of its own

    def report(self, step: Any, loss: Any) -> None:
        step, loss = check_value(step, loss)
        with self._lock:
            if self.pruned is not None:
                raise TrialPruned(f"trial {self.tid} was pruned at step {self.pruned['step']}")
            previous = self.last[0] if self.last else None
            self.last = (step, loss)
            self._steps.add(step)
            self.best = loss if self.best is None else min(self.best, loss)
            rule = self.rule or {}
            rungs = asha_rungs(rule, previous, step) if rule.get("rule") == ASHA else []
            try:
                self._store.record_progress(self.exp_key, self.tid, step, loss, rungs)
                prune = self._decide(step, loss, rungs)
                if prune:
                    self.pruned = {"step": step, "rule": rule["rule"], "at": _utcnow()}
                self._store.trial_progress(self._trial_id, self._owner, self.progress, self.pruned)
            except PyMongoError as err:  # the trial goes on; its curve misses a point
                log.warning("trial %s: could not record the value at step %s: %s", self.tid, step, err)
            if self.pruned is not None:
                log.info("trial %s pruned at step %s (loss %s, rule %s)", self.tid, step, loss, rule["rule"])
                raise TrialPruned(f"trial {self.tid} pruned at step {step} by the {rule['rule']} rule")

    @property
    def progress(self) -> dict:
        step, loss = self.last
        return {"step": step, "loss": loss, "best": self.best, "steps": len(self._steps)}

    def _decide(self, step: int, loss: float, rungs: list[int]) -> bool:
        rule = self.rule
        if not rule:
            return False
        if rule["rule"] == MEDIAN:
            others = self._store.progress_at_step(self.exp_key, step, self.tid)
            return median_prunes(rule, step, self.best, others)
        return any(asha_prunes(rule, loss, self._store.progress_at_rung(self.exp_key, rung, self.tid)) for rung in rungs)

    def pruned_result(self) -> dict:
        """The trial's result once pruned: hyperopt's ``status`` and ``loss``, and the mark."""
        return {"status": "ok", "loss": self.last[1], "pruned": True}


_local = threading.local()
_active: list = []
_active_lock = threading.Lock()


@contextlib.contextmanager
def reporting(reporter):
    """``report`` in this thread (and in threads the objective starts, while only one trial reports in
    this process) goes to ``reporter``."""
    previous = getattr(_local, "reporter", None)
    _local.reporter = reporter
    with _active_lock:
        _active.append(reporter)
    try:
        yield reporter
    finally:
        _local.reporter = previous
        with _active_lock:
            _active.remove(reporter)


def report(step: int, loss: float) -> None:
    """Report the trial's ``loss`` after ``step`` (an integer >= 0: an epoch, an iteration count).
    Raises :class:`TrialPruned` when the trial's rule says it should stop; outside a hyperfleet worker
    it only checks its arguments."""
    reporter = getattr(_local, "reporter", None)
    if reporter is None:
        with _active_lock:
            reporter = _active[0] if len(_active) == 1 else None
    if reporter is None:
        check_value(step, loss)
        return
    reporter.report(step, loss)
