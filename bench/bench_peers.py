"""hyperfleet beside its peers, same machine, same trivial objective, same number of workers.

    make bench-peers [ARGS="--trials 400 --workers 4 --repeats 3"]

* hyperfleet: ``hyperfleet run`` (fmin on MongoTrials) with ``--workers`` in-process workers, on the
  test server (testbed/mongo.py), TPE and random search;
* Optuna: ``--workers`` processes running ``study.optimize`` on one study, TPE and random sampling, in
  each of its storages that several processes can share, so that it is measured at its best: RDB on
  the PostgreSQL cluster the test server runs on, with and without a heartbeat (``heartbeat_interval``,
  what recovers a killed worker's trial, as hyperfleet's monitor does), and JournalStorage on a file;
* Ray Tune (when it imports): a local Ray, ``--workers`` concurrent trials, random search
  (``--ray-trials`` of them), ``reuse_actors=True`` and no loggers (its fastest set-up).

The peers' versions are pinned in the Makefile (``PEERS``).

Each figure is trials per second from launching the processes to the last trial's end (process start
included, as a user meets it), the median (min, max) of ``--repeats`` runs; and the cost per trial
(the wall time per trial less the objective's own, which is nothing). The peers run from their own
virtualenv (``--peers-python``; ``make bench-peers`` makes ``.venv-peers``). Results:
``bench/results/peers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testbed.mongo import MongoServer  # noqa: E402

OPTUNA_STORAGE = textwrap.dedent("""
    import sys, optuna
    def storage(url):
        kind, _, target = url.partition(":")
        if kind == "journal":
            from optuna.storages.journal import JournalFileBackend, JournalStorage
            return JournalStorage(JournalFileBackend(target))
        if kind == "heartbeat":
            return optuna.storages.RDBStorage(target, heartbeat_interval=1, grace_period=5)
        return optuna.storages.RDBStorage(url)
""")
OPTUNA_WORKER = OPTUNA_STORAGE + textwrap.dedent("""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, name, sampler, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sampler = optuna.samplers.TPESampler() if sampler == "tpe" else optuna.samplers.RandomSampler()
    study = optuna.load_study(study_name=name, storage=storage(url), sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", -5, 10) - 1) ** 2, n_trials=n)
""")
OPTUNA_CREATE = OPTUNA_STORAGE + "optuna.create_study(study_name=sys.argv[2], storage=storage(sys.argv[1]))"
RAY = textwrap.dedent("""
    import sys, time, os
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray
    from ray import tune
    n, workers = int(sys.argv[1]), int(sys.argv[2])
    started = time.time()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ready = time.time()
    def objective(config):
        return {"loss": (config["x"] - 1) ** 2}
    tuner = tune.Tuner(objective, param_space={"x": tune.uniform(-5, 10)},
                       tune_config=tune.TuneConfig(num_samples=n, max_concurrent_trials=workers, metric="loss", mode="min",
                                                   reuse_actors=True),
                       run_config=tune.RunConfig(verbose=0, storage_path=sys.argv[3], callbacks=[]))
    results = tuner.fit()
    assert len(results) == n, len(results)
    print(ready - started, time.time() - ready)
""")


def postgres_url(server: MongoServer) -> str:
    """The test server's own PostgreSQL, as SQLAlchemy names it: where Optuna's RDB storage goes."""
    return f"postgresql+psycopg2://{server.username}:{server.password}@127.0.0.1:{server.postgres_port}/postgres"


def run_hyperfleet(url: str, spec: dict, workers: int, env: dict | None = None) -> float:
    """``spec`` run by ``hyperfleet run`` with ``workers`` ``hyperfleet worker`` processes on ``url``:
    the seconds from starting the processes to the driver's end."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    # this checkout's runtime, whichever hyperfleet the venv has installed
    env = dict(os.environ, **(env or {}), PYTHONPATH=os.pathsep.join([str(REPO / "runtime"), str(REPO)]))
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "hyperfleet", "worker", "--mongo", url, "--log-level", "error"],
                              env=env) for _ in range(workers)]
    try:
        subprocess.run([sys.executable, "-m", "hyperfleet", "run", f.name, "--mongo", url, "--no-progress"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        return time.monotonic() - started
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        os.unlink(f.name)


def hyperfleet_run(server: MongoServer, algo: str, trials: int, workers: int) -> float:
    url = server.database_url("p" + str(time.time_ns()))
    spec = {"name": "peers", "objective": "bench.objectives:quadratic", "algo": algo, "max_evals": trials,
            "parallelism": workers, "space": {"x": {"uniform": [-5, 10]}}}
    return trials / run_hyperfleet(url, spec, workers)


def optuna_study(python: str, storage_url: str) -> str:
    """A new Optuna study in ``storage_url``: its name."""
    name = f"s{time.time_ns()}"
    created = subprocess.run([python, "-c", OPTUNA_CREATE, storage_url, name], capture_output=True, text=True)
    assert created.returncode == 0, f"creating an Optuna study failed: {created.stderr[-2000:]}"
    return name


def run_optuna_workers(python: str, script: str, worker_args: list[list[str]], env: dict | None = None) -> float:
    """One ``python -c script *args`` per entry of ``worker_args``, at once: the seconds until all ended."""
    started = time.monotonic()
    procs = [subprocess.Popen([python, "-c", script, *args], env=env) for args in worker_args]
    for p in procs:
        assert p.wait(900) == 0, "an Optuna worker failed"
    return time.monotonic() - started


def shares(trials: int, workers: int) -> list[int]:
    """``trials`` split over ``workers`` as evenly as can be."""
    return [trials // workers + (i < trials % workers) for i in range(workers)]


def optuna_run(python: str, pg_url: str, sampler: str, trials: int, workers: int) -> float:
    name = optuna_study(python, pg_url)
    return trials / run_optuna_workers(python, OPTUNA_WORKER, [[pg_url, name, sampler, str(n)]
                                                               for n in shares(trials, workers)])


def ray_run(python: str, trials: int, workers: int, attempts: int = 2) -> tuple[float, float]:
    """(trials/s with Ray's start, trials/s after ray.init). A run whose Ray fails (its start has failed on a
    loaded machine, Ray's own processes not up in time) is said, with the end of what it printed, and made
    once more: the figure is of a run that worked."""
    for attempt in range(1, attempts + 1):
        with tempfile.TemporaryDirectory(prefix="hyperfleet-ray-", ignore_cleanup_errors=True) as storage:
            started = time.monotonic()
            done = subprocess.run([python, "-c", RAY, str(trials), str(workers), storage], capture_output=True,
                                  text=True, timeout=900)
            total = time.monotonic() - started
        if done.returncode == 0:
            break
        print(f"-- ray run {attempt} of {attempts} failed (exit {done.returncode}); its last lines:\n"
              + "\n".join((done.stdout + done.stderr).splitlines()[-15:]), flush=True)
    else:
        raise RuntimeError(f"ray failed in each of {attempts} runs (above)")
    out = done.stdout.split()
    _, tuning = float(out[-2]), float(out[-1])
    return trials / total, trials / tuning


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers-python", required=True, help="python of a venv with optuna, psycopg2 (and ray)")
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ray-trials", type=int, default=100,
                        help="Ray Tune's trials (it starts an actor per trial: about a second each here)")
    parser.add_argument("--only", action="append", help="run only the systems whose name contains this")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "peers.json"))
    args = parser.parse_args()
    has_ray = subprocess.run([args.peers_python, "-c", "import ray.tune"], capture_output=True).returncode == 0
    rows: dict[str, dict] = {}
    with MongoServer(kind="ferretdb") as server, tempfile.TemporaryDirectory(prefix="hyperfleet-optuna-") as journal_dir:
        pg_url = postgres_url(server)
        storages = {"rdb": lambda: pg_url, "rdb+heartbeat": lambda: f"heartbeat:{pg_url}",
                    "journal file": lambda: f"journal:{journal_dir}/{time.time_ns()}.log"}
        runs = {
            "hyperfleet tpe": lambda: hyperfleet_run(server, "tpe", args.trials, args.workers),
            "hyperfleet rand": lambda: hyperfleet_run(server, "rand", args.trials, args.workers),
        }
        for storage, url in storages.items():
            for sampler in ("tpe", "random"):
                runs[f"optuna {storage} {sampler}"] = (
                    lambda url=url, sampler=sampler: optuna_run(args.peers_python, url(), sampler, args.trials, args.workers))
        if has_ray:
            runs["ray tune random (with ray start)"] = lambda: ray_run(args.peers_python, args.ray_trials, args.workers)
        for name, run in runs.items():
            if args.only and not any(o in name for o in args.only):
                continue
            values = [run() for _ in range(args.repeats)]
            if name.startswith("ray"):
                rows[name] = spread([v[0] for v in values])
                rows["ray tune random (after ray.init)"] = spread([v[1] for v in values])
            else:
                rows[name] = spread(values)
            print(f"-- {name}: {rows[name]['median']:.1f} trials/s", flush=True)
    print()
    print(f"{'system':36} {'trials/s (min-max)':>24} {'ms per trial':>13}")
    for name, r in rows.items():
        print(f"{name:36} {r['median']:>9.1f} ({r['min']:.1f}-{r['max']:.1f}) {1000 / r['median'] * args.workers:>10.0f}")
    if not has_ray:
        print("ray tune: not importable from --peers-python (not measured)")
    print(f"{args.workers} workers, {args.trials} trials, process start included; ms per trial = wall time per trial "
          "x workers (each worker's cost of one trial; the objective itself takes microseconds)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                          "cpus": os.cpu_count(), "server": server.kind, "workers": args.workers,
                                          "trials": args.trials, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
