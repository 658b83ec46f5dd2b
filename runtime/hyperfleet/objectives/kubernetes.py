"""Container objectives on Kubernetes: one pod per trial, in the worker's namespace, with the files and
environment of :mod:`.contract` (``/hyperfleet/params.json`` in, ``/hyperfleet/loss.json`` and
``/hyperfleet/out/`` out, the container's log kept as ``container.log``), as on Docker hosts.

A trial pod has two emptyDirs, ``/hyperfleet`` and ``/hyperfleet/out`` (any user may write them),
``/hyperfleet/params.json`` from the pod's annotation ``hyperfleet.io/params`` (a downward API
volume), and two containers that run in turn:

1. init container ``trial`` (the experiment's image): the objective;
2. container ``collect`` (the runtime image): prints loss.json and a tar of out/ to its log, and exits.

The worker watches the pod, then reads two logs through the API: the ``trial`` container's (the
trial's log) and ``collect``'s (its files). Why this way: the files travel through the pod log API,
so a trial pod needs no credentials for the database and no Kubernetes API access of its own, the
worker needs no ``pods/exec`` and no shell in the user's image, and the ordering comes from the
kubelet (an init container that fails stops the pod) instead of a sidecar that would have to find
out when the objective is done. The price: out/ is collected only when the objective exits 0, and
the pod log caps its size (``OUT_LIMIT_BYTES``).

Each trial pod is owned by the worker's pod (ownerReferences: deleting a worker garbage-collects its
trial pods) and labelled with its owner, so a worker that hands a trial back removes it
(:func:`remove_owned_pods`). Trial pods never write to the database: only the worker does, and only
while it still owns the trial.

While the objective runs, the worker follows the ``trial`` container's log through the API (the
``pods/log`` it already may read) and reports each progress line (``contract.PROGRESS_MARK``); when
the trial's rule prunes it, the pod is deleted at once (grace period 0) and ``TrialPruned`` goes up to
the worker. The pod's ``/hyperfleet`` is an emptyDir the worker can't read without ``pods/exec``:
that is why progress travels in the log, on Docker hosts too.

The worker learns where it runs from the environment the chart gives it (the ``*_ENV`` names below).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import sys
import tarfile
import time
import uuid
from typing import Any

from ..contract import (
    K8S_COMPONENT_LABEL,
    K8S_EXP_KEY_LABEL,
    K8S_OWNER_LABEL,
    K8S_PARAMS_ANNOTATION,
    K8S_TID_LABEL,
    K8S_WORKER_POD_LABEL,
    POD_NAME_ENV,
    POD_NAMESPACE_ENV,
    POD_UID_ENV,
    ROLE_TRIAL,
    RUNTIME_IMAGE_ENV,
)
from ..pruning import TrialPruned, report
from .abandoned import creating
from .contract import (
    LOSS_FILE,
    LOSS_PATH,
    MOUNT,
    OUT_DIR,
    OUT_PATH,
    PARAMS_FILE,
    PARAMS_PATH,
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

#: what the worker does with the Kubernetes API, and so all its ServiceAccount may do (the chart's
#: worker Role is tested against this, and this against the calls the code makes)
PERMISSIONS = {"pods": ("create", "delete", "get", "list"), "pods/log": ("get",)}
OUT_LIMIT_BYTES = 4 * 1024 * 1024
_PULL_POLICY = {"missing": "IfNotPresent", "always": "Always", "never": "Never"}
_IMAGE_ERRORS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")
_COLLECT_MARK = "hyperfleet-files:"
#: the second container of a trial pod runs this module (``main``)
COLLECT_COMMAND = ["python3", "-m", "hyperfleet.objectives.kubernetes", "collect"]
_POLL_SECONDS = 0.25


def on_kubernetes() -> bool:
    """True when the worker runs in a pod the chart configured for trial pods."""
    return bool(os.environ.get(POD_NAME_ENV) and os.environ.get(POD_UID_ENV) and os.environ.get(RUNTIME_IMAGE_ENV))


def core_api():
    from kubernetes import client, config

    config.load_incluster_config()
    return client.CoreV1Api()


def owner_label(owner: str) -> str:
    """A label value (63 characters of [A-Za-z0-9_.-]) that names a worker's owner string."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "_", owner)
    if len(value) > 63:
        import hashlib

        value = value[:46] + "_" + hashlib.sha256(owner.encode()).hexdigest()[:16]
    return value.strip("_.-") or "none"


def pod_manifest(objective, params: Any, exp_key: str | None, tid: Any, owner: str) -> dict:
    """The trial pod of one trial of a container objective."""
    name = f"hyperfleet-trial-{slug(exp_key or 'default').lower().replace('_', '-').replace('.', '-')[:30]}-{tid}-" \
           f"{uuid.uuid4().hex[:6]}"
    name = re.sub(r"-+", "-", name).strip("-")
    helper = os.environ[RUNTIME_IMAGE_ENV]
    options = objective.kubernetes  # resources, node_selector, tolerations (parsed once)
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    # /hyperfleet and /hyperfleet/out: emptyDirs (any user may write them); params.json: the pod's
    # annotation, as a file of a downward API volume
    mounts = [{"name": "hyperfleet", "mountPath": MOUNT}, {"name": "out", "mountPath": OUT_PATH}]
    trial = {
        "name": "trial", "image": objective.image, "imagePullPolicy": _PULL_POLICY[objective.pull],
        "env": [{"name": k, "value": v} for k, v in sorted(trial_environment(objective, exp_key, tid).items())],
        "volumeMounts": [*mounts, {"name": "params", "mountPath": PARAMS_PATH, "subPath": PARAMS_FILE,
                                   "readOnly": True}],
        "securityContext": restricted,
        "resources": dict(options.get("resources") or {}),
    }
    if objective.command:
        trial["args"] = list(objective.command)  # like Docker's command: the image's entrypoint stays
    spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
        "volumes": [
            {"name": "hyperfleet", "emptyDir": {}}, {"name": "out", "emptyDir": {}},
            {"name": "params", "downwardAPI": {"items": [
                {"path": PARAMS_FILE, "fieldRef": {"fieldPath": f"metadata.annotations['{K8S_PARAMS_ANNOTATION}']"}}]}},
        ],
        "initContainers": [trial],
        "containers": [
            {"name": "collect", "image": helper, "imagePullPolicy": "IfNotPresent",
             "command": COLLECT_COMMAND,
             "volumeMounts": [{**m, "readOnly": True} for m in mounts],
             "securityContext": {**restricted, "runAsNonRoot": True, "readOnlyRootFilesystem": True}},
        ],
    }
    if options.get("node_selector"):
        spec["nodeSelector"] = dict(options["node_selector"])
    if options.get("tolerations"):
        spec["tolerations"] = list(options["tolerations"])
    worker_pod = os.environ[POD_NAME_ENV]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/part-of": "hyperfleet", K8S_COMPONENT_LABEL: ROLE_TRIAL,
                       K8S_WORKER_POD_LABEL: worker_pod[:63], K8S_OWNER_LABEL: owner_label(owner),
                       K8S_TID_LABEL: str(tid)},
            "annotations": {K8S_EXP_KEY_LABEL: exp_key or "", K8S_PARAMS_ANNOTATION: params_json(params).decode()},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": worker_pod,
                                 "uid": os.environ[POD_UID_ENV]}],
        },
        "spec": spec,
    }


def run_trial_pod(objective, params: Any, exp_key: str | None, tid: Any, attachments: Any, owner: str,
                  api=None) -> dict:
    """Run one trial's pod to its end and return hyperopt's result dict (or raise ContainerTrialError)."""
    from kubernetes.client.rest import ApiException

    api = api or core_api()
    namespace = os.environ[POD_NAMESPACE_ENV]
    manifest = pod_manifest(objective, params, exp_key, tid, owner)
    name = manifest["metadata"]["name"]
    try:
        with creating(name):
            api.create_namespaced_pod(namespace, manifest)
    except ApiException as err:
        raise ContainerTrialError(f"the Kubernetes API refused trial pod {name}: {_reason(err)}") from None
    try:
        followed: list[ProgressFollower] = []
        try:
            phase, trial_state, timed_out = _wait(api, namespace, name, objective.timeout_seconds, followed)
        except TrialPruned:
            _delete(api, namespace, name)  # at once; its log as followed so far is kept
            attachments["container.log"] = followed[0].log if followed else b""
            raise
        logs = _log(api, namespace, name, "trial")
        attachments["container.log"] = logs
        log_tail = tail(logs)
        if timed_out:
            raise ContainerTrialError(f"trial pod {name} ran longer than the trial timeout of "
                                      f"{objective.timeout_seconds:g}s and was deleted; last lines of its log:\n{log_tail}")
        if isinstance(trial_state, str):  # the image never came
            raise ContainerTrialError(f"trial pod {name}: the image {objective.image} could not be pulled: {trial_state}")
        code = (trial_state or {}).get("exit_code")
        if code != 0:
            raise ContainerTrialError(f"trial pod {name} exited with code {code}; last lines of its log:\n{log_tail}")
        if phase != "Succeeded":
            raise ContainerTrialError(f"trial pod {name} ended {phase} after its objective succeeded; "
                                      f"the collect step's log:\n{tail(_log(api, namespace, name, 'collect'))}")
        files = _collected(_log(api, namespace, name, "collect"), name)
        if files.get("out") and has_files(files["out"]):
            attachments["out.tar"] = files["out"]
        if files.get("loss") is None:
            raise ContainerTrialError(f"trial pod {name} exited without writing {LOSS_PATH}; "
                                      f"last lines of its log:\n{log_tail}")
        return parse_loss(files["loss"], name, log_tail)
    except ApiException as err:
        raise ContainerTrialError(f"the Kubernetes API failed on trial pod {name}: {_reason(err)}") from None
    finally:
        _delete(api, namespace, name)


def remove_owned_pods(owner: str, api=None) -> int:
    """Delete every trial pod labelled with this worker's owner (after a trial was handed back or lost)."""
    try:
        api = api or core_api()
        namespace = os.environ[POD_NAMESPACE_ENV]
        pods = api.list_namespaced_pod(namespace, label_selector=f"{K8S_OWNER_LABEL}={owner_label(owner)}").items
    except Exception as err:  # noqa: BLE001 - the pods go with their worker's pod anyway (ownerReferences)
        log.warning("could not list the trial pods of %s: %s", owner, err)
        return 0
    for pod in pods:
        _delete(api, namespace, pod.metadata.name)
    return len(pods)


def _follow_trial_log(api, namespace: str, name: str):
    """The ``trial`` container's log as it is written, in chunks, until the container ends."""
    response = api.read_namespaced_pod_log(name, namespace, container="trial", follow=True, _preload_content=False)
    try:
        yield from response.stream(4096, decode_content=False)
    finally:
        response.release_conn()


def _wait(api, namespace: str, name: str, timeout_seconds: float | None, followed: list | None = None):
    """(phase, the trial container's end, timed out): its end is {exit_code, reason}, or the kubelet's
    message when its image can't be pulled. Reports the progress lines the trial container logs
    meanwhile (its log's follower is appended to ``followed``): a report that prunes the trial raises
    TrialPruned."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    progress = None
    followed = [] if followed is None else followed
    while True:
        for step, loss in progress.drain() if progress else ():
            report(step, loss)
        pod = api.read_namespaced_pod(name, namespace)
        phase = pod.status.phase
        statuses = {s.name: s for s in (pod.status.init_container_statuses or [])}
        trial = statuses.get("trial")
        if progress is None and trial and trial.state and trial.state.running:
            progress = ProgressFollower(lambda: _follow_trial_log(api, namespace, name), name)
            progress.start()
            followed.append(progress)
        waiting = trial and trial.state and trial.state.waiting
        if waiting and waiting.reason in _IMAGE_ERRORS:
            return phase, f"{waiting.reason}: {waiting.message or ''}".strip(), False
        terminated = trial and trial.state and trial.state.terminated
        collect = next((s for s in pod.status.container_statuses or [] if s.name == "collect"), None)
        collected = collect and collect.state and collect.state.terminated
        if collected and terminated:  # done: the phase follows a status sync (about a second) later
            phase = "Succeeded" if collected.exit_code == 0 else "Failed"
        if phase in ("Succeeded", "Failed"):
            if terminated:
                return phase, {"exit_code": terminated.exit_code, "reason": terminated.reason}, False
            raise ContainerTrialError(f"trial pod {name} failed before its objective ran: "
                                      f"{pod.status.message or pod.status.reason or phase}")
        if deadline is not None and time.monotonic() >= deadline:
            return phase, None, True
        time.sleep(_POLL_SECONDS)


def _log(api, namespace: str, name: str, container: str) -> bytes:
    from kubernetes.client.rest import ApiException

    try:
        response = api.read_namespaced_pod_log(name, namespace, container=container, _preload_content=False)
        return response.data or b""
    except ApiException as err:
        if err.status in (400, 404):  # the container never started
            return b""
        raise


def _collected(collect_log: bytes, name: str) -> dict:
    for line in collect_log.decode("utf-8", "replace").splitlines():
        if line.startswith(_COLLECT_MARK):
            files = json.loads(line[len(_COLLECT_MARK):])
            if files.get("error"):
                raise ContainerTrialError(f"trial pod {name}: {files['error']}")
            return {k: None if v is None else base64.b64decode(v) for k, v in files.items()}
    raise ContainerTrialError(f"trial pod {name}: the collect step printed no files; its log:\n{tail(collect_log)}")


def _delete(api, namespace: str, name: str) -> None:
    from kubernetes.client.rest import ApiException

    try:
        api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    except ApiException as err:
        if err.status != 404:
            log.warning("could not delete trial pod %s: %s", name, _reason(err))


def _reason(err) -> str:
    try:
        return json.loads(err.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{err.status} {err.reason}"


# -- the step that runs inside a trial pod, after the objective (COLLECT_COMMAND) --

def collect(directory: str) -> str:
    """One line: the mark, then JSON {loss, out} of base64 (null when absent), or {error}."""
    files: dict[str, Any] = {"loss": None, "out": None}
    loss = os.path.join(directory, LOSS_FILE)
    if os.path.isfile(loss):
        with open(loss, "rb") as f:
            files["loss"] = base64.b64encode(f.read()).decode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(os.path.join(directory, OUT_DIR), arcname=OUT_DIR)
    if buffer.tell() > OUT_LIMIT_BYTES:
        files = {"error": f"{OUT_PATH} holds {buffer.tell()} bytes; trial pods collect at most {OUT_LIMIT_BYTES}"}
    else:
        files["out"] = base64.b64encode(buffer.getvalue()).decode()
    return _COLLECT_MARK + json.dumps(files)


def main(argv: list[str]) -> int:
    if argv == ["collect"]:
        print(collect(MOUNT), flush=True)
    else:
        print(f"usage: {' '.join(COLLECT_COMMAND)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
