"""`hyperfleet status`: experiments with counts per state, best loss, trials per minute and ETA.

Pruned trials (stopped early by the experiment's pruning rule: DONE with a ``hyperfleet.pruned`` mark)
are counted among the done ones, and on their own as ``pruned``.

The rate is measured over the last ``window_seconds`` of finished trials (DONE or ERROR), by the
database server's clock, so it follows the current number of workers rather than the whole run.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from typing import Any

from .placement import WORKER_FIELDS, running_per_gpu
from .store import JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, JobStore

RATE_WINDOW_SECONDS = 600.0


@dataclasses.dataclass
class ExperimentStatus:
    exp_key: str
    new: int
    running: int
    done: int
    error: int
    max_evals: int | None
    best_loss: float | None
    best_tid: int | None
    trials_per_minute: float | None
    eta_seconds: float | None
    #: queued, then withdrawn when fmin stopped early (timeout, loss threshold, early stop)
    cancelled: int = 0
    #: of the done ones, those its pruning rule stopped early
    pruned: int = 0
    #: running trials per GPU, by "host gpu N" (hyperfleet.placement); empty without GPUs
    running_per_gpu: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.done + self.error

    @property
    def total(self) -> int:
        return self.new + self.running + self.done + self.error

    @property
    def complete(self) -> bool:
        if self.new or self.running:
            return False
        return bool(self.cancelled) or (self.max_evals is not None and self.finished >= self.max_evals)

    def as_dict(self) -> dict[str, Any]:
        # queued and open (queued + running: the trials that want a worker now) are what a script that
        # sizes a worker pool reads (`hyperfleet status --json`)
        return {**dataclasses.asdict(self), "queued": self.new, "open": self.new + self.running,
                "finished": self.finished, "total": self.total, "complete": self.complete}


def experiment_status(store: JobStore, exp_key: str, window_seconds: float = RATE_WINDOW_SECONDS) -> ExperimentStatus:
    """The status from the database: an aggregation and a few indexed queries."""
    counts = store.state_counts(exp_key)
    record = store.experiment(exp_key) or {}
    now = store.server_time()
    status = summarize(exp_key, counts, store.best_trial(exp_key), store.first_booked(exp_key),
                       lambda since: store.finished_since(exp_key, since), now, record.get("max_evals"), window_seconds,
                       pruned=store.pruned_count(exp_key))
    if status.running:  # served by the (state, exp_key, tid) index
        status.running_per_gpu = running_per_gpu(store.jobs.find({"state": JOB_STATE_RUNNING, "exp_key": exp_key},
                                                                 projection=WORKER_FIELDS))
    return status


def status_from_docs(exp_key: str, docs, now: _dt.datetime, max_evals: int | None,
                     window_seconds: float = RATE_WINDOW_SECONDS) -> ExperimentStatus:
    """The same status from an experiment's trial documents already at hand (the dashboard's cache)."""
    docs = list(docs)
    counts: dict[int, int] = {}
    for d in docs:
        counts[d["state"]] = counts.get(d["state"], 0) + 1
    ok = [d for d in docs if d["state"] == JOB_STATE_DONE and (d.get("result") or {}).get("status") == "ok"
          and isinstance(d["result"].get("loss"), (int, float))]
    best = min(ok, key=lambda d: d["result"]["loss"], default=None)
    booked = [d["book_time"] for d in docs if d.get("book_time") is not None]
    finished = [d["refresh_time"] for d in docs if d["state"] in (JOB_STATE_DONE, JOB_STATE_ERROR)
                and d.get("refresh_time") is not None]
    pruned = sum(1 for d in docs if d["state"] == JOB_STATE_DONE and is_pruned(d))
    status = summarize(exp_key, counts, best, min(booked, default=None),
                       lambda since: sum(t >= since for t in finished), now, max_evals, window_seconds, pruned=pruned)
    status.running_per_gpu = running_per_gpu(d for d in docs if d["state"] == JOB_STATE_RUNNING)
    return status


def is_pruned(doc) -> bool:
    """Did the experiment's pruning rule stop this trial early (its ``hyperfleet.pruned`` mark)?"""
    return bool((doc.get("hyperfleet") or {}).get("pruned"))


def summarize(exp_key: str, counts: dict[int, int], best: dict | None, first_booked: _dt.datetime | None,
              finished_since, now: _dt.datetime, max_evals: int | None, window_seconds: float,
              pruned: int = 0) -> ExperimentStatus:
    """Counts, best, the rate over the last ``window_seconds`` of finished trials and the ETA: one
    formula for both sources. ``finished_since(t)``: trials DONE or ERROR since ``t``."""
    done, error = counts.get(JOB_STATE_DONE, 0), counts.get(JOB_STATE_ERROR, 0)
    rate = None
    if first_booked is not None:
        elapsed = min(window_seconds, (now - first_booked).total_seconds())
        if elapsed > 0:
            rate = finished_since(now - _dt.timedelta(seconds=window_seconds)) / elapsed * 60.0
    eta = None
    if max_evals is not None and rate:
        eta = max(0, max_evals - done - error) / rate * 60.0
    return ExperimentStatus(
        exp_key=exp_key, new=counts.get(JOB_STATE_NEW, 0), running=counts.get(JOB_STATE_RUNNING, 0),
        done=done, error=error, max_evals=max_evals,
        best_loss=best["result"]["loss"] if best else None, best_tid=best["tid"] if best else None,
        trials_per_minute=rate, eta_seconds=eta, cancelled=counts.get(JOB_STATE_CANCEL, 0), pruned=pruned,
    )


def all_statuses(store: JobStore, exp_key: str | None = None) -> list[ExperimentStatus]:
    keys = [exp_key] if exp_key else store.experiment_keys()
    return [experiment_status(store, key) for key in keys]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def status_table(statuses: list[ExperimentStatus]):
    from rich.table import Table

    table = Table(title="hyperfleet experiments", collapse_padding=True)
    # short headers, and the name never cut: in 80 columns the numbers give way, not the experiment
    width = max([len("experiment")] + [len(s.exp_key) for s in statuses])
    table.add_column("experiment", justify="left", no_wrap=True, min_width=width)
    for column in ("new", "run", "done", "prn", "err", "max", "best", "tid", "/min", "ETA"):
        table.add_column(column, justify="right", overflow="fold", min_width=len(column))
    for s in statuses:
        table.add_row(
            s.exp_key, str(s.new), str(s.running), str(s.done), str(s.pruned), str(s.error),
            "-" if s.max_evals is None else str(s.max_evals),
            "-" if s.best_loss is None else f"{s.best_loss:.6g}", "-" if s.best_tid is None else str(s.best_tid),
            "-" if s.trials_per_minute is None else f"{s.trials_per_minute:.1f}",
            "done" if s.complete else format_duration(s.eta_seconds),
        )
    on_gpus = [f"{s.exp_key}: " + ", ".join(f"{where} ({n})" for where, n in s.running_per_gpu.items())
               for s in statuses if s.running_per_gpu]
    if on_gpus:
        table.caption = "running per GPU: " + "; ".join(on_gpus)
    return table


def watch(store: JobStore, exp_key: str | None, interval_seconds: float, console=None,
          until_complete: bool = True) -> list[ExperimentStatus]:
    """Redraw a progress bar per experiment until every one is complete (or Ctrl-C)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = console or Console()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeRemainingColumn())
    tasks: dict[str, Any] = {}
    statuses: list[ExperimentStatus] = []
    with Progress(*columns, console=console, transient=False) as progress:
        try:
            while True:
                statuses = all_statuses(store, exp_key)
                for s in statuses:
                    detail = (f"{s.running} running, {s.error} error, "
                              + (f"{s.pruned} pruned, " if s.pruned else "") + "best "
                              + ("-" if s.best_loss is None else f"{s.best_loss:.4g}")
                              + ("" if s.trials_per_minute is None else f", {s.trials_per_minute:.1f}/min"))
                    total = s.max_evals or max(s.total, 1)
                    if s.exp_key not in tasks:
                        tasks[s.exp_key] = progress.add_task(s.exp_key, total=total, detail=detail)
                    progress.update(tasks[s.exp_key], completed=s.finished, total=total, detail=detail)
                if until_complete and statuses and all(s.complete for s in statuses):
                    break
                time.sleep(interval_seconds)
        except KeyboardInterrupt:
            pass
    return statuses
