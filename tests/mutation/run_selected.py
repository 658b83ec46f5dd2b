"""The test command cosmic-ray runs for each mutant of ``make mutation`` (tests/mutation/run.py).

It finds the lines the mutant changed (the module against its pristine copy), and runs only the tests
that execute one of them in the coverage map (tests/mutation/coverage_map.py), fastest first, stopping
at the first failure (``-x``). A line outside any function body (module constants, class attributes,
decorators, default values, run at import) runs every test of the map. A mutant in a function body no
test executes survives at once (exit 0): no test could kill it.

Each mutant has its own time limit, from the baseline: 3 times the selected tests' time plus a start-up
allowance. Past it pytest gets SIGINT (so its fixtures stop the test database), then its process group
SIGKILL; the output says MUTANT-TIMEOUT and the exit is non-zero (a timeout counts as killed, and is
reported apart). Stopped itself (SIGINT: ``make mutation`` interrupted), it stops its tests the same way.

    python run_selected.py MODULE PRISTINE MAP -- PYTEST_ARGS...
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

TIMEOUT_FACTOR = 3.0
#: pytest's start, the test database's start and the imports of one run, loaded machine included
STARTUP_SECONDS = 30.0
TIMEOUT_MARK = "MUTANT-TIMEOUT"


def changed_lines(pristine: str, mutated: str) -> set[int]:
    """The lines (1-based, of the pristine file) a mutant replaced or deleted, or next to what it inserted."""
    matcher = difflib.SequenceMatcher(a=pristine.splitlines(), b=mutated.splitlines(), autojunk=False)
    lines: set[int] = set()
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        if tag != "equal":
            lines.update(range(i1 + 1, max(i2, i1 + 1) + 1))
    return lines


def body_lines(source: str) -> set[int]:
    """The lines inside function bodies: run when the function is called, not when the module is imported."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines.update(range(node.body[0].lineno, node.body[-1].end_lineno + 1))
    return lines


def select(module: str, pristine: str, mutated: str, coverage_map: dict) -> list[str] | None:
    """The tests to run, fastest first; None when the mutant changes nothing."""
    lines = changed_lines(pristine, mutated)
    if not lines:
        return None
    if lines - body_lines(pristine):
        tests = list(coverage_map)
    else:
        tests = [t for t, e in coverage_map.items() if lines & set(e["lines"].get(module, ()))]
    return sorted(tests, key=lambda t: coverage_map[t]["seconds"])


def main(argv: list[str]) -> int:
    module, pristine_path, map_path, sep, *pytest_args = argv
    # started in the background by a shell, SIGINT comes ignored, and the tests (and the time limit's
    # SIGINT) need it to work: Python's own handler here, the default one in the processes started
    signal.signal(signal.SIGINT, signal.default_int_handler)
    assert sep == "--", "usage: run_selected.py MODULE PRISTINE MAP -- PYTEST_ARGS..."
    pristine = Path(pristine_path).read_text()
    mutated = Path(module).read_text()
    coverage_map = json.loads(Path(map_path).read_text())
    tests = select(module, pristine, mutated, coverage_map)
    if tests is None:
        print("the mutant changes no line")
        return 0
    if not tests:
        print(f"no test runs the mutated line(s) of {module}")
        return 0
    timeout = TIMEOUT_FACTOR * sum(coverage_map[t]["seconds"] for t in tests) + STARTUP_SECONDS
    print(f"{len(tests)} test(s), limit {timeout:.0f} s", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-x", *pytest_args, *tests], start_new_session=True)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"{TIMEOUT_MARK}: over {timeout:.0f} s", flush=True)
        stop(proc)
        return 124
    except KeyboardInterrupt:  # the run was stopped: its tests, in a session of their own, stop with it
        stop(proc)
        raise


def stop(proc: subprocess.Popen) -> None:
    """SIGINT to pytest (its fixtures stop the test database), then SIGKILL to its process group."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
