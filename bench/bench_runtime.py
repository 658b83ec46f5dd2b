"""hyperfleet's worker versus stock hyperopt-mongo-worker, side by side against one server.

    make bench-runtime

* pickup latency: a trial is enqueued while every worker is idle; latency is the time from the
  insert to the start of the objective (same machine clock). Targets: p50 <= 50 ms.
* throughput: trivial trials drained by 4 workers. Target: >= 10x stock.

Stock hyperopt 0.3.0 needs pymongo 3, so it runs from its own virtualenv (``--stock-python``).
Both evaluate trials the way fmin's trials are evaluated: a pickled ``hyperopt.base.Domain`` of
``bench.objectives.record_start`` stored as the experiment attachment ``FMinIter_Domain``. (Stock's
other protocol, ``token_load``, is broken on Python 3: its ``exec`` cannot bind the function.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cloudpickle
import pymongo
from hyperopt import base, hp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.objectives import record_start  # noqa: E402
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_NEW, JobStore  # noqa: E402
from devserver.mongo import MongoServer  # noqa: E402

DOMAIN = "FMinIter_Domain"


def variants(stock_python: str) -> dict[str, callable]:
    stock_worker = os.path.join(os.path.dirname(os.path.abspath(stock_python)), "hyperopt-mongo-worker")

    def hyperfleet(*extra):
        return lambda url, bare, exp_key: [sys.executable, "-m", "hyperfleet", "worker", "--mongo", url,
                                           "--exp-key", exp_key, "--log-level", "warning", *extra]

    def stock(*extra):
        # stock exits after --reserve-timeout (default 120 s) idle; keep it alive for the whole run
        return lambda url, bare, exp_key: [stock_worker, "--mongo", bare, "--exp-key", exp_key,
                                           "--reserve-timeout", "3600", *extra]

    return {
        "hyperfleet (in-process)": hyperfleet(),
        "hyperfleet --subprocesses": hyperfleet("--subprocesses"),
        "stock (default: subprocesses)": stock(),
        "stock --no-subprocesses": stock("--no-subprocesses"),
    }


def enqueue(store: JobStore, exp_key: str, count: int) -> None:
    tids = store.allocate_tids(count)
    store.insert_trials([
        {"state": JOB_STATE_NEW, "tid": t, "spec": None, "result": {"status": "new"},
         "misc": {"tid": t, "cmd": ("domain_attachment", DOMAIN), "workdir": None,
                  "idxs": {"x": [t]}, "vals": {"x": [0.5]}},
         "exp_key": exp_key, "owner": None, "book_time": None, "refresh_time": None}
        for t in tids
    ])


def wait_done(store: JobStore, exp_key: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while store.count(exp_key, [JOB_STATE_DONE]) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{exp_key}: fewer than {count} trials done after {timeout}s")
        time.sleep(0.02)


class Workers:
    def __init__(self, argv_for, server: MongoServer, count: int):
        self.database = "b" + uuid.uuid4().hex[:10]
        self.exp_key = "bench"
        self.url = server.database_url(self.database)
        bare = self.url.removeprefix("mongodb://")
        self.store = JobStore.connect(self.url)
        domain = base.Domain(record_start, hp.uniform("x", 0, 1))
        self.store.experiment_attachments(self.exp_key)[DOMAIN] = cloudpickle.dumps(domain)
        self.workdir = tempfile.mkdtemp(prefix="hyperfleet-bench-")  # stock leaves a folder per job
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.procs = [
            subprocess.Popen(argv_for(self.url, bare, self.exp_key), cwd=self.workdir, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)
        ]
        # warm-up: every worker has imported its code and run one trial
        enqueue(self.store, self.exp_key, count)
        wait_done(self.store, self.exp_key, count, timeout=120)
        self.done = count

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.store.client.drop_database(self.database)
        self.store.close()


def measure_pickup(workers: Workers, samples: int) -> list[float]:
    latencies = []
    for i in range(samples):
        time.sleep(0.2 + (i % 5) * 0.1)  # let the workers go idle and back off
        enqueued = time.time()
        enqueue(workers.store, workers.exp_key, 1)
        workers.done += 1
        wait_done(workers.store, workers.exp_key, workers.done, timeout=60)
        doc = workers.store.jobs.find_one({"exp_key": workers.exp_key}, sort=[("tid", -1)])
        latencies.append(doc["result"]["started_at"] - enqueued)
    return latencies


def measure_throughput(workers: Workers, trials: int) -> float:
    started = time.monotonic()
    enqueue(workers.store, workers.exp_key, trials)
    workers.done += trials
    wait_done(workers.store, workers.exp_key, workers.done, timeout=900)
    return trials / (time.monotonic() - started)


def server_round_trip_ms(server: MongoServer) -> float:
    client = pymongo.MongoClient(server.url)
    client.admin.command("ping")
    started = time.perf_counter()
    for _ in range(200):
        client.admin.command("ping")
    elapsed = (time.perf_counter() - started) / 200 * 1000
    client.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stock-python", required=True, help="python of a venv with hyperopt and pymongo<4")
    parser.add_argument("--samples", type=int, default=20, help="pickup samples per variant")
    parser.add_argument("--trials", type=int, default=100, help="trials per throughput run")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--only", action="append", help="run only variants whose name contains this")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "runtime.json"))
    args = parser.parse_args()

    rows = {}
    with MongoServer(auth=False) as server:  # stock hyperopt, compared here, cannot log in with PLAIN
        print(f"server: {server.kind} at {server.url}; ping round trip {server_round_trip_ms(server):.2f} ms")
        for name, argv_for in variants(args.stock_python).items():
            if args.only and not any(o in name for o in args.only):
                continue
            print(f"-- {name}: {args.workers} workers", flush=True)
            workers = Workers(argv_for, server, args.workers)
            try:
                latencies = measure_pickup(workers, args.samples)
                throughput = measure_throughput(workers, args.trials)
            finally:
                workers.stop()
            rows[name] = {
                "pickup_p50_ms": statistics.median(latencies) * 1000,
                "pickup_p90_ms": statistics.quantiles(latencies, n=10, method="inclusive")[-1] * 1000,
                "pickup_max_ms": max(latencies) * 1000,
                "throughput_per_s": throughput,
            }
            print(f"   pickup p50 {rows[name]['pickup_p50_ms']:.1f} ms, throughput {throughput:.1f} trials/s", flush=True)

    baseline = rows.get("stock (default: subprocesses)", {}).get("throughput_per_s")
    print()
    print(f"{'variant':32} {'pickup p50':>11} {'p90':>9} {'max':>9} {'trials/s':>9} {'vs stock':>9}")
    for name, r in rows.items():
        ratio = f"{r['throughput_per_s'] / baseline:.1f}x" if baseline else "-"
        print(f"{name:32} {r['pickup_p50_ms']:>8.1f} ms {r['pickup_p90_ms']:>6.0f} ms {r['pickup_max_ms']:>6.0f} ms "
              f"{r['throughput_per_s']:>9.1f} {ratio:>9}")
    print("targets: hyperfleet pickup p50 <= 50 ms; throughput >= 10x stock")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"server": server.kind, "workers": args.workers, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
