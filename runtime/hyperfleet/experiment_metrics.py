"""Per-experiment metrics on the monitor's ``/metrics``: what the queue looks like, for people and for
autoscalers.

Exported: ``hyperfleet_open_trials``, a gauge of the trials that want a worker now (queued and
running, all experiments): what the chart's KEDA trigger scales the workers on. Then, with an ``exp_key``
label on each (an experiment with no open trial and no newly finished one for
``retention_seconds`` is dropped from all of them, so the label set stays bounded):

* ``hyperfleet_experiment_trials{exp_key, state}``: gauge of trials per state (``queued``,
  ``running``, ``done``, ``error``);
* ``hyperfleet_experiment_queue_wait_seconds{exp_key}``: histogram of ``book_time`` minus the time the
  trial last entered the queue (``hyperfleet.queued_at``; for trials inserted by another client, the
  creation time of their ``_id``);
* ``hyperfleet_experiment_run_seconds{exp_key}``: histogram of the finish (the last ``refresh_time``)
  minus ``book_time``, for DONE and ERROR trials;
* ``hyperfleet_experiment_trials_finished_total{exp_key, state}``: counter of trials seen to finish
  (``done``, ``error``) since the monitor started.

Cost, per refresh: one query per open state (``{state: 0}``, ``{state: 1}``) and, per experiment with
open trials, one per finished state over the tids from the lowest open one on (``{state, exp_key,
tid >= low}``): all ranges of the ``(state, exp_key, tid)`` index, so on MongoDB a refresh reads the
open trials and those finished since the oldest open one, not the experiment. Finished trials below
that watermark are kept as counts. The histograms and the counter observe a trial once, when a refresh
first sees it finished; a trial finished before the monitor started is counted in the gauges only.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter as _Tally

from bson import ObjectId
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .contract import OPEN_TRIALS_METRIC
from .settings import MonitorSettings
from .store import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, STATE_NAMES, JobStore

log = logging.getLogger("hyperfleet.monitor")

#: the ``state`` label of the gauge, for each trial state it reports
GAUGE_STATES = {JOB_STATE_NEW: "queued", JOB_STATE_RUNNING: "running", JOB_STATE_DONE: STATE_NAMES[JOB_STATE_DONE],
                JOB_STATE_ERROR: STATE_NAMES[JOB_STATE_ERROR]}
FINISHED_STATES = (JOB_STATE_DONE, JOB_STATE_ERROR)
QUEUE_WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
RUN_TIME_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400)


@dataclasses.dataclass
class _Experiment:
    #: finished trials with a lower tid are only counted (``below``); from it on they are read each refresh
    low_tid: int = 0
    below: _Tally = dataclasses.field(default_factory=_Tally)
    #: tid -> state of the finished trials from ``low_tid`` on, already observed
    seen: dict[int, int] = dataclasses.field(default_factory=dict)
    last_active: float = 0.0
    #: False until the first refresh: what finished before it is counted, not observed
    started: bool = False


class ExperimentMetrics:
    def __init__(self, registry: CollectorRegistry,
                 retention_seconds: float = MonitorSettings.metrics_retention_seconds, exp_key: str | None = None):
        self.retention_seconds = retention_seconds
        self.exp_key = exp_key
        self.open = Gauge(OPEN_TRIALS_METRIC, "Trials queued or running, all experiments: the work that wants a worker",
                          registry=registry)
        self.trials = Gauge("hyperfleet_experiment_trials", "Trials of an experiment per state", ["exp_key", "state"],
                            registry=registry)
        self.queue_wait = Histogram("hyperfleet_experiment_queue_wait_seconds",
                                    "Time from entering the queue to being booked by a worker", ["exp_key"],
                                    registry=registry, buckets=QUEUE_WAIT_BUCKETS)
        self.run_time = Histogram("hyperfleet_experiment_run_seconds", "Time from booking to DONE or ERROR",
                                  ["exp_key"], registry=registry, buckets=RUN_TIME_BUCKETS)
        self.finished = Counter("hyperfleet_experiment_trials_finished", "Trials seen to finish, per outcome",
                                ["exp_key", "state"], registry=registry)
        self._experiments: dict[str, _Experiment] = {}

    @property
    def experiments(self) -> list[str]:
        return sorted(self._experiments)

    def refresh(self, store: JobStore, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        open_tids: dict[str, dict[int, int]] = {}
        found = store.open_trials(self.exp_key)
        self.open.set(len(found))
        for doc in found:
            if doc.get("exp_key") is not None and isinstance(doc.get("tid"), int):
                open_tids.setdefault(doc["exp_key"], {})[doc["tid"]] = doc["state"]
        for key in open_tids.keys() - self._experiments.keys():
            self._experiments[key] = _Experiment(last_active=now)
        for key in list(self._experiments):
            exp, tids = self._experiments[key], open_tids.get(key, {})
            if tids and min(tids) < exp.low_tid:  # queued again below the watermark: count it afresh
                exp = self._experiments[key] = _Experiment(last_active=now)
            finished_any = self._read_finished(store, key, exp, tids)
            if tids or finished_any:
                exp.last_active = now
            elif now - exp.last_active > self.retention_seconds:
                self._forget(key)
                continue
            self._publish(key, exp, tids)

    def _read_finished(self, store: JobStore, key: str, exp: _Experiment, open_tids: dict[int, int]) -> bool:
        """Observe the trials finished since the last refresh; True when there were any."""
        new = 0
        for tid in exp.seen.keys() & open_tids.keys():  # queued again (a retry): it will finish again
            del exp.seen[tid]
        for state in FINISHED_STATES:
            for doc in store.finished_trials(key, state, exp.low_tid):
                if exp.seen.get(doc["tid"]) == state:
                    continue
                exp.seen[doc["tid"]] = state
                new += 1
                if exp.started:
                    self._observe(key, state, doc)
        exp.started = True
        # the watermark: the lowest open tid, or past everything seen when nothing is open
        low = min(open_tids) if open_tids else max(exp.seen, default=exp.low_tid - 1) + 1
        if low > exp.low_tid:
            for tid in [t for t in exp.seen if t < low]:
                exp.below[exp.seen.pop(tid)] += 1
            exp.low_tid = low
        return new > 0

    def _observe(self, key: str, state: int, doc: dict) -> None:
        self.finished.labels(exp_key=key, state=GAUGE_STATES[state]).inc()
        booked, finished = doc.get("book_time"), doc.get("refresh_time")
        queued = (doc.get("hyperfleet") or {}).get("queued_at")
        if queued is None and isinstance(doc.get("_id"), ObjectId):
            queued = doc["_id"].generation_time
        if booked is not None and queued is not None:
            wait = (booked - _naive_utc(queued)).total_seconds()
            self.queue_wait.labels(exp_key=key).observe(max(0.0, wait))
        if booked is not None and finished is not None:
            self.run_time.labels(exp_key=key).observe(max(0.0, (finished - booked).total_seconds()))

    def _publish(self, key: str, exp: _Experiment, open_tids: dict[int, int]) -> None:
        counts = _Tally(open_tids.values()) + exp.below + _Tally(exp.seen.values())
        for state, label in GAUGE_STATES.items():
            self.trials.labels(exp_key=key, state=label).set(counts.get(state, 0))

    def _forget(self, key: str) -> None:
        del self._experiments[key]
        for label in GAUGE_STATES.values():
            for metric in (self.trials, self.finished):
                try:
                    metric.remove(key, label)
                except KeyError:
                    pass
        for metric in (self.queue_wait, self.run_time):
            try:
                metric.remove(key)
            except KeyError:
                pass


def _naive_utc(moment):
    """pymongo returns naive UTC datetimes; an ObjectId's time is aware."""
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment


def run_refresher(metrics: ExperimentMetrics, store_of, interval_seconds: float, stop: threading.Event) -> threading.Thread:
    """Refresh every ``interval_seconds`` in a thread of its own, so a slow refresh never delays a
    sweep. ``store_of()`` returns the monitor's current store (None while MongoDB is unreachable)."""

    def loop() -> None:
        while not stop.wait(interval_seconds):
            store = store_of()
            if store is None:
                continue
            try:
                metrics.refresh(store)
            except Exception as err:  # noqa: BLE001 - an outage is the sweep's to report; try again next time
                log.debug("experiment metrics not refreshed: %s", err)

    thread = threading.Thread(target=loop, name="hyperfleet-experiment-metrics", daemon=True)
    thread.start()
    return thread
