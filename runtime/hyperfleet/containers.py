"""Container objectives: each trial runs in its own container, any language, through two files.

The worker creates the container, copies ``/hyperfleet/params.json`` (the trial's parameters) into
it, starts it, and when it exits reads ``/hyperfleet/loss.json`` (``{"loss": 0.12, "status": "ok",
...}``; every other key is kept in the trial's result) and the files under ``/hyperfleet/out/``.
Files are copied through the engine's archive API, never bind-mounted, so this works the same when
the worker itself runs in a container or talks to a remote engine (``ssh://`` hosts).

A trial is ERROR, with the last lines of the container's log in the message, when the container exits
with a non-zero code, never writes loss.json, writes one that is not a result, or outlives the
trial's ``timeout_seconds`` (it is killed). An image that cannot be found is ERROR with the engine's
own message. The log is kept with the trial as the attachment ``container.log`` and ``out/`` as
``out.tar``, whatever the outcome; the container is always removed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import tarfile
import time
import uuid
from collections.abc import Mapping
from typing import Any

from .contract import EXP_KEY_LABEL, OWNER_LABEL, ROLE_LABEL, ROLE_TRIAL, TID_LABEL

log = logging.getLogger("hyperfleet.containers")

MOUNT = "/hyperfleet"
LOG_TAIL_LINES = 20
_WAIT_STEP_SECONDS = 0.5
_STATUSES = ("ok", "fail")


class ContainerTrialError(RuntimeError):
    """The container did not produce a result; the message carries the reason and its log tail."""


@dataclasses.dataclass(frozen=True)
class ContainerObjective:
    """A picklable objective (it travels inside fmin's domain) that runs one container per trial."""

    image: str
    command: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    timeout_seconds: float | None = None
    pull: str = "missing"  # missing | always | never
    #: trial pods only (JSON, so that the objective stays hashable): resources, node_selector, tolerations
    kubernetes_json: str = "{}"

    #: hyperopt passes (expr, memo, ctrl) instead of the evaluated parameters, so the trial's id and
    #: its attachments are at hand (``hyperopt.base.Domain`` reads this attribute)
    fmin_pass_expr_memo_ctrl = True

    @property
    def kubernetes(self) -> dict:
        return json.loads(self.kubernetes_json)

    def __call__(self, expr, memo, ctrl) -> dict:
        from hyperopt import pyll

        from . import trial_pods

        params = pyll.rec_eval(expr, memo=memo)
        trial = ctrl.current_trial or {}
        # the worker that reserved the trial: its trial containers and pods are labelled with it, so it
        # can remove what its (possibly killed) evaluation child started
        owner = (trial.get("owner") or [""])[0]
        if trial_pods.on_kubernetes():
            return trial_pods.run_trial_pod(self, params, trial.get("exp_key"), trial.get("tid"), ctrl.attachments,
                                            owner=owner)
        return run_container_trial(self, params, trial.get("exp_key"), trial.get("tid"), ctrl.attachments, owner=owner)


def docker_client(timeout_seconds: float = 120):
    import docker

    return docker.from_env(timeout=timeout_seconds)


def run_container_trial(objective: ContainerObjective, params: Any, exp_key: str | None, tid: Any,
                        attachments: Any, owner: str = "", client=None) -> dict:
    """Run one trial's container to its end and return hyperopt's result dict (or raise)."""
    import docker.errors

    client = client or docker_client()
    _ensure_image(client, objective)
    name = f"hyperfleet-trial-{_slug(exp_key or 'default')}-{tid}-{uuid.uuid4().hex[:6]}"
    env = trial_environment(objective, exp_key, tid)
    labels = {ROLE_LABEL: ROLE_TRIAL, EXP_KEY_LABEL: exp_key or "", TID_LABEL: str(tid), OWNER_LABEL: owner}
    container = client.containers.create(objective.image, list(objective.command) if objective.command else None,
                                         name=name, environment=env, labels=labels, detach=True)
    try:
        container.put_archive("/", _params_archive(params))
        container.start()
        code, timed_out = _wait(container, objective.timeout_seconds)
        logs = container.logs(stdout=True, stderr=True) or b""
        attachments["container.log"] = logs
        out = _read_archive(container, f"{MOUNT}/out")
        if out is not None and _has_files(out):
            attachments["out.tar"] = out
        tail = _tail(logs)
        if timed_out:
            raise ContainerTrialError(f"container {name} ran longer than the trial timeout of "
                                      f"{objective.timeout_seconds:g}s and was killed; last lines of its log:\n{tail}")
        if code != 0:
            raise ContainerTrialError(f"container {name} exited with code {code}; last lines of its log:\n{tail}")
        loss_tar = _read_archive(container, f"{MOUNT}/loss.json")
        if loss_tar is None:
            raise ContainerTrialError(f"container {name} exited without writing {MOUNT}/loss.json; "
                                      f"last lines of its log:\n{tail}")
        return parse_loss(_first_file(loss_tar), name, tail)
    except docker.errors.APIError as err:
        raise ContainerTrialError(f"the Docker engine refused trial container {name}: {err.explanation or err}") from None
    finally:
        try:
            container.remove(force=True)
        except docker.errors.APIError as err:
            log.warning("could not remove trial container %s: %s", name, err)


def trial_environment(objective: ContainerObjective, exp_key: str | None, tid: Any) -> dict[str, str]:
    """What a trial's container finds in its environment: the experiment's env, then the contract's."""
    return {**dict(objective.env), "HYPERFLEET_PARAMS": f"{MOUNT}/params.json",
            "HYPERFLEET_LOSS": f"{MOUNT}/loss.json", "HYPERFLEET_OUT": f"{MOUNT}/out",
            "HYPERFLEET_TRIAL_ID": str(tid), "HYPERFLEET_EXP_KEY": exp_key or ""}


def remove_owned_containers(owner: str) -> int:
    """Remove every trial container (or trial pod, on Kubernetes) of this worker's owner (after its
    trial was handed back, or its child killed).

    Quietly does nothing when no Docker engine can be reached: then no container was started either.
    """
    from . import trial_pods

    if trial_pods.on_kubernetes():
        return trial_pods.remove_owned_pods(owner)
    try:
        client = docker_client(timeout_seconds=5)
        containers = client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"})
    except Exception:  # noqa: BLE001 - no engine, no containers
        return 0
    for container in containers:
        try:
            container.remove(force=True)
        except Exception as err:  # noqa: BLE001
            log.warning("could not remove trial container %s: %s", container.name, err)
    return len(containers)


def parse_loss(raw: bytes, name: str, tail: str) -> dict:
    """hyperopt's result from loss.json: a JSON object with a finite ``loss`` when ``status`` is ok."""
    try:
        result = json.loads(raw)
    except ValueError as err:
        raise ContainerTrialError(f"container {name} wrote a {MOUNT}/loss.json that is not JSON ({err}); "
                                  f"last lines of its log:\n{tail}") from None
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        result = {"loss": result}
    if not isinstance(result, dict):
        raise ContainerTrialError(f"container {name}: {MOUNT}/loss.json must hold an object like "
                                  '{"loss": 0.1, "status": "ok"}')
    result.setdefault("status", "ok")
    if result["status"] not in _STATUSES:
        raise ContainerTrialError(f"container {name}: status in loss.json must be one of {', '.join(_STATUSES)}, "
                                  f"not {result['status']!r}")
    loss = result.get("loss")
    if result["status"] == "ok" and (not isinstance(loss, (int, float)) or isinstance(loss, bool)
                                     or loss != loss or loss in (float("inf"), float("-inf"))):
        raise ContainerTrialError(f"container {name}: loss.json with status ok needs a finite number as loss, "
                                  f"got {loss!r}")
    return result


def _ensure_image(client, objective: ContainerObjective) -> None:
    import docker.errors

    if objective.pull == "always":
        client.images.pull(objective.image)
        return
    try:
        client.images.get(objective.image)
    except docker.errors.ImageNotFound as err:
        if objective.pull == "never":
            raise ContainerTrialError(f"image {objective.image} not found and pull is never: "
                                      f"{err.explanation or err}") from None
        try:
            client.images.pull(objective.image)
        except docker.errors.APIError as pull_err:
            raise ContainerTrialError(f"image {objective.image} could not be pulled: "
                                      f"{pull_err.explanation or pull_err}") from None


def _wait(container, timeout_seconds: float | None) -> tuple[int | None, bool]:
    import requests

    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        step = _WAIT_STEP_SECONDS if deadline is None else max(0.05, min(_WAIT_STEP_SECONDS, deadline - time.monotonic()))
        try:
            return container.wait(timeout=step)["StatusCode"], False
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            pass  # the engine's answer did not come within the step: still running
        if deadline is not None and time.monotonic() >= deadline:
            container.kill()
            container.wait()
            return None, True


def params_json(params: Any) -> bytes:
    """The trial's params.json: its parameters (numpy values as plain numbers)."""
    return json.dumps(params, default=_jsonable, sort_keys=True).encode()


def _params_archive(params: Any) -> bytes:
    """A tar of /hyperfleet with params.json and an empty out/ that any container user can write."""
    payload = params_json(params)
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, mode in (("hyperfleet", 0o777), ("hyperfleet/out", 0o777)):
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
            tar.addfile(info)
        info = tarfile.TarInfo("hyperfleet/params.json")
        info.size, info.mode, info.mtime = len(payload), 0o644, now
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _read_archive(container, path: str) -> bytes | None:
    import docker.errors

    try:
        stream, _stat = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    return b"".join(stream)


def _first_file(tar_bytes: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar:
            if member.isfile():
                return tar.extractfile(member).read()
    return b""


def _has_files(tar_bytes: bytes) -> bool:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return any(m.isfile() for m in tar)


def _tail(logs: bytes, lines: int = LOG_TAIL_LINES) -> str:
    text = logs.decode("utf-8", "replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:]) or "(the container wrote no log)"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:40]


def from_spec(objective: Mapping[str, Any]) -> ContainerObjective:
    """The objective of a spec's ``objective: {image: ..., command: ..., env: ...}``."""
    command = objective.get("command")
    return ContainerObjective(
        image=objective["image"],
        command=tuple(command) if command else None,
        env=tuple(sorted((objective.get("env") or {}).items())),
        timeout_seconds=objective.get("timeout_seconds"),
        pull=objective.get("pull", "missing"),
        kubernetes_json=json.dumps({k: objective[k] for k in ("resources", "node_selector", "tolerations")
                                    if objective.get(k)}, sort_keys=True),
    )
