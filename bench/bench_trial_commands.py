"""One trial, broken down: the commands a worker sends for it, with their round trips, at several
experiment sizes, and the server's own plan for each query (``explain``).

    make bench-trial [ARGS="--sizes 100 1000 10000 --trials 20"]

Per size: an experiment of that many finished trials (bench_runtime's trivial objective), then
``--trials`` more queued and taken by one in-process ``hyperfleet worker`` (``max_jobs``). pymongo's
command events give each command's round trip as the worker sees it; they are grouped by command,
collection and filter shape, per trial. A command whose time grows with the experiment is the O(trials)
term; ``explain`` of its filter says whether the server serves it from an index (mongod: IXSCAN;
FerretDB 2: PostgreSQL's index scans and the index's name) or scans (COLLSCAN; a sequential scan).
Results: ``bench/results/trial-commands.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import cloudpickle
from hyperopt import base, hp
from pymongo import monitoring

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_runtime import DOMAIN, enqueue, environment  # noqa: E402
from bench.objectives import record_start  # noqa: E402
from hyperfleet.settings import WorkerSettings  # noqa: E402
from hyperfleet.store import JOB_STATE_DONE, JobStore  # noqa: E402
from hyperfleet.worker import run_worker  # noqa: E402
from testbed.mongo import MongoServer  # noqa: E402

EXP_KEY = "bench-trial"


def shape(value):
    """A filter with its values replaced by their type: commands of the same shape group together."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


class Recorder(monitoring.CommandListener):
    def __init__(self):
        self.pending: dict[int, tuple[str, dict]] = {}
        self.calls: dict[str, list[float]] = defaultdict(list)
        self.examples: dict[str, dict] = {}
        self.on = False

    def started(self, event):
        if not self.on or event.command_name in ("hello", "isMaster", "endSessions", "ping"):
            return
        cmd = event.command
        collection = cmd.get(event.command_name)
        query = cmd.get("filter") or cmd.get("query") or (cmd.get("updates") or [{}])[0].get("q") or {}
        key = f"{event.command_name} {collection} {json.dumps(shape(query), sort_keys=True)}"
        self.pending[event.request_id] = (key, {"find": collection, "filter": query} if query else None)

    def succeeded(self, event):
        self._done(event)

    def failed(self, event):
        self._done(event)

    def _done(self, event):
        entry = self.pending.pop(event.request_id, None)
        if entry:
            key, example = entry
            self.calls[key].append(event.duration_micros / 1e6)
            if example and isinstance(example["find"], str):
                self.examples.setdefault(key, example)


def explain(store: JobStore, example: dict) -> str:
    """The server's plan of a find with this filter, in a few words."""
    try:
        plan = store.db.command({"explain": {"find": example["find"], "filter": example["filter"]}})
    except Exception as err:  # noqa: BLE001 - a server may not explain every command
        return f"no plan ({err})"[:120]
    planner = plan.get("queryPlanner", {})
    if "Plan" in planner:  # FerretDB 2: PostgreSQL's plan of DocumentDB's query, and the indexes it uses
        nodes = json.dumps(planner)
        kinds = [k for k in ("Seq Scan", "Bitmap Index Scan", "Index Scan", "Sort") if f'"{k}"' in nodes]
        indexes = sorted(set(re.findall(r'"Index Name": "([^"]+)"', nodes)))
        return f"FerretDB: PostgreSQL {', '.join(kinds) or '?'}" + (f" on {', '.join(indexes)}" if indexes else "")
    winning = json.dumps(planner.get("winningPlan", {}))
    stages = [s for s in ("IXSCAN", "COLLSCAN", "IDHACK", "COUNT_SCAN") if s in winning]
    return "mongod: " + (", ".join(stages) or "?")


def measure(server: MongoServer, size: int, trials: int) -> dict:
    url = server.database_url("t" + uuid.uuid4().hex[:10])
    store = JobStore.connect(url)
    store.experiment_attachments(EXP_KEY)[DOMAIN] = cloudpickle.dumps(base.Domain(record_start, hp.uniform("x", 0, 1)))
    if size:
        enqueue(store, EXP_KEY, size)
        store.jobs.update_many({"exp_key": EXP_KEY}, {"$set": {"state": JOB_STATE_DONE,
                                                               "result": {"status": "ok", "loss": 0.5}}})
    enqueue(store, EXP_KEY, trials)
    recorder = Recorder()
    monitoring.register(recorder)
    recorder.on = True
    started = time.perf_counter()
    run_worker(WorkerSettings(mongo_url=url, exp_key=EXP_KEY, max_jobs=trials, heartbeat_seconds=60))
    wall = time.perf_counter() - started
    recorder.on = False
    rows = {}
    for key, durations in sorted(recorder.calls.items(), key=lambda kv: -sum(kv[1])):
        rows[key] = {"per_trial": len(durations) / trials, "median_ms": statistics.median(durations) * 1000,
                     "ms_per_trial": sum(durations) * 1000 / trials,
                     "plan": explain(store, recorder.examples[key]) if key in recorder.examples else ""}
    store.client.drop_database(store.address.database)
    store.close()
    return {"trials_before": size, "wall_ms_per_trial": wall * 1000 / trials, "commands": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "trial-commands.json"))
    args = parser.parse_args()
    results = []
    with MongoServer() as server:
        env = environment(server)
        for size in args.sizes:
            result = measure(server, size, args.trials)
            results.append(result)
            print(f"\n-- {size} trials before: {result['wall_ms_per_trial']:.1f} ms per trial (one worker, wall)")
            print(f"{'per trial':>9} {'median ms':>10} {'ms/trial':>9}  command / plan")
            for key, row in result["commands"].items():
                print(f"{row['per_trial']:>9.1f} {row['median_ms']:>10.1f} {row['ms_per_trial']:>9.1f}  {key[:110]}")
                if row["plan"]:
                    print(f"{'':>32}{row['plan']}")
    print(f"\nserver: {env['server']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**env, "trials": args.trials, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
