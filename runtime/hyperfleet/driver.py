"""`hyperfleet run SPEC`: drive a declarative experiment with fmin on hyperfleet's MongoTrials.

Running it again with the same exp_key continues the experiment: trials already queued or finished
count toward ``max_evals``, so a driver killed mid-run and started again ends with ``max_evals``
trials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from . import objectives
from .notify import Notifier, StallWatch
from .settings import CONNECT_TIMEOUT_SECONDS
from .spec import ExperimentSpec, SpecError, build_space, grid_points, parse_spec

log = logging.getLogger("hyperfleet.driver")


class ObjectiveImportError(ValueError):
    pass


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read a YAML or JSON spec file and validate it; SpecError names the file's problems."""
    import yaml

    text = Path(path).read_text()
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise SpecError([f"(file {path}): not valid {'JSON' if str(path).endswith('.json') else 'YAML'}: {err}"]) from None
    return parse_spec(data)


@dataclasses.dataclass(frozen=True)
class ImportedObjective:
    """The objective by module path: pickles as two strings, imported where it is called (a worker)."""

    module: str
    function: str

    def __call__(self, params: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.function)(params)


def check_objective(spec: ExperimentSpec) -> None:
    module, function = spec.objective_path()
    try:
        fn = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as err:
        raise ObjectiveImportError(f"objective {spec.objective!r} does not import here: {err}") from None
    if not callable(fn):
        raise ObjectiveImportError(f"objective {spec.objective!r} is not callable")


class GridSuggest:
    """A hyperopt ``algo`` that proposes every point of a discrete grid once, in order.

    Points already in the experiment (queued, running or done, from this run or an earlier one) are
    skipped, so a resumed grid never repeats a point; when none is left it proposes nothing and fmin
    stops.
    """

    def __init__(self, points: list[dict[str, Any]]):
        self.points = points

    @staticmethod
    def _key(vals: dict) -> tuple:
        return tuple(sorted((k, v[0] if isinstance(v, list) else v) for k, v in vals.items()))

    def __call__(self, new_ids, domain, trials, seed):
        present = {self._key(t["misc"]["vals"]) for t in trials.trials}
        remaining = [p for p in self.points if self._key(p) not in present]
        docs = []
        for tid, point in zip(new_ids, remaining, strict=False):  # as many as fmin asked for, or fewer
            misc = {"tid": tid, "cmd": domain.cmd, "workdir": domain.workdir,
                    "idxs": {k: [tid] for k in point}, "vals": {k: [v] for k, v in point.items()}}
            docs.extend(trials.new_trial_docs([tid], [None], [domain.new_result()], [misc]))
        return docs


@dataclasses.dataclass
class RunResult:
    exp_key: str
    trials: int
    done: int
    errors: int
    best_loss: float | None
    best_params: dict | None
    #: stopped by a cancel (hyperfleet dashboard) before max_evals
    cancelled: bool = False

    @property
    def succeeded(self) -> bool:
        return self.best_loss is not None


def run_experiment(spec: ExperimentSpec, mongo_url: str, *, check_import: bool = True,
                   show_progressbar: bool = False, connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS) -> RunResult:
    from hyperopt import anneal, atpe, fmin, rand, space_eval, tpe
    from hyperopt.early_stop import no_progress_loss

    from .store import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_VALID_STATES
    from .trials import MongoTrials

    if isinstance(spec.objective, str):
        if check_import:
            check_objective(spec)
        objective = ImportedObjective(*spec.objective_path())
    else:
        objective = objectives.from_spec(spec.objective.model_dump(exclude_none=True))

    space = build_space(spec.space)
    max_evals = spec.max_evals
    if spec.algo == "grid":
        points = grid_points(spec.space)
        algo = GridSuggest(points)
        max_evals = len(points) if max_evals is None else min(max_evals, len(points))
    else:
        algo = {"tpe": tpe.suggest, "rand": rand.suggest, "anneal": anneal.suggest, "atpe": atpe.suggest}[spec.algo]
    early = spec.early_stop
    trials = MongoTrials(mongo_url, exp_key=spec.key, connect_timeout_seconds=connect_timeout_seconds,
                         retries=spec.retries, pruning=spec.pruning)
    trials.store.save_experiment(spec.key, spec.model_dump(mode="json"), max_evals)
    notifier = Notifier(spec.key, spec.notify.webhooks if spec.notify else [])
    stall = StallWatch(spec.notify.stalled_after_minutes * 60) if spec.notify else None
    try:
        with _watching_for_stalls(trials, stall, notifier):
            fmin(objective, space, algo=algo, max_evals=max_evals, trials=trials, max_queue_len=spec.parallelism,
                 timeout=spec.timeout_seconds, loss_threshold=early.loss_threshold if early else None,
                 early_stop_fn=no_progress_loss(early.no_improvement) if early and early.no_improvement else None,
                 rstate=np.random.default_rng(spec.seed), show_progressbar=show_progressbar, return_argmin=False)
    except Exception as err:
        notifier.send("failed", reason=f"the driver stopped: {type(err).__name__}: {err}")
        raise
    trials.refresh()
    try:
        best = trials.best_trial
        best_loss = best["result"]["loss"]
        best_params = space_eval(space, {k: v[0] for k, v in best["misc"]["vals"].items() if v})
    except Exception:  # hyperopt raises AllTrialsFailed when no trial succeeded
        best_loss, best_params = None, None
    result = RunResult(
        exp_key=spec.key,
        trials=trials.count_by_state_unsynced([*JOB_VALID_STATES, JOB_STATE_ERROR]),  # not the withdrawn
        done=trials.count_by_state_unsynced(JOB_STATE_DONE),
        errors=trials.count_by_state_unsynced(JOB_STATE_ERROR),
        best_loss=best_loss,
        best_params=best_params,
        cancelled=trials.store.experiment_cancelled(spec.key),
    )
    notifier.send("finished" if result.succeeded else "failed", done=result.done, error=result.errors,
                  best_loss=result.best_loss, reason="cancelled" if result.cancelled else None)
    return result


@contextlib.contextmanager
def _watching_for_stalls(trials, watch: StallWatch | None, notifier: Notifier):
    """While fmin runs: every few seconds, count the finished and pending trials (from the driver's own
    cache, which fmin keeps fresh), and tell the webhooks once when none finished for
    ``watch.after_seconds`` while some were pending."""
    if watch is None:
        yield
        return
    from .store import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING

    stop = threading.Event()

    def loop():
        while not stop.wait(min(max(watch.after_seconds / 10, 0.2), 30.0)):
            done = trials.counted([JOB_STATE_DONE, JOB_STATE_ERROR])
            pending = trials.counted([JOB_STATE_NEW, JOB_STATE_RUNNING])
            if watch.check(done, pending):
                notifier.send("stalled", reason=f"no trial finished in {watch.after_seconds / 60:g} min",
                              done=done, pending=pending)

    thread = threading.Thread(target=loop, name="hyperfleet-stall-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
