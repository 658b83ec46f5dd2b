"""Pruning: what stopping unpromising trials early saves, and what it costs in the best loss found.

    make bench-pruning [ARGS="--seeds 0 1 2 3 4 --step-seconds 0.05"]

The objective is a synthetic learning curve (bench/learning_curves.py: up to 27 steps, each sleeping
``--step-seconds``, the loss decaying towards an asymptote that depends on the parameters, plus noise
seeded by the run's seed). Per seed, in one run, each on a fresh database or study:

* hyperfleet: ``hyperfleet run`` (TPE, the seed as the spec's ``seed``, ``parallelism`` = workers) with
  ``--workers`` ``hyperfleet worker`` processes; the objective reports each step with
  ``hyperfleet.report``; no ``pruning``, then the median rule, then ASHA;
* Optuna: ``--workers`` processes running ``study.optimize`` on one study in its RDB storage on the
  PostgreSQL the test server runs on (as ``make bench-peers``), TPE (seeded per worker), the objective
  calling ``trial.report`` and ``trial.should_prune``; NopPruner, MedianPruner, SuccessiveHalvingPruner
  with the same figures as our rules.

Measured per run: compute (steps computed, all trials: hyperfleet counts its progress documents,
Optuna its intermediate values; both equal the steps the objective ran), wall time (process start to
the last trial's end), and the best final loss: the lowest loss after the last step of a trial that
computed all of them (a trial stopped earlier has no final loss: its last reported one is never
counted here; one judged at its last step, computed in full, is). Beside it, the same without the
noise (the curve's expected loss at the last step, for the trials that ran to the end): the noise
of one evaluation is as large as the differences between the best trials, and this says whether a
rule stopped the good configurations or only got less lucky draws. The table gives the
median (min-max) over the seeds; the noise is the spread over seeds of no pruning's best final loss.
Results: ``bench/results/pruning.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "runtime"))

from bench import learning_curves as curves  # noqa: E402
from bench.bench_peers import OPTUNA_STORAGE, optuna_study, postgres_url, run_hyperfleet, run_optuna_workers, shares  # noqa: E402
from hyperfleet.store import PROGRESS, JobStore  # noqa: E402
from testbed.mongo import MongoServer  # noqa: E402

OPTUNA_WORKER = OPTUNA_STORAGE + textwrap.dedent("""
    import json
    from bench.learning_curves import SPACE, train
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, name, rule, n, seed, algo = (sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                                      sys.argv[6])
    if rule is None:
        pruner = optuna.pruners.NopPruner()
    elif rule["rule"] == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=rule["min_trials"], n_warmup_steps=rule["warmup_steps"])
    else:
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=rule["min_step"],
                                                         reduction_factor=rule["reduction_factor"])
    sampler = optuna.samplers.TPESampler(seed=seed) if algo == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    study = optuna.load_study(study_name=name, storage=storage(url), sampler=sampler, pruner=pruner)
    def objective(trial):
        x, y = (trial.suggest_float(p, *SPACE[p]["uniform"]) for p in ("x", "y"))
        def report(step, loss):
            trial.report(loss, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return train(x, y, report)
    study.optimize(objective, n_trials=n)
""")
OPTUNA_RESULTS = OPTUNA_STORAGE + textwrap.dedent("""
    import json
    study = optuna.load_study(study_name=sys.argv[2], storage=storage(sys.argv[1]))
    print(json.dumps([{"state": t.state.name, "steps": len(t.intermediate_values), "params": t.params,
                       "last_step": max(t.intermediate_values, default=0),
                       "last": t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None}
                      for t in study.trials]))
""")
VARIANTS = ("none", "median", "asha")


def rules(args) -> dict[str, dict | None]:
    return {"none": None,
            "median": {"rule": "median", "warmup_steps": args.warmup_steps, "min_trials": args.min_trials},
            "asha": {"rule": "asha", "min_step": args.min_step, "max_step": args.max_steps,
                     "reduction_factor": args.reduction_factor}}


def curve_env(args, seed: int) -> dict[str, str]:
    return {curves.SEED_ENV: str(seed), curves.STEP_SECONDS_ENV: str(args.step_seconds),
            curves.MAX_STEPS_ENV: str(args.max_steps)}


def summary(trials: list[dict], wall: float, args) -> dict:
    """``trials``: each trial's steps computed, whether it computed all ``max_steps`` of them (its loss is
    then a final loss, also when its rule judged it at the last step) and its last loss."""
    finals = [t for t in trials if t["ran_all"]]
    compute = sum(t["steps"] for t in trials)
    assert len(trials) == args.trials, f"{len(trials)} trials ended, not {args.trials}"
    best = min(finals, key=lambda t: t["loss"], default=None)
    return {"compute_steps": compute, "compute_share": compute / (args.trials * args.max_steps), "wall_seconds": wall,
            "best_final": best["loss"] if best else None,
            # the same without the noise: what the configurations that ran to the end are worth
            "best_final_noiseless": min((curves.expected_loss(t["x"], t["y"], args.max_steps) for t in finals),
                                        default=None),
            "ran_all": len(finals), "stopped": len(trials) - len(finals)}


def hyperfleet_variant(server: MongoServer, args, seed: int, rule: dict | None) -> dict:
    name = "curves"
    url = server.database_url("prune" + str(time.time_ns()))
    spec = {"name": name, "objective": "bench.learning_curves:objective", "algo": args.algo, "seed": seed,
            "max_evals": args.trials, "parallelism": args.workers, "space": curves.SPACE}
    if rule:
        spec["pruning"] = rule
    wall = run_hyperfleet(url, spec, args.workers, env=curve_env(args, seed))
    store = JobStore.connect(url)
    try:
        trials = []
        for doc in store.experiment_trials(name):
            extra = doc.get("hyperfleet") or {}
            progress = extra.get("progress") or {}
            assert doc["result"].get("status") == "ok", doc
            trials.append({"steps": progress.get("steps", 0), "ran_all": progress.get("step") == args.max_steps,
                           "loss": doc["result"]["loss"], "pruned": bool(extra.get("pruned")),
                           **{p: doc["misc"]["vals"][p][0] for p in curves.SPACE}})
        reported = store.db[PROGRESS].count_documents({"exp_key": name})
        assert reported == sum(t["steps"] for t in trials), (reported, trials)
    finally:
        store.client.drop_database(store.address.database)
        store.close()
    return summary(trials, wall, args)


def optuna_variant(server: MongoServer, args, seed: int, rule: dict | None) -> dict:
    pg_url = postgres_url(server)
    name = optuna_study(args.peers_python, pg_url)
    env = dict(os.environ, PYTHONPATH=str(REPO), **curve_env(args, seed))
    wall = run_optuna_workers(args.peers_python, OPTUNA_WORKER,
                              [[pg_url, name, json.dumps(rule), str(n), str(seed * 1000 + i), args.algo]
                               for i, n in enumerate(shares(args.trials, args.workers))], env=env)
    found = subprocess.run([args.peers_python, "-c", OPTUNA_RESULTS, pg_url, name], env=env, check=True,
                           capture_output=True, text=True).stdout
    trials = [{"steps": t["steps"], "ran_all": t["last_step"] == args.max_steps, "loss": t["last"], **t["params"]}
              for t in json.loads(found)]
    return summary(trials, wall, args)


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers-python", help="python of a venv with optuna and psycopg2 (else Optuna is left out)")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=curves.MAX_STEPS)
    parser.add_argument("--step-seconds", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--algo", choices=("tpe", "rand"), default="tpe",
                        help="the search: TPE, or random search (Optuna's RandomSampler), which sets the samplers aside")
    parser.add_argument("--warmup-steps", type=int, default=5, help="median rule (and MedianPruner's n_warmup_steps)")
    parser.add_argument("--min-trials", type=int, default=5, help="median rule (and MedianPruner's n_startup_trials)")
    parser.add_argument("--min-step", type=int, default=3,
                        help="ASHA (and SuccessiveHalvingPruner's min_resource); 3: rungs at 3 and 9 (bench/README.md)")
    parser.add_argument("--reduction-factor", type=int, default=3, help="ASHA (and SuccessiveHalvingPruner's)")
    parser.add_argument("--only", action="append", help="run only the variants whose name contains this")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "pruning.json"))
    args = parser.parse_args()
    systems = {"hyperfleet": hyperfleet_variant}
    if args.peers_python:
        systems["optuna"] = optuna_variant
    names = [f"{system} {variant}" for system in systems for variant in VARIANTS]
    names = [n for n in names if not args.only or any(o in n for o in args.only)]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    with MongoServer(kind="ferretdb") as server:
        for seed in args.seeds:
            for name in names:
                system, variant = name.split()
                run = systems[system](server, args, seed, rules(args)[variant])
                runs[name].append({"seed": seed, **run})
                print(f"-- seed {seed} {name}: {run['compute_steps']} steps ({run['compute_share']:.0%}), "
                      f"{run['wall_seconds']:.1f} s, best final {run['best_final']}, {run['ran_all']} ran all",
                      flush=True)
    rows = {name: {key: spread([r[key] for r in found if r[key] is not None])
                   for key in ("compute_steps", "compute_share", "wall_seconds", "best_final", "best_final_noiseless",
                               "ran_all")}
            for name, found in runs.items() if found}
    print_table(rows, runs, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(), "server": server.kind,
        "args": {k: v for k, v in vars(args).items() if k not in ("only", "out")}, "rules": rules(args),
        "rows": rows, "runs": runs}, indent=2))
    return 0


def print_table(rows: dict, runs: dict, args) -> None:
    def cell(r, key, fmt):
        return f"{fmt.format(r[key]['median'])} ({fmt.format(r[key]['min'])}-{fmt.format(r[key]['max'])})"

    print()
    print(f"{'variant':18} {'compute (steps)':>18} {'share':>6} {'wall s':>18} {'best final loss':>24} "
          f"{'same, noiseless':>24} {'ran all':>8}")
    for name, r in rows.items():
        print(f"{name:18} {cell(r, 'compute_steps', '{:.0f}'):>18} {r['compute_share']['median']:>6.0%} "
              f"{cell(r, 'wall_seconds', '{:.1f}'):>18} {cell(r, 'best_final', '{:.4f}'):>24} "
              f"{cell(r, 'best_final_noiseless', '{:.4f}'):>24} {r['ran_all']['median']:>8.0f}")
    none = [r["best_final"] for r in runs.get("hyperfleet none", [])]
    if len(none) > 1:
        print(f"noise: no pruning's best final loss over {len(none)} seeds: median {statistics.median(none):.4f}, "
              f"stdev {statistics.stdev(none):.4f}, range {min(none):.4f}-{max(none):.4f}")
    print(f"{args.trials} trials of up to {args.max_steps} steps ({args.step_seconds} s each), {args.workers} workers, "
          f"{args.algo}, seeds {' '.join(map(str, args.seeds))}; median (min-max) over the seeds")


if __name__ == "__main__":
    sys.exit(main())
