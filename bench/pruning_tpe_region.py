"""Does TPE prefer the region of pruned trials when they are recorded DONE with their last reported loss?

    PYTHONPATH=runtime python bench/pruning_tpe_region.py [SEEDS]     # about 2 s a seed

Sequential hyperopt Trials, the median rule of hyperfleet.pruning applied in memory (the same decision
function the worker uses), 27-step curves: loss(s) = f(x) + 2/(s+1), f(x) = 10 (x - 0.7)**2 on x in
[0, 1]. Counts, over seeds, the share of TPE's suggestions after its 20 random start-up trials that
fall where trials got pruned (x < 0.35): without pruning, with pruned trials recorded as hyperfleet
does (status ok, last reported loss), and recorded as failures (status fail) for comparison."""
import statistics
import sys

import numpy as np
from hyperopt import Trials, fmin, hp, tpe

from hyperfleet.pruning import median_prunes, parse_rule

RULE = parse_rule({"rule": "median", "warmup_steps": 3, "min_trials": 5})


def run(seed, prune):
    values = {}  # step -> [values of earlier trials]

    def objective(x):
        f = (x - 0.7) ** 2 * 10
        best = None
        for s in range(27):
            v = f + 2 / (s + 1)
            best = v if best is None else min(best, v)
            others = values.get(s, [])
            values.setdefault(s, []).append(v)
            if prune and median_prunes(RULE, s, best, others):
                if prune == "fail":  # the alternative: a pruned trial as a failure, which TPE leaves out
                    return {"status": "fail", "pruned": True, "steps": s + 1}
                return {"loss": v, "status": "ok", "pruned": True, "steps": s + 1}
        return {"loss": v, "status": "ok", "steps": 27}

    trials = Trials()
    fmin(objective, hp.uniform("x", 0, 1), algo=tpe.suggest, max_evals=100, trials=trials,
         rstate=np.random.default_rng(seed), show_progressbar=False)
    xs = [t["misc"]["vals"]["x"][0] for t in trials.trials]
    results = [t["result"] for t in trials.trials]
    late = xs[20:]
    pruned_xs = [x for x, r in zip(xs, results, strict=True) if r.get("pruned")]
    return (sum(x < 0.35 for x in late) / len(late), sum(r["steps"] for r in results),
            min((x - 0.7) ** 2 * 10 for x, r in zip(xs, results, strict=True) if not r.get("pruned")), len(pruned_xs),
            sum(x < 0.35 for x in pruned_xs))


for prune in (False, "last", "fail"):
    rows = [run(seed, prune) for seed in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5)]
    print(f"pruning={prune}: share of suggestions 21-100 in x<0.35: "
          f"{statistics.mean(r[0] for r in rows):.3f} (per seed {[round(r[0], 3) for r in rows]}); "
          f"steps {statistics.mean(r[1] for r in rows):.0f}; best final loss of whole trials "
          f"{statistics.mean(r[2] for r in rows):.4f}; pruned {statistics.mean(r[3] for r in rows):.1f}, "
          f"of which in x<0.35 {statistics.mean(r[4] for r in rows):.1f}")
