"""Authentication against the test server (FerretDB on a PostgreSQL that requires passwords), and the
password kept out of everything the commands print: settings, logs (text and JSON), errors, status."""

import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, start_monitor, wait_for, worker_env

pytestmark = pytest.mark.timeout(120)

WRONG = "not-the-Password-0"
COMMANDS = {
    "worker": ["worker"],
    "monitor": ["monitor", "--health-port", "0"],
    "run": ["run", str(REPO / "examples/experiments/branin.yaml"), "--no-check-objective"],
    "status": ["status", "--json"],
    "report": ["report", "branin"],
}


def hyperfleet(*argv, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "hyperfleet", *argv], env=env or worker_env(), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


@pytest.fixture
def secured(mongo_server):
    if not mongo_server.auth:
        pytest.fail(f"the test server ({mongo_server.kind}) has no users: these tests need mongod or FerretDB "
                    "on PostgreSQL (make test-install)")
    return mongo_server


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_wrong_password_fails_fast_in_one_line_and_shows_no_password(secured, command):
    url = secured.database_url("secrets", password=WRONG)
    started = time.monotonic()
    # fast: the refusal is final, not retried until the connect timeout (60 s here, so that a slow
    # start on a loaded machine is not mistaken for a retry)
    result = hyperfleet(*COMMANDS[command], "--mongo", url, "--connect-timeout-seconds", "60")
    elapsed = time.monotonic() - started
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert result.returncode == 1, result.stderr
    # one line says it (the monitor logs its start before it, at its default level, info)
    assert errors == [f"error: MongoDB at {url.replace(WRONG, '***')} refused the credentials of user "
                      f"'{secured.username}': authentication failed"], result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    assert elapsed < 30
    assert WRONG not in result.stdout + result.stderr and secured.password not in result.stdout + result.stderr


def test_no_credentials_at_all_are_refused_too(secured):
    url = f"mongodb://127.0.0.1:{secured.port}/secrets"
    result = hyperfleet("worker", "--mongo", url)
    assert result.returncode == 1 and "refused the credentials: authentication failed" in result.stderr


@pytest.mark.parametrize("log_json", [False, True])
def test_a_worker_and_a_monitor_at_debug_level_log_no_password(secured, log_json, tmp_path):
    url = secured.database_url("secrets")
    flags = ["--log-level", "debug"] + (["--log-json"] if log_json else [])
    env = worker_env(HYPERFLEET_WORKER_MONGO=url)
    logs = [tmp_path / "worker.log", tmp_path / "monitor.log"]
    with open(logs[0], "w") as worker_log, open(logs[1], "w") as monitor_log:
        worker = subprocess.Popen([sys.executable, "-m", "hyperfleet", "worker", *flags], env=env, text=True,
                                  stdout=worker_log, stderr=subprocess.STDOUT)
        monitor = start_monitor(url, "--health-port", "0", "--interval-seconds", "0.2", *flags,
                                stdout=monitor_log, stderr=subprocess.STDOUT, text=True)
    shown = f"mongodb://{secured.username}:***@"
    try:
        # each has logged where it connected, then pymongo's debug log of a few commands (with the login)
        wait_for(lambda: all(log.read_text().count("Command succeeded") >= 3 for log in logs)
                 and f"polling {shown}" in logs[0].read_text() and f"watching {shown}" in logs[1].read_text(), timeout=30)
    finally:
        for proc in (worker, monitor):
            proc.terminate()
            proc.wait(20)
    printed = [log.read_text() for log in logs]
    assert all(secured.password not in text for text in printed)


def test_settings_and_status_show_no_password(secured):
    url = secured.database_url("secrets")
    settings = hyperfleet("worker", "--mongo", url, "--print-settings")
    assert settings.returncode == 0 and f"{secured.username}:***@" in settings.stdout and secured.password not in settings.stdout
    status = hyperfleet("status", "--json", "--mongo", url)
    assert status.returncode == 0 and secured.password not in status.stdout + status.stderr


def test_an_unreachable_server_is_named_without_its_password():
    url = "mongodb://someone:Top-Secret-1@127.0.0.1:9/secrets"
    result = hyperfleet("worker", "--mongo", url, "--connect-timeout-seconds", "0.5")
    assert result.returncode == 1 and "cannot reach MongoDB at mongodb://someone:***@127.0.0.1:9/secrets" in result.stderr
    assert "Top-Secret-1" not in result.stderr
