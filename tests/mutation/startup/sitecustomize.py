"""Started by Python in every process of a coverage-map run (tests/mutation/run.py puts this folder on
PYTHONPATH): the hyperfleet processes the tests start (workers, monitors, drivers) measure their own
coverage, into the data file of the test that started them (COVERAGE_FILE, set per test by
tests/mutation/coverage_map.py). Outside such a run COVERAGE_PROCESS_START is unset and this does nothing."""

import os

if os.environ.get("COVERAGE_PROCESS_START"):
    import coverage

    coverage.process_startup()
