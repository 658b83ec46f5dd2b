"""What a trial container sees, on either backend (:mod:`.docker`, :mod:`.kubernetes`), and how its
answer is read: the one definition both backends use.

A trial container finds its parameters in ``/hyperfleet/params.json``, writes its result to
``/hyperfleet/loss.json`` (``{"loss": 0.12, "status": "ok", ...}``: every other key is kept in the
trial's result) and may leave files in ``/hyperfleet/out/``. Its environment holds the experiment's
``env``, then the variables below (their names are ``TRIAL_ENV``). Any language can follow this;
examples/container-objective/objective.py does (tests/unit/test_objectives.py holds it to these names).

While it runs, a trial container reports intermediate values (for pruning and learning curves) by
printing lines to its log, stdout or stderr: ``PROGRESS_MARK`` then a JSON object,
``hyperfleet-progress: {"step": 3, "loss": 0.42}`` (flushed: the worker reads the log as it is
written). The mark is also in its environment (``PROGRESS_ENV``). A log line, not a file: the worker
follows the log through the Docker engine's API, or a trial pod's through the Kubernetes API, without
a sidecar, ``pods/exec`` or anything in the image; a file in a pod's emptyDir could not be read.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import tarfile
import threading
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

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
PROGRESS_ENV = "HYPERFLEET_PROGRESS_MARK"
TRIAL_ENV = (PARAMS_ENV, LOSS_ENV, OUT_ENV, TRIAL_ID_ENV, EXP_KEY_ENV, PROGRESS_ENV)

#: a log line starting with this, then ``{"step": N, "loss": X}``, reports a value (hyperfleet.report)
PROGRESS_MARK = "hyperfleet-progress:"

#: the values of ``status`` in loss.json
STATUSES = ("ok", "fail")
#: how much of a container's log an error message quotes
LOG_TAIL_LINES = 20


class ContainerTrialError(RuntimeError):
    """The container did not produce a result; the message carries the reason and its log tail."""


def trial_environment(objective, exp_key: str | None, tid: Any) -> dict[str, str]:
    """What a trial's container finds in its environment: the experiment's env, then the contract's."""
    return {**dict(objective.env), PARAMS_ENV: PARAMS_PATH, LOSS_ENV: LOSS_PATH, OUT_ENV: OUT_PATH,
            TRIAL_ID_ENV: str(tid), EXP_KEY_ENV: exp_key or "", PROGRESS_ENV: PROGRESS_MARK}


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


def progress_value(line: str) -> tuple[Any, Any] | None:
    """``(step, loss)`` of a progress line, None for any other line; a marked line that is not
    ``{"step": ..., "loss": ...}`` is logged and skipped (``hyperfleet.report`` checks the values)."""
    line = line.strip()
    if not line.startswith(PROGRESS_MARK):
        return None
    try:
        value = json.loads(line[len(PROGRESS_MARK):])
        return value["step"], value["loss"]
    except (ValueError, TypeError, KeyError):
        log.warning("a trial container printed a progress line that is not %s {\"step\": N, \"loss\": X}: %.200s",
                    PROGRESS_MARK, line)
        return None


class ProgressFollower(threading.Thread):
    """Reads a trial container's log as it is written (``open_stream()``: chunks of bytes, ending when
    the container does) and keeps the progress lines for the trial's thread to report (``drain``), and
    the log read so far (``log``: what is kept of a pruned trial, whose container goes at once)."""

    def __init__(self, open_stream: Callable[[], Iterable[bytes]], name: str):
        super().__init__(name=f"hyperfleet-progress-{name}", daemon=True)
        self._open = open_stream
        self._values: queue.SimpleQueue = queue.SimpleQueue()
        self._log: list[bytes] = []

    @property
    def log(self) -> bytes:
        return b"".join(self._log)

    def run(self) -> None:
        pending = b""
        try:
            for chunk in self._open():
                self._log.append(chunk)
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                self._keep(lines)
        except Exception as err:  # noqa: BLE001 - the container went (pruned, removed): its log ends
            log.debug("stopped following a trial container's log: %s", err)
        self._keep([pending])

    def _keep(self, lines: list[bytes]) -> None:
        for line in lines:
            value = progress_value(line.decode("utf-8", "replace"))
            if value is not None:
                self._values.put(value)

    def drain(self) -> list[tuple[Any, Any]]:
        """The values read since the last call, in order."""
        values = []
        while True:
            try:
                values.append(self._values.get_nowait())
            except queue.Empty:
                return values
