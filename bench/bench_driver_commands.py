"""The driver's cost on the server: commands per trial that fmin with hyperfleet's MongoTrials sends,
counted by a pymongo command listener in the driver, with workers evaluating a trivial objective.

    make bench-driver ARGS="..."   (runs bench_driver.py, then this)
    python bench/bench_driver_commands.py --trials 400 --workers 4 --algo tpe rand

Each run: ``--workers`` ``hyperfleet worker`` processes and an in-process fmin (``max_queue_len`` =
workers, as ``hyperfleet run`` queues) on a fresh database of one server. Prints commands per trial by
command, collection and filter fields, and checks the run's results: ``--trials`` trials, distinct
tids, each DONE. Results: ``bench/results/driver-commands.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hyperopt import hp, rand, tpe
from pymongo import monitoring

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_runtime import environment  # noqa: E402
from testbed.mongo import MongoServer  # noqa: E402
from hyperfleet.store import JOB_STATE_DONE, JobStore  # noqa: E402
from hyperfleet.trials import MongoTrials, fmin  # noqa: E402

ALGOS = {"tpe": tpe.suggest, "rand": rand.suggest}


class CommandCounter(monitoring.CommandListener):
    def __init__(self):
        self.counts: collections.Counter = collections.Counter()
        self.on = False

    def started(self, event):
        if not self.on or event.command_name in ("hello", "isMaster", "endSessions", "ping"):
            return
        cmd = event.command
        query = cmd.get("filter") or cmd.get("query") or (cmd.get("updates") or [{}])[0].get("q") or {}
        self.counts[f"{event.command_name} {cmd.get(event.command_name)} {sorted(query)}"] += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def run(server: MongoServer, counter: CommandCounter, algo: str, trials: int, workers: int) -> dict:
    url = server.database_url(f"d{time.time_ns()}")
    procs = [subprocess.Popen([sys.executable, "-m", "hyperfleet", "worker", "--mongo", url, "--log-level", "error"],
                              env=dict(os.environ, PYTHONPATH=str(REPO))) for _ in range(workers)]
    try:
        search = MongoTrials(url, exp_key="commands")
        counter.counts.clear()
        counter.on = True
        started = time.monotonic()
        fmin(lambda x: (x - 1) ** 2, hp.uniform("x", -5, 10), algo=ALGOS[algo], max_evals=trials,
             trials=search, max_queue_len=workers, show_progressbar=False)
        elapsed = time.monotonic() - started
        counter.on = False
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    store = JobStore.connect(url)
    docs = list(store.jobs.find({"exp_key": "commands"}, projection=["tid", "state"]))
    store.close()
    tids = [d["tid"] for d in docs]
    # (TPE may use fewer of the ids fmin takes than it took: gaps are hyperopt's)
    assert len(docs) == trials and len(set(tids)) == trials, "not the trials fmin asked for"
    assert all(d["state"] == JOB_STATE_DONE for d in docs)
    total = sum(counter.counts.values())
    return {"algo": algo, "trials": trials, "workers": workers, "seconds": elapsed,
            "commands_per_trial": total / trials,
            "by_command": {k: v / trials for k, v in counter.counts.most_common()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--algo", nargs="+", default=["tpe", "rand"], choices=sorted(ALGOS))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "driver-commands.json"))
    args = parser.parse_args()
    counter = CommandCounter()
    monitoring.register(counter)
    rows = []
    with MongoServer() as server:
        for algo in args.algo:
            row = run(server, counter, algo, args.trials, args.workers)
            rows.append(row)
            print(f"{algo}: {row['commands_per_trial']:.1f} commands per trial "
                  f"({args.trials} trials, {args.workers} workers, {row['trials'] / row['seconds']:.1f} trials/s)")
            for key, per_trial in row["by_command"].items():
                if per_trial >= 0.05:
                    print(f"  {per_trial:6.2f}  {key}")
        report = {**environment(server), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
