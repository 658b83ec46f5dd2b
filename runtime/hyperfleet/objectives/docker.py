"""Container objectives on Docker hosts: one container per trial, with the files and environment of
:mod:`.contract`.

The worker creates the container, copies ``/hyperfleet/params.json`` into it, starts it, and when it
exits reads ``/hyperfleet/loss.json`` and the files under ``/hyperfleet/out/``. Files are copied
through the engine's archive API, never bind-mounted, so this works the same when the worker itself
runs in a container or talks to a remote engine (``ssh://`` hosts).

A trial is ERROR, with the last lines of the container's log in the message, when the container exits
with a non-zero code, never writes loss.json, writes one that is not a result, or outlives the
trial's ``timeout_seconds`` (it is killed). An image that cannot be found is ERROR with the engine's
own message. The log is kept with the trial as the attachment ``container.log`` and ``out/`` as
``out.tar``, whatever the outcome; the container is always removed.

While the container runs, its log is followed: each progress line (``contract.PROGRESS_MARK``) is
reported (``hyperfleet.report``); when the trial's rule prunes it, the container is removed at once
(its log as followed so far kept) and ``TrialPruned`` goes up to the worker.
"""

from __future__ import annotations

import io
import logging
import tarfile
import time
import uuid
from typing import Any

from ..contract import EXP_KEY_LABEL, GPU_LABEL, OWNER_LABEL, ROLE_LABEL, ROLE_TRIAL, TID_LABEL
from ..pruning import TrialPruned, report
from .abandoned import creating
from .contract import (
    LOSS_PATH,
    MOUNT,
    OUT_DIR,
    OUT_PATH,
    PARAMS_FILE,
    ContainerTrialError,
    ProgressFollower,
    has_files,
    params_json,
    parse_loss,
    slug,
    tail,
    trial_environment,
)

log = logging.getLogger(__name__)

#: how often the wait for a trial container's exit reports the progress lines read meanwhile
_WAIT_STEP_SECONDS = 0.25


#: how long removing a worker's trial containers may wait on the engine (each call)
REMOVE_TIMEOUT_SECONDS = 30


def docker_client(timeout_seconds: float = 120):
    import docker

    return docker.from_env(timeout=timeout_seconds)


def gpu_request(gpu: str):
    """Docker's device request for one GPU (``docker run --gpus device=ID``): the engine's nvidia device driver
    (the NVIDIA Container Toolkit) gives the container that GPU alone and sets NVIDIA_VISIBLE_DEVICES to it."""
    import docker.types

    return docker.types.DeviceRequest(device_ids=[gpu], capabilities=[["gpu"]])


def run_container_trial(objective, params: Any, exp_key: str | None, tid: Any,
                        attachments: Any, owner: str = "", client=None, gpu: str | None = None) -> dict:
    """Run one trial's container to its end and return hyperopt's result dict (or raise). ``gpu``: the GPU of
    the worker, which the container gets too."""
    import docker.errors

    client = client or docker_client()
    _ensure_image(client, objective)
    name = f"hyperfleet-trial-{slug(exp_key or 'default')}-{tid}-{uuid.uuid4().hex[:6]}"
    env = trial_environment(objective, exp_key, tid)
    labels = {ROLE_LABEL: ROLE_TRIAL, EXP_KEY_LABEL: exp_key or "", TID_LABEL: str(tid), OWNER_LABEL: owner}
    devices = {}
    if gpu:
        labels[GPU_LABEL] = gpu
        devices["device_requests"] = [gpu_request(gpu)]
    with creating(name):
        container = client.containers.create(objective.image, list(objective.command) if objective.command else None,
                                             name=name, environment=env, labels=labels, detach=True, **devices)
    removed = False
    try:
        container.put_archive("/", _params_archive(params))
        container.start()
        progress = ProgressFollower(lambda: container.logs(stream=True, follow=True, stdout=True, stderr=True), name)
        progress.start()
        try:
            code, timed_out = _wait(container, objective.timeout_seconds, progress)
        except TrialPruned:
            container.remove(force=True)  # at once; its log as followed so far is kept
            removed = True
            attachments["container.log"] = progress.log
            raise
        logs = container.logs(stdout=True, stderr=True) or b""
        attachments["container.log"] = logs
        out = _read_archive(container, OUT_PATH)
        if out is not None and has_files(out):
            attachments["out.tar"] = out
        log_tail = tail(logs)
        if timed_out:
            raise ContainerTrialError(f"container {name} ran longer than the trial timeout of "
                                      f"{objective.timeout_seconds:g}s and was killed; last lines of its log:\n{log_tail}")
        if code != 0:
            raise ContainerTrialError(f"container {name} exited with code {code}; last lines of its log:\n{log_tail}")
        loss_tar = _read_archive(container, LOSS_PATH)
        if loss_tar is None:
            raise ContainerTrialError(f"container {name} exited without writing {LOSS_PATH}; "
                                      f"last lines of its log:\n{log_tail}")
        return parse_loss(_first_file(loss_tar), name, log_tail)
    except docker.errors.APIError as err:
        raise ContainerTrialError(f"the Docker engine refused trial container {name}: {err.explanation or err}") from None
    finally:
        try:
            if not removed:
                container.remove(force=True)
        except docker.errors.APIError as err:
            log.warning("could not remove trial container %s: %s", name, err)


def remove_owned_containers(owner: str) -> int:
    """Remove every trial container of this worker's owner (after its trial was handed back, or its
    child killed).

    Quietly does nothing when no Docker engine can be reached: then no container was started either. An
    engine that answers slowly gets :data:`REMOVE_TIMEOUT_SECONDS` (a busy engine took over 5 s to list
    them, and the container stayed); one that does not answer in time is logged, not taken for none.
    """
    try:
        import requests  # the Docker SDK's HTTP client
    except ImportError:  # no SDK (the containers extra): no container was started
        return 0
    try:
        client = docker_client(timeout_seconds=REMOVE_TIMEOUT_SECONDS)
        containers = client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"})
    except Exception as err:  # noqa: BLE001 - no engine, no containers; a stalled one is said
        if any(isinstance(e, requests.exceptions.Timeout) for e in _chain(err)):
            log.warning("could not list the trial containers of %s to remove them: %s", owner, err)
        return 0
    for container in containers:
        try:
            container.remove(force=True)
        except Exception as err:  # noqa: BLE001
            log.warning("could not remove trial container %s: %s", container.name, err)
    return len(containers)


def _chain(err: BaseException):
    """``err`` and the exceptions it was raised from (the SDK wraps a timeout of its first call)."""
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def _ensure_image(client, objective) -> None:
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


def _wait(container, timeout_seconds: float | None, progress: ProgressFollower | None = None) -> tuple[int | None, bool]:
    """Wait for the container's exit (its code, and whether it was killed at the timeout), reporting
    the progress lines read meanwhile: a report that prunes the trial raises TrialPruned."""
    import requests

    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        for step, loss in progress.drain() if progress else ():
            report(step, loss)
        step = _WAIT_STEP_SECONDS if deadline is None else max(0.05, min(_WAIT_STEP_SECONDS, deadline - time.monotonic()))
        try:
            return container.wait(timeout=step)["StatusCode"], False
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            pass  # the engine's answer did not come within the step: still running
        if deadline is not None and time.monotonic() >= deadline:
            container.kill()
            container.wait()
            return None, True


def _params_archive(params: Any) -> bytes:
    """A tar of /hyperfleet with params.json and an empty out/ that any container user can write
    (extracted at /)."""
    payload = params_json(params)
    buffer = io.BytesIO()
    now = time.time()
    root = MOUNT.lstrip("/")
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, mode in ((root, 0o777), (f"{root}/{OUT_DIR}", 0o777)):
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, now
            tar.addfile(info)
        info = tarfile.TarInfo(f"{root}/{PARAMS_FILE}")
        info.size, info.mode, info.mtime = len(payload), 0o644, now
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


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
