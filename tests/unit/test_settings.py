"""The settings dataclasses (runtime/hyperfleet/settings.py): the defaults the runtime README states are
theirs, and each bound they enforce sits exactly where the message says (the value on the edge passes,
the one beyond it fails, naming the field)."""

import dataclasses
import re

import pytest

from hyperfleet.settings import CONNECT_TIMEOUT_SECONDS, IDLE_POLL_FRACTION, MonitorSettings, WorkerSettings
from tests.helpers import REPO

README = (REPO / "runtime/README.md").read_text()


def readme_worker_table() -> dict[str, str]:
    """The worker's options table: ``--option`` -> its default column."""
    return dict(re.findall(r"^\| `(--[a-z/-]+)` \| ([^|]+?) \|", README, re.MULTILINE))


@pytest.mark.parametrize("option,field", [("--heartbeat-seconds", "heartbeat_seconds"),
                                          ("--poll-interval", "poll_interval_seconds"),
                                          ("--idle-poll-interval", "idle_poll_interval_seconds"),
                                          ("--shutdown-deadline-seconds", "shutdown_deadline_seconds"),
                                          ("--connect-timeout-seconds", "connect_timeout_seconds")])
def test_the_readme_worker_table_states_the_settings_defaults(option, field):
    assert float(readme_worker_table()[option]) == getattr(WorkerSettings, field), f"runtime/README.md {option}"


def test_the_readme_states_where_idle_polling_starts_and_the_connect_timeout():
    (start_ms,) = re.findall(r"idle polling starts at (\d+) ms", README)
    assert WorkerSettings.poll_min_seconds * 1000 == float(start_ms)
    (share,) = re.findall(r"the wait grows up to (\d+)% of the time the worker has been idle", README)
    assert float(share) / 100 == IDLE_POLL_FRACTION
    assert float(readme_worker_table()["--connect-timeout-seconds"]) == CONNECT_TIMEOUT_SECONDS


@pytest.mark.parametrize("option,field", [("--max-retries", "max_retries"),
                                          ("--max-objective-retries", "max_objective_retries"),
                                          ("--metrics-interval-seconds", "metrics_interval_seconds"),
                                          ("--metrics-retention-seconds", "metrics_retention_seconds"),
                                          ("--health-port", "health_port")])
def test_the_readme_monitor_text_states_the_settings_defaults(option, field):
    stated = re.findall(rf"`{option}(?: N)?` \((\d+)", README)
    assert stated, f"runtime/README.md states no default of {option}"
    assert {float(v) for v in stated} == {getattr(MonitorSettings, field)}, f"runtime/README.md {option}"
    assert re.search(r"`requeue` \(default\)", README) and MonitorSettings.policy == "requeue"


@pytest.mark.parametrize("field", ["heartbeat_seconds", "poll_min_seconds", "poll_interval_seconds",
                                   "idle_poll_interval_seconds", "shutdown_deadline_seconds", "connect_timeout_seconds"])
def test_worker_durations_must_be_positive(field):
    with pytest.raises(ValueError, match=rf"^{field} must be > 0, got 0$"):
        WorkerSettings(**{field: 0})
    assert getattr(WorkerSettings(**{"poll_interval_seconds": 1, field: 0.001}), field) == 0.001


@pytest.mark.parametrize("field", ["reserve_timeout_seconds", "last_job_timeout_seconds"])
def test_worker_timeouts_may_be_zero_not_negative(field):
    assert getattr(WorkerSettings(**{field: 0}), field) == 0
    assert getattr(WorkerSettings(**{field: 0.5}), field) == 0.5
    with pytest.raises(ValueError, match=rf"^{field} must be >= 0, got -0.5$"):
        WorkerSettings(**{field: -0.5})


@pytest.mark.parametrize("field", ["max_jobs", "max_consecutive_failures", "max_jobs_in_db"])
def test_worker_counts_start_at_one(field):
    assert getattr(WorkerSettings(**{field: 1}), field) == 1
    with pytest.raises(ValueError, match=rf"^{field} must be >= 1, got 0$"):
        WorkerSettings(**{field: 0})


def test_preload_takes_dotted_module_names_only():
    """The settings check them too, not only the CLI: the worker's forkserver imports each by name."""
    assert WorkerSettings(preload=("json", "scipy.stats")).preload == ("json", "scipy.stats")
    with pytest.raises(ValueError, match=r"^preload: not a module name: 'os; import x'$"):
        WorkerSettings(preload=("json", "os; import x"))


def test_idle_polling_never_starts_above_its_ceiling():
    assert WorkerSettings(poll_min_seconds=0.5, poll_interval_seconds=0.1).poll_min_seconds == 0.1
    assert WorkerSettings(poll_min_seconds=0.1, poll_interval_seconds=0.1).poll_min_seconds == 0.1
    assert WorkerSettings(poll_min_seconds=0.01, poll_interval_seconds=0.1).poll_min_seconds == 0.01


@pytest.mark.parametrize("field", ["grace_seconds", "interval_seconds", "connect_timeout_seconds",
                                   "metrics_interval_seconds", "metrics_retention_seconds"])
def test_monitor_durations_must_be_positive(field):
    with pytest.raises(ValueError, match=rf"^{field} must be > 0, got 0$"):
        MonitorSettings(**{field: 0})
    assert getattr(MonitorSettings(**{field: 0.001}), field) == 0.001


@pytest.mark.parametrize("field", ["max_retries", "max_objective_retries"])
def test_monitor_retry_budgets_may_be_zero_not_negative(field):
    assert getattr(MonitorSettings(**{field: 0}), field) == 0
    with pytest.raises(ValueError, match=rf"^{field} must be >= 0, got -1$"):
        MonitorSettings(**{field: -1})


def test_monitor_policy_and_liveness_checks_are_from_their_lists():
    assert MonitorSettings(policy="error", liveness=("process", "docker", "kubernetes")).policy == "error"
    with pytest.raises(ValueError, match=r"^policy must be one of requeue, error, got 'ignore'$"):
        MonitorSettings(policy="ignore")
    with pytest.raises(ValueError, match=r"unknown liveness check\(s\) \['ssh'\]: use process, docker, kubernetes"):
        MonitorSettings(liveness=("process", "ssh"))


def test_the_documented_off_switches_are_off_by_default():
    # runtime/README.md: trials run in-process unless --subprocesses; docs/dashboard.md: "The commands leave it off"
    assert readme_worker_table()["--subprocesses/--no-subprocesses"] == "in-process"
    assert WorkerSettings().use_subprocesses is False
    assert "The commands leave it off" in (REPO / "docs/dashboard.md").read_text()
    assert MonitorSettings().dashboard_read_token is False


@pytest.mark.parametrize("settings", [WorkerSettings(), MonitorSettings()], ids=["worker", "monitor"])
def test_settings_cannot_change_once_made(settings):
    """Validated once in __post_init__: a later assignment would skip the checks."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.mongo_url = "mongodb://elsewhere/db"


def test_the_dashboard_token_is_not_in_the_monitor_settings_repr():
    settings = MonitorSettings(dashboard_port=8081, dashboard_token="tok-s3cret-9")
    assert "tok-s3cret-9" not in repr(settings) and "dashboard_port=8081" in repr(settings)
