"""The server's own limit for the job protocol: clients that issue only one trial's commands, with no
hyperopt, no objective and no worker around them. What hyperfleet's workers reach is measured against
it.

    make bench-ceiling [ARGS="--clients 4 --trials 2000 --documents 10000 --repeats 3"]

Per trial, each client sends what the driver and a worker send for it, through the job store:
``insert_trials`` (the driver's insert of a NEW trial), ``reserve`` (the worker's findAndModify) and
``finish`` (the result write); its trial ids are taken from the counter beforehand, in one command.
``--documents`` finished trials are in the collection first, so the figure is at that size.
``--clients`` processes, each with its own connection, run at once; trials/s is all trials over the wall
time of the slowest. Median (min, max) of ``--repeats`` runs, each on a fresh database of the same
server. Results: ``bench/results/ceiling.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_runtime import environment  # noqa: E402
from testbed.mongo import MongoServer  # noqa: E402
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_NEW, JobStore  # noqa: E402


def trial_doc(tid: int, exp_key: str, state: int = JOB_STATE_NEW) -> dict:
    """A trial shaped like fmin's (misc with idxs/vals, a spec, a result)."""
    return {"state": state, "tid": tid, "spec": None, "result": {"status": "new"}, "exp_key": exp_key,
            "owner": None, "version": 0, "book_time": None, "refresh_time": None,
            "misc": {"tid": tid, "cmd": ("domain_attachment", "FMinIter_Domain"), "workdir": None,
                     "idxs": {"x": [tid]}, "vals": {"x": [0.5]}}}


def client(url: str, name: str, trials: int, start) -> float:
    """One client's loop: its trials' commands, one trial after another; returns its wall seconds."""
    store = JobStore.connect(url)
    exp_key = f"ceiling-{name}"
    tids = store.allocate_tids(trials)  # as fmin takes ids for several trials at once: not timed
    start.wait()
    began = time.perf_counter()
    for tid in tids:
        store.insert_trials([trial_doc(tid, exp_key)])
        trial = store.reserve(name, {"host": "bench"}, exp_key)
        store.finish(trial["_id"], name, {"status": "ok", "loss": 0.5})
    elapsed = time.perf_counter() - began
    store.close()
    return elapsed


def run_once(server: MongoServer, clients: int, trials: int, documents: int) -> float:
    url = server.database_url("c" + uuid.uuid4().hex[:10])
    store = JobStore.connect(url)
    for first in range(0, documents, 1000):
        tids = store.allocate_tids(min(1000, documents - first))
        store.insert_trials([trial_doc(tid, "history", JOB_STATE_DONE) for tid in tids])
    context = multiprocessing.get_context("spawn")
    per_client = trials // clients
    with context.Manager() as manager, context.Pool(clients) as pool:
        start = manager.Barrier(clients)
        results = [pool.apply_async(client, (url, f"c{n}", per_client, start)) for n in range(clients)]
        slowest = max(result.get(timeout=3600) for result in results)
    store.client.drop_database(store.address.database)
    store.close()
    return per_client * clients / slowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--trials", type=int, default=2000, help="trials in all, shared by the clients")
    parser.add_argument("--documents", type=int, nargs="+", default=[10000],
                        help="finished trials in the collection beforehand (one row per value)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "ceiling.json"))
    args = parser.parse_args()
    rows = []
    with MongoServer() as server:
        print(f"server: {server.kind}; {args.clients} clients, {args.trials} trials; insert + reserve + finish")
        for documents in args.documents:
            runs = [run_once(server, args.clients, args.trials, documents) for _ in range(args.repeats)]
            rows.append({"documents": documents, "trials_per_second": runs})
            print(f"{documents:>8} documents: {statistics.median(runs):7.0f} trials/s "
                  f"({min(runs):.0f}-{max(runs):.0f}, {len(runs)} runs)", flush=True)
        report = {**environment(server), "clients": args.clients, "trials": args.trials,
                  "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
