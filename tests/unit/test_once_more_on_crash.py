"""tests/hyperopt_suite/once-more-on-crash.sh: a crashed interpreter is run once more and named in the
crash log; a failed run, and a second crash, fail."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO

SCRIPT = REPO / "tests" / "hyperopt_suite" / "once-more-on-crash.sh"
#: a command that segfaults while ``marker`` is missing (and makes it), then exits with ``status``
CRASH_ONCE = """
import ctypes, os, sys
marker, status, crashes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = int(open(marker).read()) if os.path.exists(marker) else 0
open(marker, "w").write(str(runs + 1))
print("run", runs + 1, flush=True)
if runs < crashes:
    ctypes.string_at(0)
sys.exit(status)
"""


def run(tmp_path, status: int, crashes: int):
    log = tmp_path / "crashes"
    result = subprocess.run(
        [str(SCRIPT), sys.executable, "-c", CRASH_ONCE, str(tmp_path / "runs"), str(status), str(crashes)],
        capture_output=True, text=True, env={"HYPERFLEET_CRASH_LOG": str(log), "PATH": "/usr/bin:/bin"},
    )
    return result, log.read_text() if log.exists() else ""


def test_a_crash_is_run_once_more_and_named_in_the_crash_log(tmp_path):
    result, log = run(tmp_path, status=0, crashes=1)
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["run 1", "run 2"]
    assert "the interpreter crashed (status 139" in result.stderr
    assert "(status 139), run once more" in log


def test_a_failed_run_fails_at_once(tmp_path):
    result, log = run(tmp_path, status=1, crashes=0)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["run 1"]
    assert log == ""


def test_a_second_crash_fails(tmp_path):
    result, _ = run(tmp_path, status=0, crashes=2)
    assert result.returncode == 139
    assert result.stdout.splitlines() == ["run 1", "run 2"]
