"""hyperfleet's worker against stock hyperopt-mongo-worker, like against like, on one server.

    make bench-runtime [ARGS="--repeats 5 --trials 200"]

Pairs of the same mode (a trial evaluated in the worker's own process, or in a child per trial):

* hyperfleet in-process       vs stock --no-subprocesses, at stock's defaults and best-tuned
* hyperfleet --subprocesses   vs stock's default (a child per trial), at its defaults and best-tuned

Stock's best tuning is ``--poll-interval 0`` (the lowest it accepts; its default sleeps 5 s between
empty reservations). Per variant, ``--repeats`` runs with fresh workers; each figure is the median
with min and max.

* pickup latency: a trial is enqueued while every worker is idle; the time from the insert to the
  start of the objective (same machine clock).
* throughput: ``--trials`` trivial trials drained by ``--workers`` workers, timed from the first
  trial's start to the last one's end, so pickup is not counted twice.

The warm-up queues trials until every worker has finished one (distinct trial owners). Stock hyperopt
0.3.0 needs pymongo 3, so it runs from its own virtualenv (``--stock-python``). Both evaluate trials
the way fmin's are: a pickled ``hyperopt.base.Domain`` of ``bench.objectives.record_start`` stored as
the experiment attachment ``FMinIter_Domain``. Results: ``bench/results/runtime.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
from testbed.mongo import MongoServer  # noqa: E402

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
        "hyperfleet in-process": hyperfleet(),
        "stock --no-subprocesses": stock("--no-subprocesses"),
        "stock --no-subprocesses --poll-interval 0": stock("--no-subprocesses", "--poll-interval", "0"),
        "hyperfleet --subprocesses": hyperfleet("--subprocesses"),
        "stock (subprocesses)": stock(),
        "stock (subprocesses) --poll-interval 0": stock("--poll-interval", "0"),
    }


#: like against like: each hyperfleet variant, and the stock variants of the same mode
PAIRS = {"hyperfleet in-process": ("stock --no-subprocesses", "stock --no-subprocesses --poll-interval 0"),
         "hyperfleet --subprocesses": ("stock (subprocesses)", "stock (subprocesses) --poll-interval 0")}


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
        # warm-up: until every worker has imported its code and finished a trial (distinct owners)
        self.done = 0
        deadline = time.monotonic() + 180
        while len(self.store.jobs.distinct("owner", {"exp_key": self.exp_key, "state": JOB_STATE_DONE})) < count:
            if time.monotonic() > deadline:
                raise TimeoutError("the warm-up did not reach every worker in 180 s")
            enqueue(self.store, self.exp_key, count)
            self.done += count
            wait_done(self.store, self.exp_key, self.done, timeout=120)

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
        shutil.rmtree(self.workdir, ignore_errors=True)


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
    """Trials per second from the first trial's start to the last one's end."""
    first_tid = workers.store.allocate_tids(1)[0] + 1  # the batch's tids come after this one
    enqueue(workers.store, workers.exp_key, trials)
    workers.done += trials
    wait_done(workers.store, workers.exp_key, workers.done, timeout=900)
    ended = time.time()
    starts = [d["result"]["started_at"] for d in workers.store.jobs.find(
        {"exp_key": workers.exp_key, "tid": {"$gte": first_tid}}, projection={"result.started_at": 1})]
    assert len(starts) == trials, (len(starts), trials)
    return trials / (ended - min(starts))


def server_round_trip_ms(server: MongoServer) -> float:
    client = pymongo.MongoClient(server.url)
    client.admin.command("ping")
    started = time.perf_counter()
    for _ in range(200):
        client.admin.command("ping")
    elapsed = (time.perf_counter() - started) / 200 * 1000
    client.close()
    return elapsed


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def environment(server) -> dict:
    import platform
    from importlib.metadata import version

    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "server": server.kind,
            "versions": {p: version(p) for p in ("hyperfleet", "hyperopt", "pymongo")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stock-python", required=True, help="python of a venv with hyperopt and pymongo<4")
    parser.add_argument("--samples", type=int, default=20, help="pickup samples per run")
    parser.add_argument("--trials", type=int, default=200, help="trials per throughput run")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (fresh workers each)")
    parser.add_argument("--only", action="append", help="run only variants whose name contains this")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "runtime.json"))
    args = parser.parse_args()

    rows = {}
    with MongoServer(auth=False) as server:  # no users on either side: like for like with stock hyperopt
        print(f"server: {server.kind}; ping round trip {server_round_trip_ms(server):.2f} ms; "
              f"{args.workers} workers, {args.repeats} runs per variant")
        for name, argv_for in variants(args.stock_python).items():
            if args.only and not any(o in name for o in args.only):
                continue
            pickups, throughputs = [], []
            for _ in range(args.repeats):
                workers = Workers(argv_for, server, args.workers)
                try:
                    pickups.append(statistics.median(measure_pickup(workers, args.samples)))
                    throughputs.append(measure_throughput(workers, args.trials))
                finally:
                    workers.stop()
            rows[name] = {"pickup_p50_ms": spread([p * 1000 for p in pickups]), "throughput_per_s": spread(throughputs)}
            print(f"-- {name}: pickup p50 {rows[name]['pickup_p50_ms']['median']:.1f} ms, "
                  f"{rows[name]['throughput_per_s']['median']:.1f} trials/s", flush=True)
        env = environment(server)

    print()
    print(f"{'variant':44} {'pickup p50 (min-max)':>22} {'trials/s (min-max)':>22}")
    for name, r in rows.items():
        p, t = r["pickup_p50_ms"], r["throughput_per_s"]
        print(f"{name:44} {p['median']:>7.1f} ms ({p['min']:.0f}-{p['max']:.0f}) "
              f"{t['median']:>9.1f} ({t['min']:.1f}-{t['max']:.1f})")
    ratios = {}
    for ours, theirs in PAIRS.items():
        for stock in theirs:
            if ours in rows and stock in rows:
                ratios[f"{ours} / {stock}"] = rows[ours]["throughput_per_s"]["median"] / rows[stock]["throughput_per_s"]["median"]
    for pair, ratio in ratios.items():
        print(f"throughput {pair}: {ratio:.1f}x")
    print("targets: in-process pickup p50 <= 20 ms; throughput >= 3x stock's best-tuned in-process")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**env, "workers": args.workers, "repeats": args.repeats,
                                          "trials": args.trials, "rows": rows, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
