"""A synthetic learning curve, the objective of ``make bench-pruning`` (bench/bench_pruning.py).

A trial with parameters ``x`` and ``y`` "trains" for up to :data:`MAX_STEPS` steps; after step ``s``
its loss is ``asymptote(x, y) + GAP * exp(-s / tau(y))`` plus Gaussian noise. The asymptote (what the
trial would reach) has its minimum :data:`FLOOR` at x = 1, y = -0.5; ``tau`` (how fast it learns) is
2 to 4 steps and depends on ``y`` alone, so curves cross: a slow learner with a low asymptote is
behind a fast one with a higher asymptote for the first few steps, as in real training, where an early
decision can be wrong. The noise is a pure function of (seed, parameters, step), so the same point
gives the same curve in hyperfleet's workers and in Optuna's. Each step sleeps ``step_seconds``.

Pure Python with no import of hyperfleet or Optuna at the top: both systems' workers import it.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import time

MAX_STEPS = 27
FLOOR = 0.1
GAP = 2.0
NOISE = 0.02
#: the search space, as a hyperfleet spec writes it (Optuna's workers read the same bounds)
SPACE = {"x": {"uniform": [-4.0, 4.0]}, "y": {"uniform": [-4.0, 4.0]}}
#: what the workers read: the noise's seed and the time one step sleeps
SEED_ENV, STEP_SECONDS_ENV, MAX_STEPS_ENV = "BENCH_CURVE_SEED", "BENCH_CURVE_STEP_SECONDS", "BENCH_CURVE_MAX_STEPS"


def asymptote(x: float, y: float) -> float:
    return FLOOR + 0.05 * ((x - 1.0) ** 2 + (y + 0.5) ** 2)


def tau(y: float) -> float:
    return 3.0 + math.tanh(y)


def expected_loss(x: float, y: float, step: int) -> float:
    """The loss after ``step`` (1-based) steps of the trial at (x, y), without the noise."""
    return asymptote(x, y) + GAP * math.exp(-step / tau(y))


def loss_at(x: float, y: float, step: int, seed: int) -> float:
    """The loss after ``step`` steps of the trial at (x, y), with the run's noise ``seed``."""
    key = f"{seed}:{x!r}:{y!r}:{step}".encode()
    noise = random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")).gauss(0.0, NOISE)
    return expected_loss(x, y, step) + noise


def train(x: float, y: float, report, seed: int | None = None, step_seconds: float | None = None,
          max_steps: int | None = None) -> float:
    """Run the steps, calling ``report(step, loss)`` after each (which raises to stop the trial); the
    last loss. Unset arguments come from the environment (:data:`SEED_ENV` and the others)."""
    seed = int(os.environ.get(SEED_ENV, "0")) if seed is None else seed
    step_seconds = float(os.environ.get(STEP_SECONDS_ENV, "0.05")) if step_seconds is None else step_seconds
    max_steps = int(os.environ.get(MAX_STEPS_ENV, str(MAX_STEPS))) if max_steps is None else max_steps
    loss = math.inf
    for step in range(1, max_steps + 1):
        time.sleep(step_seconds)
        loss = loss_at(x, y, step, seed)
        report(step, loss)
    return loss


def objective(params):
    """hyperfleet's objective: the steps reported with ``hyperfleet.report``, which raises
    ``hyperfleet.TrialPruned`` when the experiment's rule stops the trial."""
    import hyperfleet

    return train(params["x"], params["y"], hyperfleet.report)
