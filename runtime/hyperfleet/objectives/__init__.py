"""Container objectives: each trial runs in its own container, any language, through two files.

- :mod:`.contract`: what a trial container sees (``/hyperfleet/params.json`` in, ``/hyperfleet/loss.json``
  and ``/hyperfleet/out/`` out, its environment) and how its answer is read; both backends use it;
- :mod:`.docker`: a container per trial on a Docker engine;
- :mod:`.kubernetes`: a pod per trial, when the worker runs in a pod the chart configured for it.

The two backends never import each other; this module picks one per trial.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from ..placement import gpu_of, worker_of

# The backends are imported where they are used: a trial pod runs ``python3 -m
# hyperfleet.objectives.kubernetes``, which Python must not find imported already by this package.


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

        from . import docker, kubernetes

        params = pyll.rec_eval(expr, memo=memo)
        trial = ctrl.current_trial or {}
        # the worker that reserved the trial: its trial containers and pods are labelled with it, so it
        # can remove what its (possibly killed) evaluation child started
        owner = (trial.get("owner") or [""])[0]
        if kubernetes.on_kubernetes():
            return kubernetes.run_trial_pod(self, params, trial.get("exp_key"), trial.get("tid"), ctrl.attachments,
                                            owner=owner)
        # a worker pinned to a GPU gives its trial containers the same one
        return docker.run_container_trial(self, params, trial.get("exp_key"), trial.get("tid"), ctrl.attachments,
                                          owner=owner, gpu=gpu_of(worker_of(trial)))


def remove_owned_trials(owner: str) -> int:
    """Remove every trial container (or trial pod, on Kubernetes) of this worker's owner (after its
    trial was handed back, or its child killed)."""
    from . import docker, kubernetes

    if kubernetes.on_kubernetes():
        return kubernetes.remove_owned_pods(owner)
    return docker.remove_owned_containers(owner)


def from_spec(objective: Mapping[str, Any]) -> ContainerObjective:
    """The objective of a spec's ``objective: {image: ..., command: ..., env: ...}``."""
    from ..spec import PodResources

    command = objective.get("command")
    pod = dict(objective)
    if pod.get("resources"):  # gpu and extended into the limits, as the pod takes them
        pod["resources"] = PodResources.model_validate(pod["resources"]).kubernetes()
    return ContainerObjective(
        image=objective["image"],
        command=tuple(command) if command else None,
        env=tuple(sorted((objective.get("env") or {}).items())),
        timeout_seconds=objective.get("timeout_seconds"),
        pull=objective.get("pull", "missing"),
        kubernetes_json=json.dumps({k: pod[k] for k in ("resources", "node_selector", "tolerations")
                                    if pod.get(k)}, sort_keys=True),
    )
