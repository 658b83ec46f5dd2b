"""Objectives shipped in the runtime image, so a stack's example experiment runs with no code of yours.

``hyperfleet.demo:branin`` is the Branin function over ``x`` in [-5, 10] and ``y`` in [0, 15]; its
minimum, 0.397887, lies at three points, e.g. (pi, 2.275). ``sleep_seconds`` (optional) makes each
trial take that long, so there is time to watch it or to kill a worker mid-trial.
"""

import math
import time


def branin(params):
    time.sleep(float(params.get("sleep_seconds", 0)))
    x, y = params["x"], params["y"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (y - b * x**2 + c * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10
