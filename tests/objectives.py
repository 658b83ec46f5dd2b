"""Objectives the tests optimise; importable by worker processes through PYTHONPATH."""

import os
import sys
import time

from hyperopt import pyll
from hyperopt.fmin import fmin_pass_expr_memo_ctrl


def quadratic(x):
    return (x - 3.0) ** 2


def slow_quadratic(params):
    """Sleeps ``params['sleep']`` seconds so a test can act while the trial runs."""
    time.sleep(params["sleep"])
    return (params["x"] - 3.0) ** 2


def flaky(x):
    if x < 0:
        raise ValueError(f"negative x={x} is not allowed")
    return x


def report_pid_then_sleep(params):
    """Writes the worker's pid into the result file so a test can signal the right process."""
    with open(params["marker"], "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(params["sleep"])
    return params["x"]


def quadratic_trial(spec, ctrl):
    """A ``token_load`` objective: hyperopt calls it with the trial's spec and a ctrl."""
    return {"loss": quadratic(spec.get("x", 0.0)), "status": "ok"}


def scipy_stats_trial(spec, ctrl):
    """A ``token_load`` objective that says how its process holds scipy.stats: ``module`` (loaded),
    ``_Deferred`` (a stand-in of hyperfleet.startup) or ``NoneType`` (not imported)."""
    return {"loss": 0.0, "status": "ok", "scipy_stats": type(sys.modules.get("scipy.stats")).__name__}


def sleep_trial(spec, ctrl):
    """A ``token_load`` objective that runs for ``spec['sleep']`` seconds."""
    time.sleep(spec["sleep"])
    return {"loss": spec["sleep"], "status": "ok"}


def mixed(params):
    """A loss over a uniform, a log-scaled and a categorical parameter; x > 4 fails."""
    import math

    if params["x"] > 4:
        raise ValueError(f"x={params['x']:.3f} is out of range")
    return (params["x"] - 1.0) ** 2 + abs(math.log10(params["lr"]) + 3) + {"sgd": 1.0, "adam": 0.0}[params["opt"]]


def fail_first_time(params):
    """Raises on its first call for a marker path, succeeds after: a trial that a retry rescues."""
    if not os.path.exists(params["marker"]):
        open(params["marker"], "w").close()
        raise RuntimeError("first attempt fails")
    return 1.0


def constant(params):
    """The same loss for every point: no trial ever improves on the first."""
    time.sleep(params.get("sleep", 0.0))
    return 1.0


def identity(x):
    return x


def with_attachments(x):
    """A result with an attachment, as hyperopt documents them."""
    return {"loss": x**2, "status": "ok", "attachments": {"note": f"x={x}".encode()}}


#: attachments the server cannot store, each failing its own way, and one it can
ATTACHMENTS = {
    "str": ("note", "text, not bytes"),  # GridFS takes bytes: TypeError
    "surrogate": ("note-\ud800", b"x"),  # a name that is not valid UTF-8: UnicodeEncodeError, a ValueError
    "huge": ("n" * (17 << 20), b"x"),  # a name over BSON's 16 MB: DocumentTooLarge, an InvalidDocument
    "bytes": ("note", b"x"),
}


def with_attachment(kind):
    """A result with the attachment ATTACHMENTS[kind]."""
    name, value = ATTACHMENTS[kind]
    return {"loss": 1.0, "status": "ok", "attachments": {name: value}}


#: results the server cannot store, each failing its own way (the loss itself is fine), and one it can
RESULT_EXTRAS = {
    "huge-int": {"count": 2**70},  # BSON has 8-byte ints: OverflowError
    "surrogate": {"note": "\ud800"},  # not valid UTF-8: UnicodeEncodeError, a ValueError
    "int-key": {"per_class": {1: 0.5}},  # BSON keys are strings: InvalidDocument
    "plain": {"note": "fine"},
}


def with_result_extra(kind):
    """A result with the extra fields RESULT_EXTRAS[kind]."""
    return {"loss": 1.0, "status": "ok", **RESULT_EXTRAS[kind]}


@fmin_pass_expr_memo_ctrl
def checkpointing(expr, memo, ctrl):
    """Checkpoints a partial result (hyperopt's ctrl.checkpoint), then returns 1.0 once the file
    ``params['release']`` exists: a test reads the partial result while the trial runs."""
    params = pyll.rec_eval(expr, memo=memo)
    ctrl.checkpoint({"status": "ok", "loss": 9.0, "partial": True})
    deadline = time.monotonic() + 60
    while not os.path.exists(params["release"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return 1.0


def logged_quadratic(params):
    """Appends its x to the file ``params['log']`` on every evaluation: a test counts evaluations."""
    time.sleep(params["sleep"])
    with open(params["log"], "a") as f:
        f.write(f"{params['x']!r}\n")
    return (params["x"] - 3.0) ** 2


def slow_mixed(params):
    """``mixed`` after ``params['sleep']`` seconds: some trials fail, and the counts move at a visible pace."""
    time.sleep(params["sleep"])
    return mixed(params)


_CALLS = []


def calls_in_this_process(x):
    """How often this process ran the objective: 1 every time when each trial gets a fresh process."""
    _CALLS.append(x)
    return {"loss": float(len(_CALLS)), "status": "ok", "pid": os.getpid()}


def exits_without_a_result(x):
    """A crash no exception handler sees (as a segfault or the OOM killer would do)."""
    if x > 0:
        os._exit(3)
    return x


def learning_curve(params):
    """A learning curve the test controls: after step s the loss is ``level + 1 / (s + 1)``, reported
    with ``hyperfleet.report`` for ``steps`` steps (``sleep`` seconds each). Each step computed is
    appended to the file ``params['log']`` (the level names the trial) before it is
    reported, so a test sees where a pruned trial stopped; ``stride`` skips steps. ``stubborn`` catches TrialPruned and keeps
    sleeping: only a kill ends it. ``in_thread`` runs the loop in a thread the objective starts. Writes its
    pid to ``<log>.pid``."""
    import hyperfleet

    if params.get("in_thread"):  # the loop in a thread of the objective's own; its exception comes back here
        import threading

        outcome = {}

        def loop():
            try:
                outcome["loss"] = learning_curve({**params, "in_thread": False})
            except BaseException as err:  # noqa: BLE001 - re-raised in the objective's thread
                outcome["error"] = err

        worker = threading.Thread(target=loop)
        worker.start()
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["loss"]
    with open(f"{params['log']}.pid", "a") as f:
        f.write(f"{params['level']!r} {os.getpid()}\n")
    loss = None
    for step in range(0, int(params["steps"]), int(params.get("stride", 1))):
        time.sleep(params.get("sleep", 0.0))
        loss = params["level"] + 1.0 / (step + 1)
        with open(params["log"], "a") as f:
            f.write(f"{params['level']!r} {step}\n")
        try:
            hyperfleet.report(step, loss)
        except hyperfleet.TrialPruned:
            if not params.get("stubborn"):
                raise
            time.sleep(3600)
    return loss


@fmin_pass_expr_memo_ctrl
def learning_curve_attached(expr, memo, ctrl):
    """learning_curve, after attaching ``curve`` (b"level <level>") through its ctrl: a pruned trial keeps it."""
    params = pyll.rec_eval(expr, memo=memo)
    ctrl.attachments["curve"] = f"level {params['level']!r}".encode()
    return learning_curve(params)


def attaching_trial(spec, ctrl):
    """A ``token_load`` objective whose result carries an attachment (no hyperopt Domain stores it for it)."""
    return {"loss": 0.0, "status": "ok", "attachments": {"note": b"from the result"}}


def fails_below_zero_trial(spec, ctrl):
    """A ``token_load`` objective that raises for a negative ``x``: a run of failures on demand."""
    if spec["x"] < 0:
        raise ValueError(f"x={spec['x']} is negative")
    return {"loss": spec["x"], "status": "ok"}


def visible_gpus_trial(spec, ctrl):
    """A ``token_load`` objective that reports which GPUs CUDA would see here (and what the toolkit gave)."""
    return {"loss": 0.0, "status": "ok", "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "nvidia_visible_devices": os.environ.get("NVIDIA_VISIBLE_DEVICES")}
