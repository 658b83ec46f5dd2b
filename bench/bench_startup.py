"""What a worker or a driver pays to start: the imports of ``hyperfleet worker`` and ``hyperfleet run``,
each in a fresh interpreter, wall time and CPU (user + system), median (min, max) of ``--repeats``.

    make bench-startup [ARGS="--repeats 9"]

Variants: a bare interpreter (the floor); ``import hyperopt`` (what stock hyperopt's worker pays
first); the worker's and the driver's modules imported as a program that imports hyperfleet does
("eager"); and as the commands import them, scipy.stats, hyperopt.tpe and networkx deferred to
their first use (``hyperfleet.startup``). Results: ``bench/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULES = "import hyperfleet.worker, hyperfleet.driver"
VARIANTS = {
    "bare interpreter": "pass",
    "import hyperopt": "import hyperopt",
    "worker + driver modules, eager": MODULES,
    "worker + driver modules, as the commands (scipy.stats, hyperopt.tpe, networkx deferred)":
        f"from hyperfleet.startup import defer_unused_imports; defer_unused_imports(); {MODULES}",
}


def measure(code: str) -> tuple[float, float]:
    """(wall s, CPU s) of ``python -c code`` in a fresh interpreter."""
    before = os.times()
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    wall = time.perf_counter() - began
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "startup.json"))
    args = parser.parse_args()
    for code in VARIANTS.values():
        measure(code)  # warm the file cache and the bytecode
    results = {}
    for name, code in VARIANTS.items():
        runs = [measure(code) for _ in range(args.repeats)]
        results[name] = {"wall_s": summary([w for w, _ in runs]), "cpu_s": summary([c for _, c in runs])}
    width = max(map(len, results))
    print(f"{'variant':<{width}} {'wall s':>18} {'CPU s':>18}")
    for name, r in results.items():
        cells = [f"{r[k]['median']:.2f} ({r[k]['min']:.2f}-{r[k]['max']:.2f})" for k in ("wall_s", "cpu_s")]
        print(f"{name:<{width}} {cells[0]:>18} {cells[1]:>18}")
    print(f"median (min-max) of {args.repeats} fresh interpreters each")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"repeats": args.repeats, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
