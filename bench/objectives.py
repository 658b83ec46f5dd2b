"""Benchmark objectives, imported by both hyperfleet and stock hyperopt workers."""

import time


def record_start(x):
    """Trivial work; reports when evaluation began so pickup latency can be measured."""
    return {"loss": x, "status": "ok", "started_at": time.time()}


def quadratic(params):
    """The peers benchmark's objective (the same one Optuna and Ray Tune run): microseconds of work."""
    return (params["x"] - 1) ** 2
