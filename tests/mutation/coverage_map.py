"""pytest plugin of ``make mutation`` (tests/mutation/run.py): which lines of the mutated modules each test
runs, in the pytest process and in every Python process it starts, and how long each test takes.

Written to HYPERFLEET_COVERAGE_MAP (JSON): ``{nodeid: {"seconds": s, "lines": {module path: [line, ...]}}}``,
and ``"failed": true`` for a test that failed.
The runner of each mutant (tests/mutation/run_selected.py) then runs only the tests that execute a
mutated line. Loaded with ``-p tests.mutation.coverage_map``; needs ``coverage`` importable."""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import coverage
import pytest

MAP_ENV = "HYPERFLEET_COVERAGE_MAP"
#: the modules to measure, comma-separated paths relative to the repository
MODULES_ENV = "HYPERFLEET_COVERAGE_MODULES"

_tests: dict[str, dict] = {}
_failed: set[str] = set()
_data_dir = Path(tempfile.mkdtemp(prefix="hyperfleet-covmap-"))
_rcfile = _data_dir / "coveragerc"


def _modules() -> list[str]:
    return [str(Path(m).resolve()) for m in os.environ[MODULES_ENV].split(",")]


def pytest_configure(config):
    # the started processes read this: measure the modules, a data file of their own per process
    _rcfile.write_text("[run]\nparallel = true\ninclude =\n" + "".join(f"    {m}\n" for m in _modules()))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    data_file = str(_data_dir / f"t{len(_tests)}")
    os.environ["COVERAGE_FILE"] = data_file
    os.environ["COVERAGE_PROCESS_START"] = str(_rcfile)
    cov = coverage.Coverage(data_file=data_file + ".main", include=_modules(), config_file=False)
    start = time.monotonic()
    cov.start()
    try:
        yield
    finally:
        cov.stop()
        cov.save()
        seconds = time.monotonic() - start
        del os.environ["COVERAGE_PROCESS_START"]
        _tests[item.nodeid] = {"seconds": round(seconds, 3), "data": data_file}


def pytest_runtest_logreport(report):
    if report.failed:
        _failed.add(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    root = Path(session.config.rootpath)
    out = {}
    for nodeid, entry in _tests.items():
        lines: dict[str, set[int]] = {}
        for path in glob.glob(entry["data"] + ".*"):
            data = coverage.CoverageData(basename=path)
            data.read()
            for measured in data.measured_files():
                rel = str(Path(measured).relative_to(root))
                lines.setdefault(rel, set()).update(data.lines(measured) or ())
        out[nodeid] = {"seconds": entry["seconds"], "lines": {k: sorted(v) for k, v in lines.items()},
                       **({"failed": True} if nodeid in _failed else {})}
    Path(os.environ[MAP_ENV]).write_text(json.dumps(out, indent=1))
    shutil.rmtree(_data_dir, ignore_errors=True)
