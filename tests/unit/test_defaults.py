"""One place for each default: the settings dataclasses (runtime/hyperfleet/settings.py). The command
line and the stack config take theirs from there (docs/stack-config.md is made from the stack config);
the chart's values.yaml can't import Python, so this test reads it and fails when it says otherwise."""

import inspect

import click
import pytest
import yaml

from hyperfleet.cli import monitor, worker
from hyperfleet import driver, settings, store, trials
from hyperfleet.settings import MonitorSettings, WorkerSettings
from tests.helpers import REPO

# settings field, the command and its option, and the values.yaml path (None: not there)
DEFAULTS = [
    (WorkerSettings, "heartbeat_seconds", worker, "heartbeat_seconds", "workers.heartbeatSeconds"),
    (WorkerSettings, "poll_interval_seconds", worker, "poll_interval_seconds", "workers.pollIntervalSeconds"),
    (WorkerSettings, "use_subprocesses", worker, "use_subprocesses", None),
    (WorkerSettings, "shutdown_deadline_seconds", worker, "shutdown_deadline_seconds", None),
    (WorkerSettings, "connect_timeout_seconds", worker, "connect_timeout_seconds", None),
    (WorkerSettings, "mongo_url", worker, "mongo_url", None),
    (MonitorSettings, "grace_seconds", monitor, "grace_seconds", "monitor.graceSeconds"),
    (MonitorSettings, "interval_seconds", monitor, "interval_seconds", "monitor.intervalSeconds"),
    (MonitorSettings, "policy", monitor, "policy", "monitor.policy"),
    (MonitorSettings, "max_retries", monitor, "max_retries", "monitor.maxRetries"),
    (MonitorSettings, "max_objective_retries", monitor, "max_objective_retries", None),
    (MonitorSettings, "liveness", monitor, "liveness", None),
    (MonitorSettings, "health_port", monitor, "health_port", None),
    (MonitorSettings, "connect_timeout_seconds", monitor, "connect_timeout_seconds", None),
]
VALUES = yaml.safe_load((REPO / "charts/hyperfleet/values.yaml").read_text())


def option(command: click.Command, name: str) -> click.Option:
    return next(p for p in command.params if p.name == name)


@pytest.mark.parametrize("settings,field,command,name,values_path", DEFAULTS,
                         ids=[f"{d[0].__name__}.{d[1]}" for d in DEFAULTS])
def test_every_copy_of_a_default_is_the_settings_value(settings, field, command, name, values_path):
    expected = getattr(settings, field)
    assert option(command, name).default == expected, f"hyperfleet {command.name} --{name}"
    if values_path:
        value = VALUES
        for key in values_path.split("."):
            value = value[key]
        assert value == expected, f"charts/hyperfleet/values.yaml {values_path}"



@pytest.mark.parametrize("function,parameter", [(driver.run_experiment, "connect_timeout_seconds"),
                                                (trials.MongoTrials.__init__, "connect_timeout_seconds"),
                                                (store.JobStore.connect, "timeout_seconds")])
def test_every_connect_timeout_default_is_the_settings_one(function, parameter):
    assert WorkerSettings.connect_timeout_seconds == MonitorSettings.connect_timeout_seconds == settings.CONNECT_TIMEOUT_SECONDS
    assert inspect.signature(function).parameters[parameter].default == settings.CONNECT_TIMEOUT_SECONDS
