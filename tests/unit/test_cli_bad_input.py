"""Bad command-line input: a usage error (exit 2) that names the option, before anything is
contacted (the --mongo address in these cases would fail if it were)."""

import pytest
from click.testing import CliRunner

from hyperfleet.cli import main

UNUSED = "mongodb://127.0.0.1:9/never-contacted"
CASES = [
    (["worker", "--poll-interval", "0"], "--poll-interval"),
    (["worker", "--heartbeat-seconds", "-1"], "--heartbeat-seconds"),
    (["worker", "--max-jobs", "0"], "--max-jobs"),
    (["worker", "--max-jobs", "many"], "--max-jobs"),
    (["worker", "--reserve-timeout", "-5"], "--reserve-timeout"),
    (["worker", "--shutdown-deadline-seconds", "0"], "--shutdown-deadline-seconds"),
    (["worker", "--connect-timeout-seconds", "0"], "--connect-timeout-seconds"),
    (["worker", "--log-level", "loud"], "--log-level"),
    (["worker", "--mongo", "http://db:27017/x"], "--mongo"),
    (["worker", "--mongo", "mongodb://db:99999/x"], "--mongo"),
    (["worker", "--no-such-flag"], "--no-such-flag"),
    (["monitor", "--interval-seconds", "0"], "--interval-seconds"),
    (["monitor", "--health-port", "70000"], "--health-port"),
    (["monitor", "--max-retries", "-1"], "--max-retries"),
    (["status", "--interval-seconds", "0"], "--interval-seconds"),
    (["status", "--connect-timeout-seconds", "abc"], "--connect-timeout-seconds"),
    (["run"], "SPEC"),
    (["run", "/no/such/spec.yaml"], "/no/such/spec.yaml"),
    (["report"], "EXP"),
    (["alive"], "PATH"),
    (["alive", "/tmp/x", "--max-age-seconds", "-1"], "--max-age-seconds"),
]


@pytest.mark.parametrize("argv,named", CASES, ids=[" ".join(argv) for argv, _ in CASES])
def test_bad_flags_are_usage_errors_naming_the_option(argv, named):
    needs_mongo = argv[0] in ("worker", "monitor", "status", "report") and "--mongo" not in argv
    result = CliRunner().invoke(main, argv + (["--mongo", UNUSED] if needs_mongo else []))
    assert result.exit_code == 2, result.output
    assert named in result.output, result.output
