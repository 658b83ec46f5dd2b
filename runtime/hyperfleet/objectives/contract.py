"""What a trial container sees, on either backend (:mod:`.docker`, :mod:`.kubernetes`), and how its
answer is read: the one definition both backends use.

A trial container finds its parameters in ``/hyperfleet/params.json``, writes its result to
``/hyperfleet/loss.json`` (``{"loss": 0.12, "status": "ok", ...}``: every other key is kept in the
trial's result) and may leave files in ``/hyperfleet/out/``. Its environment holds the experiment's
``env``, then the variables below (their names are ``TRIAL_ENV``). Any language can follow this;
examples/container-objective/objective.py does (tests/unit/test_objectives.py holds it to these names).
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

#: the directory of a trial container's files
MOUNT = "/hyperfleet"
PARAMS_FILE = "params.json"
LOSS_FILE = "loss.json"
OUT_DIR = "out"
PARAMS_PATH = f"{MOUNT}/{PARAMS_FILE}"
LOSS_PATH = f"{MOUNT}/{LOSS_FILE}"
OUT_PATH = f"{MOUNT}/{OUT_DIR}"

# -- the environment of a trial container --
PARAMS_ENV = "HYPERFLEET_PARAMS"
LOSS_ENV = "HYPERFLEET_LOSS"
OUT_ENV = "HYPERFLEET_OUT"
TRIAL_ID_ENV = "HYPERFLEET_TRIAL_ID"
EXP_KEY_ENV = "HYPERFLEET_EXP_KEY"
TRIAL_ENV = (PARAMS_ENV, LOSS_ENV, OUT_ENV, TRIAL_ID_ENV, EXP_KEY_ENV)

#: the values of ``status`` in loss.json
STATUSES = ("ok", "fail")
#: how much of a container's log an error message quotes
LOG_TAIL_LINES = 20


class ContainerTrialError(RuntimeError):
    """The container did not produce a result; the message carries the reason and its log tail."""


def trial_environment(objective, exp_key: str | None, tid: Any) -> dict[str, str]:
    """What a trial's container finds in its environment: the experiment's env, then the contract's."""
    return {**dict(objective.env), PARAMS_ENV: PARAMS_PATH, LOSS_ENV: LOSS_PATH, OUT_ENV: OUT_PATH,
            TRIAL_ID_ENV: str(tid), EXP_KEY_ENV: exp_key or ""}


def params_json(params: Any) -> bytes:
    """The trial's params.json: its parameters (numpy values as plain numbers)."""
    return json.dumps(params, default=_jsonable, sort_keys=True).encode()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def parse_loss(raw: bytes, name: str, tail: str) -> dict:
    """hyperopt's result from loss.json: a JSON object with a finite ``loss`` when ``status`` is ok."""
    try:
        result = json.loads(raw)
    except ValueError as err:
        raise ContainerTrialError(f"container {name} wrote a {LOSS_PATH} that is not JSON ({err}); "
                                  f"last lines of its log:\n{tail}") from None
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        result = {"loss": result}
    if not isinstance(result, dict):
        raise ContainerTrialError(f"container {name}: {LOSS_PATH} must hold an object like "
                                  '{"loss": 0.1, "status": "ok"}')
    result.setdefault("status", "ok")
    if result["status"] not in STATUSES:
        raise ContainerTrialError(f"container {name}: status in {LOSS_FILE} must be one of {', '.join(STATUSES)}, "
                                  f"not {result['status']!r}")
    loss = result.get("loss")
    if result["status"] == "ok" and (not isinstance(loss, (int, float)) or isinstance(loss, bool)
                                     or loss != loss or loss in (float("inf"), float("-inf"))):
        raise ContainerTrialError(f"container {name}: {LOSS_FILE} with status ok needs a finite number as loss, "
                                  f"got {loss!r}")
    return result


def has_files(tar_bytes: bytes) -> bool:
    """Does this tar (of out/) hold a file?"""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return any(m.isfile() for m in tar)


def tail(logs: bytes, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a container's log, for an error message."""
    text = logs.decode("utf-8", "replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:]) or "(the container wrote no log)"


def slug(text: str) -> str:
    """A piece of a container or pod name made of an exp_key."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:40]
