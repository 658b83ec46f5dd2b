"""Objectives shipped in the runtime image, so a stack's example experiment runs with no code of yours.

``hyperfleet.demo:branin`` is the Branin function over ``x`` in [-5, 10] and ``y`` in [0, 15]; its
minimum, 0.397887, lies at three points, e.g. (pi, 2.275). ``sleep_seconds`` (optional) makes each
trial take that long, so there is time to watch it or to kill a worker mid-trial. With ``steps``
(optional), that time is spread over as many steps, each reported with ``hyperfleet.report`` (a loss
falling to the Branin value), so an experiment's pruning rule can stop a poor point early.
"""

import math
import time

from .pruning import report


def branin(params):
    x, y = params["x"], params["y"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    loss = (y - b * x**2 + c * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10
    steps = int(params.get("steps", 0))
    sleep = float(params.get("sleep_seconds", 0))
    for step in range(steps):
        time.sleep(sleep / steps)
        report(step, loss + 10.0 * (steps - 1 - step) / steps)
    if not steps:
        time.sleep(sleep)
    return loss
