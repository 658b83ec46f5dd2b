"""The timeout monitor: find RUNNING trials whose worker is gone and put them back in the queue.

A trial is orphaned when its heartbeat (``refresh_time``, server clock) is older than
``grace_seconds``, or sooner when a liveness check says its holder is gone (the process on this host,
the Docker container, the Kubernetes pod). Orphans are requeued until ``max_retries``, then marked
ERROR; with the ``error`` policy they are marked ERROR at once, as hyperkops did.

Every change is a conditional update on the trial exactly as the sweep saw it (same owner, same
``refresh_time``), so a result written a moment before is never overwritten, a worker that
heartbeats in between keeps its trial, and two monitors never recover a trial twice.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pymongo.errors import PyMongoError

from .engines import EngineAccess
from .experiment_metrics import ExperimentMetrics, run_refresher
from .liveness import DockerLiveness, KubernetesLiveness, LivenessCheck, ProcessLiveness
from .mongo_url import MongoAddress, parse_mongo_url
from .settings import MonitorSettings
from .shutdown import watch_stop_signals
from .store import CredentialsRefused, JobStore, OutageLog

log = logging.getLogger("hyperfleet.monitor")


@dataclasses.dataclass
class SweepReport:
    running: int = 0
    requeued: int = 0
    errored: int = 0
    retried: int = 0
    seconds: float = 0.0


class Metrics:
    """The monitor's own metrics, and the experiments' (hyperfleet.experiment_metrics) in the same registry."""

    def __init__(self, retention_seconds: float = MonitorSettings.metrics_retention_seconds, exp_key: str | None = None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.experiments = ExperimentMetrics(r, retention_seconds, exp_key)
        self.reaped = Counter("hyperfleet_monitor_trials_reaped", "Orphaned trials recovered, by how they were detected",
                              ["cause"], registry=r)
        self.requeued = Counter("hyperfleet_monitor_trials_requeued", "Orphaned trials put back in the queue", registry=r)
        self.errored = Counter("hyperfleet_monitor_trials_errored", "Orphaned trials marked ERROR", registry=r)
        self.retried = Counter("hyperfleet_monitor_objective_retries", "Failed trials queued again", registry=r)
        self.sweep_seconds = Histogram("hyperfleet_monitor_sweep_duration_seconds", "Time of one sweep", registry=r,
                                       buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.detection_seconds = Histogram(
            "hyperfleet_monitor_detection_latency_seconds", "Last heartbeat of an orphan to its recovery",
            registry=r, buckets=(0.5, 1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 300))
        self.running = Gauge("hyperfleet_monitor_running_trials", "RUNNING trials seen by the last sweep", registry=r)
        self.up = Gauge("hyperfleet_monitor_mongo_up", "1 when the last sweep reached MongoDB", registry=r)


#: the longest wait between two sweeps while MongoDB is unreachable (each attempt already waits the
#: connect timeout)
OUTAGE_BACKOFF_SECONDS = 5.0


class Reaper:
    """One sweep at a time; the loop, signals and health endpoint are in ``run_monitor``."""

    def __init__(self, store: JobStore, settings: MonitorSettings, checks: list[LivenessCheck] | None = None,
                 metrics: Metrics | None = None):
        self.store = store
        self.settings = settings
        self.checks = build_checks(settings) if checks is None else checks
        self.metrics = metrics or Metrics()
        #: after a MongoDB outage, the server time it ended: a heartbeat missed during it is not the worker's fault
        self.heartbeats_judged_from = None
        #: the server time the last sweep began (read at its start)
        self.last_sweep_at = None

    def sweep(self) -> SweepReport:
        started = time.perf_counter()
        s = self.settings
        report = SweepReport()
        now = self.store.server_time()
        if self.last_sweep_at is not None and (now - self.last_sweep_at).total_seconds() > s.grace_seconds / 2:
            # the monitor was not watching (a server that stalled or restarted while its calls waited for it,
            # raising nothing, or a monitor starved of CPU): the workers may not have reached the server
            # either, so their heartbeats are judged from now, as after an outage that raised
            self.heartbeats_judged_from = now
        self.last_sweep_at = now
        running = self.store.running_trials(s.exp_key)
        report.running = len(running)
        if running:
            for check in self.checks:
                check.refresh()
        for trial in running:
            cause, reason = self._orphaned(trial, now)
            if cause:
                self._recover(trial, cause, reason, now, report)
        if s.max_objective_retries:
            for trial in self.store.failed_trials(s.max_objective_retries, s.exp_key):
                failures = trial["hyperfleet"]["objective_failures"]
                if self.store.retry_failed(trial, f"objective failed ({failures} of {s.max_objective_retries + 1} tries)"):
                    report.retried += 1
                    self.metrics.retried.inc()
                    log.info("trial %s failed in its objective; queued again (%d/%d)", trial["tid"], failures,
                             s.max_objective_retries)
        report.seconds = time.perf_counter() - started
        self.metrics.sweep_seconds.observe(report.seconds)
        self.metrics.running.set(report.running)
        return report

    def _orphaned(self, trial: dict, now) -> tuple[str | None, str]:
        # a liveness check first: when the holder is known gone, that is the reason to give, even if the
        # heartbeat has also run out by now (a sweep that came late, after a stall shorter than half the grace)
        worker = (trial.get("hyperfleet") or {}).get("worker") or {}
        for check in self.checks:
            reason = check.gone(worker)
            if reason:
                return check.name, reason
        refreshed = trial.get("refresh_time") or trial.get("book_time")
        if refreshed is not None and self.heartbeats_judged_from is not None:
            refreshed = max(refreshed, self.heartbeats_judged_from)
        if refreshed is not None:
            age = (now - refreshed).total_seconds()
            if age > self.settings.grace_seconds:
                return "heartbeat", f"no heartbeat for {age:.1f}s"
        return None, ""

    def _recover(self, trial: dict, cause: str, reason: str, now, report: SweepReport) -> None:
        s = self.settings
        recovered = (trial.get("hyperfleet") or {}).get("orphaned", 0)
        if s.policy == "requeue" and recovered < s.max_retries:
            done = self.store.requeue_orphan(trial, reason)
            outcome = "requeued"
        else:
            if s.policy == "requeue":
                reason = f"{reason}; retry budget of {s.max_retries} spent"
            done = self.store.error_orphan(trial, reason)
            outcome = "marked ERROR"
        if not done:  # finished, heartbeated or recovered by another monitor since the sweep read it
            return
        if outcome == "requeued":
            report.requeued += 1
            self.metrics.requeued.inc()
        else:
            report.errored += 1
            self.metrics.errored.inc()
        self.metrics.reaped.labels(cause=cause).inc()
        if trial.get("refresh_time") is not None:
            self.metrics.detection_seconds.observe(max(0.0, (now - trial["refresh_time"]).total_seconds()))
        log.warning("trial %s (%s) %s: %s", trial["tid"], trial.get("exp_key"), outcome, reason)


def build_checks(settings: MonitorSettings) -> list[LivenessCheck]:
    checks: list[LivenessCheck] = []
    if "process" in settings.liveness:
        checks.append(ProcessLiveness())
    if "docker" in settings.liveness:
        checks.append(DockerLiveness(settings.docker_url, engine_id=settings.docker_engine_id))
        checks += [DockerLiveness(engine_id=url, access=EngineAccess(url, cert_path=settings.docker_cert_path))
                   for url in settings.docker_engines]
    if "kubernetes" in settings.liveness:
        checks.append(KubernetesLiveness(settings.namespace, settings.label_selector))
    return checks


class Health:
    """What /healthz reports: healthy while sweeps keep succeeding."""

    def __init__(self, interval_seconds: float):
        self.stale_after = max(3 * interval_seconds, 10.0)
        self.last_ok: float | None = None
        self.last_error = "no sweep yet"

    def ok(self) -> tuple[bool, str]:
        if self.last_ok is None:
            return False, self.last_error
        age = time.monotonic() - self.last_ok
        if age > self.stale_after:
            return False, f"last successful sweep {age:.0f}s ago: {self.last_error}"
        return True, "ok"


def serve_health(host: str, port: int, health: Health, metrics: Metrics) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/healthz":
                ok, text = health.ok()
                self._reply(200 if ok else 503, "text/plain; charset=utf-8", (text + "\n").encode())
            elif self.path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found\n")

        def _reply(self, status: int, content_type: str, body: bytes):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="hyperfleet-health", daemon=True).start()
    return server


def _serve_dashboard(settings: MonitorSettings, address: MongoAddress):
    """The dashboard in a thread, with its own connection (it reads while sweeps write)."""
    from .dashboard.app import serve

    store = JobStore.connect(address, timeout_seconds=settings.connect_timeout_seconds, check=False)
    log.info("dashboard on http://%s:%d/%s%s", settings.health_host, settings.dashboard_port,
             "" if settings.dashboard_token else " (actions off: no token)",
             " (reads need the token)" if settings.dashboard_read_token else "")
    return serve(store, settings.health_host, settings.dashboard_port, settings.dashboard_token, in_thread=True,
                 read_token=settings.dashboard_read_token)


def run_monitor(settings: MonitorSettings, stop: threading.Event | None = None) -> int:
    """Sweep every ``interval_seconds`` until SIGTERM/SIGINT; MongoDB outages are retried with backoff."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        def on_stop_signal(name: str) -> None:
            log.info("%s received: stopping", name)
            stop.set()

        watch_stop_signals(on_stop_signal)
    metrics, health = Metrics(settings.metrics_retention_seconds, settings.exp_key), Health(settings.interval_seconds)
    server = serve_health(settings.health_host, settings.health_port, health, metrics) if settings.health_port else None
    address = parse_mongo_url(settings.mongo_url)
    if settings.collection:
        address = dataclasses.replace(address, collection=settings.collection)
    dashboard = _serve_dashboard(settings, address) if settings.dashboard_port else None
    store, reaper, backoff = None, None, settings.interval_seconds
    outage = OutageLog(log, "sweep")
    if server:
        run_refresher(metrics.experiments, lambda: store, settings.metrics_interval_seconds, stop)
    log.info("monitor watching %s (grace %gs, every %gs, policy %s, liveness %s)", address.redacted(),
             settings.grace_seconds, settings.interval_seconds, settings.policy, ",".join(settings.liveness) or "none")
    try:
        while not stop.is_set():
            try:
                if store is None:
                    store = JobStore.connect(address, timeout_seconds=settings.connect_timeout_seconds)
                    reaper = Reaper(store, settings, metrics=metrics)
                if outage.ongoing:  # the workers could not heartbeat either: their clocks restart now
                    reaper.heartbeats_judged_from = store.server_time()
                reaper.sweep()
                outage.succeeded()
                health.last_ok, backoff = time.monotonic(), settings.interval_seconds
                metrics.up.set(1)
            except CredentialsRefused:
                raise  # a wrong password stays wrong: the command line says so and exits
            except (PyMongoError, OSError, RuntimeError) as err:  # StoreUnavailable is a RuntimeError
                health.last_error = str(err)
                metrics.up.set(0)
                outage.failed(err)
                stop.wait(backoff)
                backoff = min(backoff * 2, max(settings.interval_seconds, OUTAGE_BACKOFF_SECONDS))
                continue
            stop.wait(settings.interval_seconds)
    finally:
        if server:
            server.shutdown()
        if dashboard:
            dashboard.should_exit = True
        if store:
            store.close()
    return 0
