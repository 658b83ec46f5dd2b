"""hyperopt's own tests of ``hyperopt.mongoexp``, run unmodified from the installed wheel against
``hyperfleet.mongoexp`` (``make test-hyperopt-suite``; ``make test`` runs it too):

    python -m pytest -p tests.hyperopt_suite.plugin --pyargs hyperopt.tests.integration.test_mongoexp

This plugin, loaded before the suite is collected:

* resolves ``hyperopt.mongoexp`` to ``hyperfleet.mongoexp`` (an entry in ``sys.modules``, which the
  import system consults before any finder);
* where no real ``mongod`` is on PATH (none can be had here), puts ``bin/mongod`` first on PATH: the
  suite starts ``mongod --dbpath=… --noprealloc --port=22334``, and that script runs the tests' server
  (FerretDB 2 with DocumentDB, testbed/mongo.py) instead;
* lets one run of the suite at a time go on (``SUITE_LOCK``): TempMongo's folder and port are fixed;
* marks the tests that cannot pass on that server as expected failures, each with its reason and the
  exception it must fail with (``FERRETDB_LIMITS``: none today; FerretDB v1 failed three, for nested
  arrays and NaN); strict, so a test that starts passing is reported. With a real mongod every test
  must pass.

Tests that fail through their own fault are marked the same way (``TESTS_AT_FAULT``): none in
hyperopt 0.3.0. Every other failure is ours to fix.

hyperopt 0.2.7 (the oldest we support, ``make test-hyperopt-oldest``) ships the same tests, which
import nose (installed for them) and use ``np.NaN``, which NumPy 2 removed. One of them,
``test_main_worker``, must end within ``nose.tools.timed(10.0)``, and that time includes TempMongo's
start (here a PostgreSQL cluster and FerretDB, about 1.5 s). The test takes 3 to 6 s here, and took 10.8 s
once while ``make test`` ran the suite beside it. The plugin gives nose's time limits
``TIME_LIMIT_FACTOR`` times their length: what the test checks (the worker gives up after its 1 s
reserve timeout instead of waiting on) still fails it, now with headroom for a loaded machine. hyperopt
0.3.0 writes the same limit as ``pytest.mark.timeout(10)``, and a CI-like run (2026-12-06) saw it run out
while TempMongo waited for its server to stop: its pytest-timeout limits get the same factor.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from pathlib import Path

import shutil
from importlib.metadata import version

import hyperopt
import pytest

import hyperfleet.mongoexp
from testbed.mongo import choose_kind
from testbed.processes import pids_matching, terminate

#: test name -> (why it cannot pass on the tests' FerretDB server, the exception it fails with there)
FERRETDB_LIMITS: dict[str, tuple[str, type[Exception]]] = {}

#: test name -> (why it fails whatever the implementation, the exception it fails with)
TESTS_AT_FAULT: dict[str, tuple[str, type[Exception]]] = {}
if tuple(int(part) for part in version("hyperopt").split(".")[:2]) < (0, 3):
    TESTS_AT_FAULT["test_best_trial"] = ("the test uses np.NaN, which NumPy 2 removed", AttributeError)

ON_FERRETDB = shutil.which("mongod") is None

#: how many times longer than written the suite's time limits are (0.2.7's ``nose.tools.timed``, 0.3's
#: ``pytest.mark.timeout``; the docstring says why)
TIME_LIMIT_FACTOR = 3


def _lengthen_time_limits() -> None:
    """``nose.tools.timed(limit)`` as ``timed(limit * TIME_LIMIT_FACTOR)``, for the suite's module imported
    after this (hyperopt 0.3 dropped nose: then there is nothing to do)."""
    try:
        import nose.tools
    except ImportError:
        return
    timed = nose.tools.timed
    nose.tools.timed = lambda limit: timed(limit * TIME_LIMIT_FACTOR)


#: the folder of hyperopt's TempMongo (its server listens on the fixed port 22334)
TEMP_MONGO_DIR = "/tmp/hyperopt_test"
#: held by a run of the suite from its start to its end: two runs at once (make test runs the suite and the
#: oldest hyperopt's beside each other) would share TempMongo's fixed folder and port, and each would stop
#: the other's server as a leftover
SUITE_LOCK = "/tmp/hyperopt_test.lock"
_held = []


def _one_run_at_a_time() -> None:
    """Wait for another run of the suite to end (the lock goes with its process, however it ends)."""
    lock = open(SUITE_LOCK, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"hyperopt's suite: waiting for another run of it to end ({SUITE_LOCK})", file=sys.stderr, flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    _held.append(lock)  # open until this process ends


def _stop_leftover_servers() -> None:
    """Kill the server an earlier run of the suite left behind (its process died before TempMongo stopped
    it): it would still hold port 22334, and this run's clients would reach it, its folder since removed."""
    servers = set(pids_matching("ferretdb")) | set(pids_matching("postgres"))
    for pid in servers & set(pids_matching(TEMP_MONGO_DIR)):
        terminate(pid, signal.SIGKILL, timeout_seconds=5)


def _install() -> None:
    sys.modules["hyperopt.mongoexp"] = hyperfleet.mongoexp
    hyperopt.mongoexp = hyperfleet.mongoexp
    _one_run_at_a_time()
    _lengthen_time_limits()
    if ON_FERRETDB:
        _stop_leftover_servers()  # only a dead run's: a live one holds the lock
        choose_kind()  # says what to install when the server is missing
        os.environ["HYPERFLEET_PYTHON"] = sys.executable
        os.environ["HYPERFLEET_TEST_SERVER"] = "ferretdb"  # not the stand-in `mongod` put on PATH below
        repo = str(Path(__file__).resolve().parents[2])
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))
        os.environ["PATH"] = f"{Path(__file__).parent / 'bin'}{os.pathsep}{os.environ['PATH']}"


_install()


def pytest_collection_modifyitems(items):
    for item in items:
        limit = item.get_closest_marker("timeout")
        if limit is not None and limit.args:  # hyperopt 0.3's pytest-timeout limits, as nose's above
            item.add_marker(pytest.mark.timeout(limit.args[0] * TIME_LIMIT_FACTOR), append=False)
        known = TESTS_AT_FAULT.get(item.name) or (FERRETDB_LIMITS.get(item.name) if ON_FERRETDB else None)
        if known:
            reason, raises = known
            item.add_marker(pytest.mark.xfail(reason=reason, raises=raises, strict=True))
