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
* ``hyperfleet_running_trials_per_gpu{host, gpu}``: gauge of the trials running on each GPU (workers pinned
  to one, all experiments; hyperfleet.placement), 0 once a GPU's trials end;
* ``hyperfleet_experiment_trials_finished_total{exp_key, state}``: counter of trials seen to finish
  (``done``, ``error``) since the monitor started;
* ``hyperfleet_experiment_pruned_trials{exp_key}``: gauge of the done trials that the experiment's
  pruning rule stopped early (``hyperfleet.pruned``; the ``done`` state above counts them too), and
  ``hyperfleet_experiment_trials_pruned_total{exp_key}``, a counter of those seen to finish since the
  monitor started (read with the finished trials' times: no query of their own).

And, without a label, ``hyperfleet_experiment_metrics_last_refresh_timestamp_seconds``: when the last
refresh ended (0 before the first); an alert on its age finds metrics that stopped moving.

Cost, per refresh: one query per open state (``{state: 0}``, ``{state: 1}``, served by the state
index), the ``job_ids`` counter, and one lookup by ``_id`` per trial that left the open set since the
last refresh: O(what changed), on any server. Two cases read more: an experiment seen for the first
time is counted once with ``{state, exp_key}`` per finished state, and when trial ids were handed out
that no refresh saw open (trials queued and finished between two refreshes), the finished trials from
the lowest such id on are read per experiment (``{state, exp_key, tid >= low}``: a range of the
``(state, exp_key, tid)`` index on mongod; FerretDB reads every finished trial of the experiment).

The histograms and the counters observe a trial once, when a refresh first finds it finished; one
finished before the monitor's first refresh (its id handed out before it) is in the gauges only.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter as _Tally

from bson import ObjectId
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .contract import OPEN_TRIALS_METRIC, RUNNING_PER_GPU_METRIC
from .placement import WORKER_FIELDS, gpu_of, host_of, worker_of
from .settings import MonitorSettings
from .status import is_pruned
from .store import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, STATE_NAMES, HandedOutIds, JobStore

log = logging.getLogger("hyperfleet.monitor")

#: the ``state`` label of the gauge, for each trial state it reports
GAUGE_STATES = {JOB_STATE_NEW: "queued", JOB_STATE_RUNNING: "running", JOB_STATE_DONE: STATE_NAMES[JOB_STATE_DONE],
                JOB_STATE_ERROR: STATE_NAMES[JOB_STATE_ERROR]}
FINISHED_STATES = (JOB_STATE_DONE, JOB_STATE_ERROR)
QUEUE_WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
RUN_TIME_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400)


@dataclasses.dataclass
class _Experiment:
    #: tid -> state of every finished trial (DONE or ERROR) counted so far
    finished: dict[int, int] = dataclasses.field(default_factory=dict)
    #: tid -> _id of the trials open (NEW or RUNNING) at the last refresh
    open: dict[int, ObjectId] = dataclasses.field(default_factory=dict)
    #: the tids of the finished trials that their pruning rule stopped
    pruned: set[int] = dataclasses.field(default_factory=set)
    last_active: float = 0.0


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
        self.pruned = Gauge("hyperfleet_experiment_pruned_trials",
                            "Done trials of an experiment that its pruning rule stopped early", ["exp_key"],
                            registry=registry)
        self.pruned_seen = Counter("hyperfleet_experiment_trials_pruned", "Trials seen to finish pruned",
                                   ["exp_key"], registry=registry)
        self.on_gpus = Gauge(RUNNING_PER_GPU_METRIC, "Trials running on each GPU (workers pinned to one), all experiments",
                             ["host", "gpu"], registry=registry)
        self.refreshed = Gauge("hyperfleet_experiment_metrics_last_refresh_timestamp_seconds",
                               "Unix time of the last refresh of the experiment metrics (0: none yet)", registry=registry)
        self._experiments: dict[str, _Experiment] = {}
        self._gpus: set[tuple[str, str]] = set()  # every (host, gpu) seen running a trial
        #: ids the job_ids counter handed out that no refresh saw open nor found finished yet
        self._handed_out = HandedOutIds()

    @property
    def experiments(self) -> list[str]:
        return sorted(self._experiments)

    def refresh(self, store: JobStore, now: float | None = None) -> float:
        """Read what changed and publish it; returns the seconds spent counting newly seen experiments
        (a one-off cost, which the refresher's pacing leaves out)."""
        now = time.monotonic() if now is None else now
        first_counts = 0.0
        last_tid = store.last_tid()
        found = store.open_trials(self.exp_key, fields=["exp_key", "tid", "state", *WORKER_FIELDS])
        self.open.set(len(found))
        self._count_gpus([d for d in found if d.get("state") == JOB_STATE_RUNNING])
        open_now: dict[str, dict[int, ObjectId]] = {}
        open_states: dict[str, _Tally] = {}
        for doc in found:
            if doc.get("exp_key") is not None and isinstance(doc.get("tid"), int):
                open_now.setdefault(doc["exp_key"], {})[doc["tid"]] = doc["_id"]
                open_states.setdefault(doc["exp_key"], _Tally())[doc["state"]] += 1
        # ids handed out since that are not open now (queued and finished in between, or not inserted
        # yet, or never): the range read below finds the finished ones
        self._handed_out.note(last_tid, lambda tid: any(tid in tids for tids in open_now.values()))
        unseen_from = self._handed_out.lowest()
        for key in open_now.keys() - self._experiments.keys():
            started = time.monotonic()
            self._experiments[key] = self._first_count(store, key, now)
            first_counts += time.monotonic() - started
        for key in list(self._experiments):
            exp, tids = self._experiments[key], open_now.get(key, {})
            changed = self._update(store, key, exp, tids, unseen_from)
            if tids or changed:
                exp.last_active = now
            elif now - exp.last_active > self.retention_seconds:
                self._forget(key)
                continue
            self._publish(key, exp, open_states.get(key, _Tally()))
        self._handed_out.looked(lambda tid: any(tid in exp.finished for exp in self._experiments.values()))
        self.refreshed.set_to_current_time()
        return first_counts

    def _count_gpus(self, running: list[dict]) -> None:
        """hyperfleet_running_trials_per_gpu{host, gpu}: a GPU's series stays, at 0, once its trials end."""
        counts: dict[tuple[str, str], int] = {}
        for doc in running:
            worker = worker_of(doc)
            if gpu_of(worker) is not None:
                place = (str(host_of(worker)), str(gpu_of(worker)))
                counts[place] = counts.get(place, 0) + 1
        self._gpus.update(counts)
        for place in self._gpus:
            self.on_gpus.labels(*place).set(counts.get(place, 0))

    def _first_count(self, store: JobStore, key: str, now: float) -> _Experiment:
        """A newly seen experiment: its finished trials counted, and observed too when their ids were
        handed out since the first refresh (they finished since, before a refresh saw them open);
        the others ended before the monitor looked."""
        exp = _Experiment(last_active=now)
        for state in FINISHED_STATES:
            for doc in store.finished_trials(key, state, 0):
                if self._handed_out.looking_for(doc["tid"]):
                    self._count(key, exp, doc)
                    continue
                exp.finished[doc["tid"]] = state
                if is_pruned(doc):
                    exp.pruned.add(doc["tid"])
        return exp

    def _update(self, store: JobStore, key: str, exp: _Experiment, open_now: dict[int, ObjectId],
                unseen_from: int | None) -> bool:
        """Observe what finished since the last refresh; True when something did."""
        new = 0
        for tid in exp.finished.keys() & open_now.keys():  # queued again (a retry, a requeue from the dashboard)
            del exp.finished[tid]
            exp.pruned.discard(tid)
        for tid in exp.open.keys() - open_now.keys():  # left the queue: how did it end?
            doc = store.trial_times(exp.open[tid])
            if doc is not None and doc.get("state") in FINISHED_STATES and doc.get("tid") not in exp.finished:
                self._count(key, exp, doc)
                new += 1
        if unseen_from is not None:
            for state in FINISHED_STATES:
                for doc in store.finished_trials(key, state, unseen_from):
                    if doc["tid"] not in exp.finished:
                        self._count(key, exp, doc)
                        new += 1
        exp.open = dict(open_now)
        return new > 0

    def _count(self, key: str, exp: _Experiment, doc: dict) -> None:
        exp.finished[doc["tid"]] = doc["state"]
        if is_pruned(doc):
            exp.pruned.add(doc["tid"])
            self.pruned_seen.labels(exp_key=key).inc()
        self._observe(key, doc["state"], doc)

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

    def _publish(self, key: str, exp: _Experiment, open_states: _Tally) -> None:
        counts = _Tally(exp.finished.values()) + open_states
        for state, label in GAUGE_STATES.items():
            self.trials.labels(exp_key=key, state=label).set(counts.get(state, 0))
        self.pruned.labels(exp_key=key).set(len(exp.pruned))

    def _forget(self, key: str) -> None:
        del self._experiments[key]
        for label in GAUGE_STATES.values():
            for metric in (self.trials, self.finished):
                try:
                    metric.remove(key, label)
                except KeyError:
                    pass
        for metric in (self.queue_wait, self.run_time, self.pruned, self.pruned_seen):
            try:
                metric.remove(key)
            except KeyError:
                pass


def _naive_utc(moment):
    """pymongo returns naive UTC datetimes; an ObjectId's time is aware."""
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment


#: a refresh waits at least this many times as long as the previous one took (first counts of new
#: experiments left out), so that on a slow server the metrics take at most about a fifth of its time
REFRESH_DUTY_FACTOR = 4.0


def run_refresher(metrics: ExperimentMetrics, store_of, interval_seconds: float, stop: threading.Event) -> threading.Thread:
    """Refresh every ``interval_seconds`` (or :data:`REFRESH_DUTY_FACTOR` times the last refresh's
    time, if longer) in a thread of its own, so a slow refresh never delays a sweep. ``store_of()``
    returns the monitor's current store (None while MongoDB is unreachable)."""

    def loop() -> None:
        took = 0.0
        while not stop.wait(max(interval_seconds, REFRESH_DUTY_FACTOR * took)):
            store = store_of()
            if store is None:
                continue
            started, one_off = time.monotonic(), 0.0
            try:
                one_off = metrics.refresh(store)
            except Exception as err:  # noqa: BLE001 - an outage is the sweep's to report; try again next time
                log.debug("experiment metrics not refreshed: %s", err)
            took = time.monotonic() - started - one_off

    thread = threading.Thread(target=loop, name="hyperfleet-experiment-metrics", daemon=True)
    thread.start()
    return thread
