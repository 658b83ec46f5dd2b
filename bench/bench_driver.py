"""The driver's cost as an experiment grows: fmin's refresh of MongoTrials at 10^3 and 10^4 trials,
hyperfleet's incremental refresh against stock's, and TPE's own suggest time beside it.

    make bench-driver [ARGS="--sizes 1000 10000 --iterations 20"]

Per size: an experiment of that many finished trials plus 4 RUNNING (real hyperopt trial documents,
made by an in-memory fmin of a 2-parameter space), on one server. Each implementation
(bench/driver_refresh.py in its own virtualenv: stock hyperopt 0.3.0 needs pymongo 3) loads it, then
refreshes ``--iterations`` times while one trial finishes and one starts between refreshes, as in a
steady fmin. Reported: the first load, the median refresh (seconds and documents the server sent),
and TPE's ``suggest`` of one trial over the same history (in memory: hyperopt's cost, not ours), and
the floor: the server's cheapest reads of that collection (one trial by ``_id``, the RUNNING ones by
equality), which no refresh can beat.
Results: ``bench/results/driver.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pymongo
from hyperopt import Trials, base, fmin, hp, rand, tpe

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_runtime import environment  # noqa: E402
from hyperfleet.store import JobStore  # noqa: E402
from testbed.mongo import MongoServer  # noqa: E402

SPACE = {"x": hp.uniform("x", -5, 10), "y": hp.uniform("y", 0, 15)}
EXP_KEY = "bench-driver"
RUNNING = 4


#: trials made by a real in-memory fmin; beyond it, copies of its documents with new ids and points
#: (hyperopt's in-memory loop is quadratic in the trials: minutes at 10^5)
FMIN_HISTORY = 2000


def history(size: int) -> list[dict]:
    """``size`` finished trials and RUNNING more, as fmin writes them (an in-memory rand search)."""
    trials = Trials()
    made = min(size, FMIN_HISTORY) + RUNNING
    fmin(lambda p: (p["x"] - 1) ** 2 + p["y"], SPACE, algo=rand.suggest, max_evals=made, trials=trials,
         rstate=np.random.default_rng(0), show_progressbar=False)
    docs = []
    for doc in trials.trials:
        doc = {k: v for k, v in doc.items() if k != "_id"}
        doc.update(exp_key=EXP_KEY, version=0)
        docs.append(doc)
    rng = np.random.default_rng(1)
    while len(docs) < size + RUNNING:
        tid = len(docs)
        x, y = float(rng.uniform(-5, 10)), float(rng.uniform(0, 15))
        doc = copy.deepcopy(docs[tid % FMIN_HISTORY])
        doc.update(tid=tid, result={"status": "ok", "loss": (x - 1) ** 2 + y})
        doc["misc"].update(tid=tid, idxs={"x": [tid], "y": [tid]}, vals={"x": [x], "y": [y]})
        docs.append(doc)
    for doc in docs[-RUNNING:]:
        doc.update(state=1, result={"status": "new"}, owner=["bench:1"])
    return docs


def seed(server: MongoServer, docs: list[dict]) -> str:
    url = server.database_url("d" + uuid.uuid4().hex[:10])
    JobStore.connect(url).close()  # hyperfleet's indexes, as a deployment has them
    jobs = pymongo.MongoClient(url).get_default_database().jobs
    for i in range(0, len(docs), 2000):
        jobs.insert_many([dict(d) for d in docs[i:i + 2000]])
    return url


def refresh_run(python: str, impl: str, url: str, iterations: int) -> dict:
    result = subprocess.run([python, str(REPO / "bench" / "driver_refresh.py"), impl, url, EXP_KEY, str(iterations)],
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if result.returncode != 0:
        raise RuntimeError(f"{impl} refresh failed: {result.stderr[-2000:]}")
    run = json.loads(result.stdout.strip().splitlines()[-1])
    seconds = [r["seconds"] for r in run["refreshes"]]
    return {"load_seconds": run["load"]["seconds"], "load_documents": run["load"]["documents"],
            "refresh_seconds": statistics.median(seconds), "refresh_min": min(seconds), "refresh_max": max(seconds),
            "refresh_documents": statistics.median(r["documents"] for r in run["refreshes"])}


def floor_seconds(url: str, repeats: int = 9) -> dict:
    """The cheapest reads the server offers over the same collection, the floor under any refresh: one
    document by ``_id``, and the RUNNING trials by an equality filter (both index lookups on mongod)."""
    jobs = pymongo.MongoClient(url).get_default_database().jobs
    some = jobs.find_one({"exp_key": EXP_KEY}, projection=["_id"])["_id"]
    reads = {"by _id": lambda: jobs.find_one({"_id": some}),
             "RUNNING by state": lambda: list(jobs.find({"exp_key": EXP_KEY, "state": 1}))}
    out = {}
    for name, read in reads.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            read()
            times.append(time.perf_counter() - started)
        out[name] = statistics.median(times)
    return out


def suggest_seconds(docs: list[dict], repeats: int = 5) -> dict:
    trials = Trials(exp_key=EXP_KEY)
    trials.insert_trial_docs([dict(d, state=2, result={"status": "ok", "loss": 1.0}) if d["state"] != 2 else dict(d)
                              for d in docs])
    trials.refresh()
    domain = base.Domain(lambda p: 0.0, SPACE)
    out = {}
    for name, algo in (("tpe", tpe.suggest), ("rand", rand.suggest)):
        times = []
        for i in range(repeats):
            started = time.perf_counter()
            algo([len(docs) + i], domain, trials, i)
            times.append(time.perf_counter() - started)
        out[name] = statistics.median(times)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stock-python", required=True, help="python of a venv with hyperopt 0.3.0 and pymongo<4")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "driver.json"))
    args = parser.parse_args()
    rows = []
    with MongoServer(auth=False) as server:  # no users on either side: like for like with stock hyperopt
        env = environment(server)
        for size in args.sizes:
            docs = history(size)
            row = {"trials": size, "suggest_seconds": suggest_seconds(docs)}
            for impl, python in (("hyperfleet", sys.executable), ("stock", args.stock_python)):
                url = seed(server, docs)
                row[impl] = refresh_run(python, impl, url, args.iterations)
            row["floor_seconds"] = floor_seconds(url)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'trials':>7} {'impl':>10} {'load s':>8} {'refresh ms (min-max)':>24} {'docs/refresh':>13}")
    for row in rows:
        for impl in ("hyperfleet", "stock"):
            r = row[impl]
            print(f"{row['trials']:>7} {impl:>10} {r['load_seconds']:>8.2f} {r['refresh_seconds'] * 1000:>9.1f} "
                  f"({r['refresh_min'] * 1000:.1f}-{r['refresh_max'] * 1000:.1f}) {r['refresh_documents']:>13.0f}")
        s = row["suggest_seconds"]
        print(f"{row['trials']:>7} {'suggest':>10}  tpe {s['tpe'] * 1000:.1f} ms, rand {s['rand'] * 1000:.1f} ms (in memory)")
        f = row["floor_seconds"]
        print(f"{row['trials']:>7} {'floor':>10}  one trial by _id {f['by _id'] * 1000:.1f} ms, RUNNING by state "
              f"{f['RUNNING by state'] * 1000:.1f} ms (the cheapest reads of this server)")
    print(f"server: {env['server']}; median of {args.iterations} refreshes, one trial finishing and one starting "
          "between two")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**env, "iterations": args.iterations, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
