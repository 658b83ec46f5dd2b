"""Declarative experiments: one schema for `hyperfleet run SPEC` files and the Pulumi stack config.

    name: branin
    objective: examples.objectives.branin      # module:function or module.function, importable by workers
    # or a container per trial:  objective: {image: my/trainer:1, command: [python, train.py], env: {...},
    #                                         timeout_seconds: 600, pull: missing}
    algo: tpe                                  # tpe, rand, anneal, atpe, grid
    max_evals: 60
    space:
      x: {uniform: [-5, 10]}
      lr: {loguniform: [1.0e-5, 1.0e-1]}       # bounds in value space (hyperopt's own takes logs)
      layers: {choice: [1, 2, 3]}
      model:
        choice:
          - {kind: svm, C: {loguniform: [0.01, 100]}}
          - {kind: forest, trees: {randint: [10, 200]}}
    early_stop: {no_improvement: 20, loss_threshold: 0.05}
    pruning: {rule: median, warmup_steps: 5, min_trials: 5}   # or {rule: asha, min_step: 1, reduction_factor: 3}
    timeout_seconds: 3600
    notify:                                    # webhooks: finished, failed, stalled (no trial done in N minutes)
      webhooks: [{url: "https://hooks.slack.com/services/…", format: slack}]
      stalled_after_minutes: 30

Every rule is checked before anything is written to MongoDB; a message names the path and the rule,
e.g. ``space.lr.loguniform: needs [low, high] with 0 < low < high``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .contract import EXTENDED_RESOURCE_PATTERN, K8S_GPU_RESOURCE

#: the search algorithms a spec may name; the driver maps each to hyperopt's (grid is ours)
Algo = Literal["tpe", "rand", "anneal", "atpe", "grid"]
ALGOS = get_args(Algo)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # no "." (FerretDB and hyperopt's misc keys)


class SpecError(ValueError):
    """An invalid experiment spec; ``problems`` holds one ``path: rule`` line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid experiment spec:\n  " + "\n  ".join(problems))


# -- the search space --------------------------------------------------------------------------

def _numbers(path: str, args: Any, count: int, shape: str) -> list[float]:
    if not isinstance(args, list) or len(args) != count or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in args):
        raise SpecError([f"{path}: needs {shape}"])
    return [float(a) for a in args]


def _bounded(path: str, args: Any, shape: str, positive: bool = False, q: bool = False) -> list[float]:
    values = _numbers(path, args, 3 if q else 2, shape)
    low, high = values[0], values[1]
    if not low < high or (positive and low <= 0) or (q and values[2] <= 0):
        raise SpecError([f"{path}: needs {shape}"])
    return values


def _gaussian(path: str, args: Any, shape: str, q: bool = False) -> list[float]:
    values = _numbers(path, args, 3 if q else 2, shape)
    if values[1] <= 0 or (q and values[2] <= 0):
        raise SpecError([f"{path}: needs {shape}"])
    return values


DISTRIBUTIONS: dict[str, str] = {
    "uniform": "[low, high] with low < high",
    "quniform": "[low, high, q] with low < high and q > 0",
    "loguniform": "[low, high] with 0 < low < high",
    "qloguniform": "[low, high, q] with 0 < low < high and q > 0",
    "normal": "[mu, sigma] with sigma > 0",
    "qnormal": "[mu, sigma, q] with sigma > 0 and q > 0",
    "lognormal": "[mu, sigma] with sigma > 0",
    "qlognormal": "[mu, sigma, q] with sigma > 0 and q > 0",
    "randint": "[low, high] integers with low < high (high excluded)",
    "choice": "a non-empty list of options",
}


def check_space(space: Any, path: str = "space") -> list[str]:
    """Every problem of a declarative space, as ``path: rule`` lines."""
    if not isinstance(space, Mapping) or not space:
        return [f"{path}: needs a mapping of parameter names to distributions"]
    problems: list[str] = []
    seen: set[str] = set()
    _check_params(space, path, problems, seen)
    return problems


def _check_params(params: Mapping, path: str, problems: list[str], seen: set[str]) -> None:
    for name, value in params.items():
        here = f"{path}.{name}"
        if isinstance(name, bool) or name in ("true", "false", "True", "False"):
            problems.append(f"{here}: a parameter named {name} is what YAML 1.1 readers (Helm, or PyYAML for yes, no, on "
                            "and off) make of an unquoted y, n, yes, no, on or off, so quote the name (\"y\": ...)")
            continue
        if not isinstance(name, str) or not _LABEL.match(name):
            problems.append(f"{here}: a parameter name is letters, digits and _ (no dots), starting with a letter")
            continue
        if not _is_distribution(value):
            continue  # a constant inside an option, e.g. kind: svm
        if name in seen:
            problems.append(f"{here}: the name {name} is used twice; labels must be unique across the space")
        seen.add(name)
        _check_distribution(value, here, problems, seen)


def _is_distribution(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS


def _check_distribution(value: Any, path: str, problems: list[str], seen: set[str]) -> None:
    kind, args = next(iter(value.items()))
    here = f"{path}.{kind}"
    try:
        if kind in ("uniform",):
            _bounded(here, args, DISTRIBUTIONS[kind])
        elif kind == "quniform":
            _bounded(here, args, DISTRIBUTIONS[kind], q=True)
        elif kind == "loguniform":
            _bounded(here, args, DISTRIBUTIONS[kind], positive=True)
        elif kind == "qloguniform":
            _bounded(here, args, DISTRIBUTIONS[kind], positive=True, q=True)
        elif kind in ("normal", "lognormal"):
            _gaussian(here, args, DISTRIBUTIONS[kind])
        elif kind in ("qnormal", "qlognormal"):
            _gaussian(here, args, DISTRIBUTIONS[kind], q=True)
        elif kind == "randint":
            values = _bounded(here, args, DISTRIBUTIONS[kind])
            if not all(float(v).is_integer() for v in values):
                raise SpecError([f"{here}: needs {DISTRIBUTIONS[kind]}"])
        elif kind == "choice":
            if not isinstance(args, list) or not args:
                raise SpecError([f"{here}: needs {DISTRIBUTIONS[kind]}"])
            for i, option in enumerate(args):
                if isinstance(option, Mapping) and not _is_distribution(option):
                    _check_params(option, f"{here}[{i}]", problems, seen)
                elif _is_distribution(option):
                    problems.append(f"{here}[{i}]: an option is a value or a mapping of parameters, "
                                    "not a bare distribution")
    except SpecError as err:
        problems.extend(err.problems)


def build_space(space: Mapping) -> Any:
    """The hyperopt search space (pyll graph) of a checked declarative space."""
    from hyperopt import hp

    def node(label: str, value: Any) -> Any:
        kind, args = next(iter(value.items()))
        if kind == "choice":
            return hp.choice(label, [options(o) if isinstance(o, Mapping) else o for o in args])
        if kind in ("loguniform", "qloguniform"):
            return getattr(hp, kind)(label, math.log(args[0]), math.log(args[1]), *args[2:])
        if kind == "randint":
            return hp.randint(label, int(args[0]), int(args[1]))
        return getattr(hp, kind)(label, *args)

    def options(params: Mapping) -> dict:
        return {k: node(k, v) if _is_distribution(v) else v for k, v in params.items()}

    return options(space)


def space_labels(space: Mapping) -> dict[str, tuple[str, list]]:
    """Every parameter of a declarative space, nested options included: label -> (kind, args)."""
    labels: dict[str, tuple[str, list]] = {}

    def walk(params: Mapping) -> None:
        for name, value in params.items():
            if not _is_distribution(value):
                continue
            kind, args = next(iter(value.items()))
            labels[name] = (kind, args)
            if kind == "choice":
                for option in args:
                    if isinstance(option, Mapping):
                        walk(option)

    walk(space)
    return labels


def grid_points(space: Mapping, path: str = "space") -> list[dict[str, Any]]:
    """Every combination of a discrete space, as hyperopt ``vals`` (choice -> option index)."""
    axes: list[tuple[str, list]] = []
    for name, value in space.items():
        if not _is_distribution(value):
            continue
        kind, args = next(iter(value.items()))
        if kind == "choice":
            if any(isinstance(o, Mapping) for o in args):
                raise SpecError([f"{path}.{name}.choice: grid needs flat options (no nested parameters)"])
            axes.append((name, list(range(len(args)))))
        elif kind == "randint":
            axes.append((name, list(range(int(args[0]), int(args[1])))))
        elif kind == "quniform":
            low, high, q = args
            steps = int(math.floor((high - low) / q + 1e-9))
            axes.append((name, [round(low + i * q, 12) for i in range(steps + 1)]))
        else:
            raise SpecError([f"{path}.{name}.{kind}: grid needs discrete parameters (choice, randint, quniform)"])
    names = [n for n, _ in axes]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(values for _, values in axes))]


# -- the experiment ------------------------------------------------------------------------------

def check_env_names(env: dict[str, str]) -> dict[str, str]:
    """A pydantic validator body: every key of ``env`` is a valid environment variable name."""
    bad = [k for k in env if not _ENV_NAME.match(k)]
    if bad:
        raise ValueError(f"not a variable name: {', '.join(bad)}")
    return env


class PodResources(BaseModel):
    """A trial pod's requests and limits, as Kubernetes writes them (extended resources included), and
    the short forms ``gpu: N`` (nvidia.com/gpu) and ``extended: {amd.com/gpu: N}``, which go into its limits."""

    model_config = ConfigDict(extra="forbid")
    requests: dict[str, str | int | float] = Field(default_factory=dict)
    limits: dict[str, str | int | float] = Field(default_factory=dict)
    #: GPUs of each trial pod (nvidia.com/gpu): the scheduler places it on a node with that many free
    gpu: int | None = Field(default=None, ge=0)
    #: other extended resources of each trial pod by name, e.g. {amd.com/gpu: 1}
    extended: dict[str, int] = Field(default_factory=dict)

    @field_validator("extended")
    @classmethod
    def _extended(cls, value):
        bad = [k for k in value if not re.match(EXTENDED_RESOURCE_PATTERN, k)]
        if bad:
            raise ValueError(f"extended resources are named domain/name (e.g. amd.com/gpu), not {', '.join(bad)}")
        if any(v < 0 for v in value.values()):
            raise ValueError("a count of 0 or more")
        return value

    @model_validator(mode="after")
    def _once(self):
        short = {**({K8S_GPU_RESOURCE: self.gpu} if self.gpu is not None else {}), **self.extended}
        twice = sorted(short.keys() & self.limits.keys())
        if twice:
            raise ValueError(f"{', '.join(twice)} is in limits and in gpu/extended: write it once")
        for name, value in self.requests.items():  # Kubernetes does not overcommit extended resources
            if "/" in name and not name.startswith(("kubernetes.io/", "hugepages-")) \
                    and {**self.limits, **short}.get(name) != value:
                raise ValueError(f"requests.{name}: an extended resource's request must equal its limit (or leave the "
                                 "request out)")
        return self

    def kubernetes(self) -> dict:
        """{requests, limits} as a pod's container takes them, gpu and extended in the limits; every quantity a
        string, as the Kubernetes client's models want (``1`` is refused: not a valid string)."""
        limits = {**self.limits, **({K8S_GPU_RESOURCE: self.gpu} if self.gpu else {}), **self.extended}
        return {k: {name: str(q) for name, q in v.items()} for k, v in (("requests", self.requests), ("limits", limits))
                if v}


class Toleration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None


#: the keys of a container objective that only trial pods (Kubernetes) honour
POD_ONLY_KEYS = ("resources", "node_selector", "tolerations")


class ContainerObjective(BaseModel):
    """Each trial in its own container: /hyperfleet/params.json in, /hyperfleet/loss.json out."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(min_length=1)
    #: the container's command (default: the image's own)
    command: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    #: a trial's container running longer than this is killed and the trial is ERROR
    timeout_seconds: float | None = Field(default=None, gt=0)
    #: when the worker pulls the image: missing (default), always or never
    pull: Literal["missing", "always", "never"] = "missing"
    #: Kubernetes only: the trial pod's resources (e.g. gpu: 1, or limits: {nvidia.com/gpu: 1}), nodeSelector
    #: and tolerations
    resources: PodResources | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)

    @field_validator("env")
    @classmethod
    def _env(cls, value):
        return check_env_names(value)


class EarlyStop(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: stop after this many finished trials without a better loss
    no_improvement: int | None = Field(default=None, ge=1)
    #: stop once a loss at or below this is found
    loss_threshold: float | None = None


#: what a webhook can be told about (hyperfleet.notify)
NotifyEvent = Literal["finished", "failed", "stalled"]


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://")
    #: slack: {"text": ...} (Slack, Mattermost, Discord's /slack, Teams' Slack-compatible hooks); json: the event as JSON
    format: Literal["slack", "json"] = "slack"
    events: list[NotifyEvent] = Field(default_factory=lambda: list(get_args(NotifyEvent)), min_length=1)


class Notify(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhooks: list[Webhook] = Field(min_length=1)
    #: "stalled": no trial finished for this long while trials are queued or running
    stalled_after_minutes: float = Field(default=30, gt=0)


class ExperimentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    exp_key: str | None = None
    objective: str | ContainerObjective
    algo: Algo = "tpe"
    max_evals: int | None = Field(default=None, ge=1)
    space: dict[str, Any]
    early_stop: EarlyStop | None = None
    #: the whole experiment stops queuing trials after this long
    timeout_seconds: float | None = Field(default=None, gt=0)
    #: times a trial whose objective failed (ERROR) is run again before it stays ERROR
    retries: int = Field(default=0, ge=0)
    #: trials queued ahead of the workers (hyperopt's max_queue_len)
    parallelism: int = Field(default=4, ge=1)
    seed: int | None = None
    #: webhooks told when the experiment finished, failed or stalled
    notify: Notify | None = None
    #: stop unpromising trials early (hyperfleet.pruning): {rule: median, ...} or {rule: asha, ...}
    pruning: dict[str, Any] | None = None

    @field_validator("name", "exp_key")
    @classmethod
    def _name(cls, value):
        if value is not None and not _NAME.match(value):
            raise ValueError("letters, digits, '.', '_' and '-', starting with a letter or digit")
        return value

    @field_validator("objective")
    @classmethod
    def _objective(cls, value):
        if isinstance(value, str) and not re.match(r"^[A-Za-z_][\w.]*[.:][A-Za-z_]\w*$", value):
            raise ValueError("needs module:function (or module.function), or {image: ...}")
        return value

    @field_validator("space", mode="before")  # before pydantic turns boolean keys into a type error
    @classmethod
    def _space(cls, value):
        problems = check_space(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("pruning", mode="before")
    @classmethod
    def _pruning(cls, value):
        from .pruning import parse_rule

        return parse_rule(value)  # a PruningError is a ValueError naming pruning.<key>

    @model_validator(mode="after")
    def _algo_needs(self):
        if self.algo == "grid":
            try:
                grid_points(self.space)
            except SpecError as err:
                raise ValueError("; ".join(err.problems)) from None
        elif self.max_evals is None:
            raise ValueError("max_evals: needed unless algo is grid")
        return self

    @property
    def key(self) -> str:
        return self.exp_key or self.name

    def objective_path(self) -> tuple[str, str]:
        module, _, function = self.objective.replace(":", ".").rpartition(".")
        return module, function


def parse_spec(data: Any) -> ExperimentSpec:
    """Validate a spec (already loaded from YAML/JSON); SpecError lists every problem by path."""
    if not isinstance(data, Mapping):
        raise SpecError(["(top): needs a mapping"])
    try:
        return ExperimentSpec.model_validate(data)
    except SpecError:
        raise
    except ValidationError as err:
        raise SpecError([p for e in err.errors() for p in _problems(e)]) from None


def _problems(error: Mapping) -> list[str]:
    loc = ".".join(str(p) for p in error["loc"] if p not in ("str", "ContainerObjective"))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    if error["type"] == "missing":
        message = "required"
    if re.match(r"^(space|max_evals|pruning)\b[^:]*: ", message):  # our own rules name their full path
        return message.split("; ")
    return [f"{loc or '(top)'}: {message}"]
