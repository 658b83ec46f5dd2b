"""Example objectives. Workers import them by module path, so this folder must be on PYTHONPATH."""

import math


def branin(params):
    """The Branin function; its minimum is 0.397887 at three points, e.g. (pi, 2.275)."""
    x, y = params["x"], params["y"]
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (y - b * x**2 + c * x - r) ** 2 + s * (1 - t) * math.cos(x) + s


def grid_score(params):
    """A toy score over a discrete grid (lower is better)."""
    return {"sgd": 1.0, "adam": 0.5}[params["optimizer"]] * params["depth"]


def branin_epochs(params):
    """Branin as if it were trained for ``epochs`` epochs: the loss after epoch e falls towards the
    branin value, and each epoch is reported with ``hyperfleet.report`` so the experiment's pruning
    rule can stop a poor point early (examples/experiments/branin-pruned.yaml). Runs anywhere: outside
    a hyperfleet worker ``report`` does nothing."""
    import time

    import hyperfleet

    final = branin(params)
    epochs = int(params.get("epochs", 27))
    loss = final
    for epoch in range(epochs):
        time.sleep(params.get("epoch_seconds", 0.05))
        loss = final + 20.0 / (epoch + 1)
        hyperfleet.report(epoch, loss)  # raises hyperfleet.TrialPruned when the rule stops the trial
    return loss
