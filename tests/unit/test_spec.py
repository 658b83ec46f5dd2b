"""Experiment specs: every invalid spec is rejected with a message naming the path and the rule."""

import pytest
from hyperopt import pyll

from hyperfleet.spec import SpecError, build_space, grid_points, parse_spec

VALID = {
    "name": "exp-1",
    "objective": "examples.objectives:branin",
    "algo": "tpe",
    "max_evals": 10,
    "space": {"x": {"uniform": [-5, 10]}, "y": {"uniform": [0, 15]}},
}


def spec(**changes):
    data = {**VALID, **changes}
    return {k: v for k, v in data.items() if v is not ...}


INVALID = [
    (spec(name="bad name"), "name: letters, digits"),
    (spec(name=...), "name: required"),
    (spec(objective="not a path"), "objective: needs module:function"),
    (spec(objective={"image": ""}), "objective.image:"),
    (spec(objective={"image": "x", "cmd": ["a"]}), "objective.cmd: unknown key"),
    (spec(objective={"image": "x", "pull": "sometimes"}), "objective.pull: Input should be 'missing', 'always' or 'never'"),
    (spec(objective={"image": "x", "timeout_seconds": 0}), "objective.timeout_seconds: Input should be greater than 0"),
    (spec(objective={"image": "x", "env": {"BAD-NAME": "1"}}), "objective.env: not a variable name: BAD-NAME"),
    (spec(retries=-1), "retries: Input should be greater than or equal to 0"),
    (spec(algo="bayes"), "algo: Input should be"),
    (spec(max_evals=0), "max_evals: Input should be greater than or equal to 1"),
    (spec(max_evals=...), "max_evals: needed unless algo is grid"),
    (spec(space={}), "space: needs a mapping"),
    (spec(space={"lr": {"loguniform": [0.1, 0.01]}}), "space.lr.loguniform: needs [low, high] with 0 < low < high"),
    (spec(space={"lr": {"loguniform": [0, 1]}}), "space.lr.loguniform: needs [low, high] with 0 < low < high"),
    (spec(space={"x": {"uniform": [1]}}), "space.x.uniform: needs [low, high] with low < high"),
    (spec(space={"x": {"quniform": [0, 10, 0]}}), "space.x.quniform: needs [low, high, q] with low < high and q > 0"),
    (spec(space={"x": {"normal": [0, -1]}}), "space.x.normal: needs [mu, sigma] with sigma > 0"),
    (spec(space={"x": {"qlognormal": [0, 1]}}), "space.x.qlognormal: needs [mu, sigma, q]"),
    (spec(space={"n": {"randint": [1.5, 4]}}), "space.n.randint: needs [low, high] integers"),
    (spec(space={"c": {"choice": []}}), "space.c.choice: needs a non-empty list of options"),
    (spec(space={"a.b": {"uniform": [0, 1]}}), "space.a.b: a parameter name is letters, digits and _ (no dots)"),
    # an unquoted `y:` after Helm's YAML 1.1 parse, and an unquoted `yes:` after PyYAML's
    (spec(space={"x": {"uniform": [0, 1]}, "true": {"uniform": [0, 1]}}),
     "space.true: a parameter named true is what YAML 1.1 readers"),
    (spec(space={True: {"uniform": [0, 1]}}), "space.True: a parameter named True is what YAML 1.1 readers"),
    (spec(space={"m": {"choice": [{"kind": "svm", "C": {"loguniform": [1, 0]}}]}}),
     "space.m.choice[0].C.loguniform: needs [low, high] with 0 < low < high"),
    (spec(space={"m": {"choice": [{"x": {"uniform": [0, 1]}}]}, "x": {"uniform": [0, 1]}}),
     "space.x: the name x is used twice"),
    (spec(algo="grid", space={"x": {"uniform": [0, 1]}}),
     "space.x.uniform: grid needs discrete parameters (choice, randint, quniform)"),
    (spec(objective={"image": "x", "resources": {"gpu": -1}}),
     "objective.resources.gpu: Input should be greater than or equal to 0"),
    (spec(objective={"image": "x", "resources": {"gpus": 1}}), "objective.resources.gpus: unknown key"),
    (spec(objective={"image": "x", "resources": {"extended": {"fpga": 1}}}),
     "objective.resources.extended: extended resources are named domain/name"),
    (spec(objective={"image": "x", "resources": {"extended": {"amd.com/gpu": 1, "example.com/fpga": -1}}}),
     "objective.resources.extended: a count of 0 or more"),
    (spec(objective={"image": "x", "resources": {"gpu": 1, "limits": {"nvidia.com/gpu": 2}}}),
     "objective.resources: nvidia.com/gpu is in limits and in gpu/extended: write it once"),
    (spec(objective={"image": "x", "resources": {"gpu": 1, "requests": {"nvidia.com/gpu": 2}}}),
     "objective.resources: requests.nvidia.com/gpu: an extended resource's request must equal its limit"),
    (spec(early_stop={"no_improvement": 0}), "early_stop.no_improvement: Input should be greater than or equal to 1"),
    (spec(timeout_seconds=-5), "timeout_seconds: Input should be greater than 0"),
    (spec(colour="blue"), "colour: unknown key"),
]


@pytest.mark.parametrize("data,message", INVALID, ids=[m.split(":")[0] for _, m in INVALID])
def test_invalid_specs_are_rejected_naming_the_path(data, message):
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_an_extended_resource_may_be_asked_for_0_times():
    """0 is a count (a trial pod that needs none, a value a template fills in); below 0 is refused (above)."""
    parsed = parse_spec(spec(objective={"image": "x", "resources": {"extended": {"amd.com/gpu": 0}}}))
    assert parsed.objective.resources.extended == {"amd.com/gpu": 0}


def test_all_problems_are_reported_at_once():
    with pytest.raises(SpecError) as caught:
        parse_spec(spec(name="bad name", space={"lr": {"loguniform": [1, 0]}, "n": {"randint": [3, 1]}}))
    paths = [p.split(":")[0] for p in caught.value.problems]
    assert paths == ["name", "space.lr.loguniform", "space.n.randint"]


def test_every_distribution_builds_and_samples_within_its_bounds():
    space = build_space(parse_spec(spec(space={
        "u": {"uniform": [-1, 1]}, "qu": {"quniform": [0, 10, 2]}, "lu": {"loguniform": [1e-4, 1e-1]},
        "qlu": {"qloguniform": [1, 100, 1]}, "n": {"normal": [0, 1]}, "qn": {"qnormal": [0, 5, 1]},
        "ln": {"lognormal": [0, 1]}, "qln": {"qlognormal": [0, 1, 1]}, "ri": {"randint": [3, 7]},
        "m": {"choice": [{"kind": "svm", "C": {"loguniform": [0.01, 100]}}, "none"]},
    })).space)
    for seed in range(30):
        s = pyll.stochastic.sample(space, rng=__import__("numpy").random.default_rng(seed))
        assert -1 <= s["u"] <= 1 and s["qu"] in {0, 2, 4, 6, 8, 10}
        assert 1e-4 <= s["lu"] <= 1e-1  # value-space bounds, not hyperopt's log-space ones
        assert 1 <= s["qlu"] <= 100 and s["ln"] > 0 and 3 <= s["ri"] < 7
        assert s["m"] == "none" or (s["m"]["kind"] == "svm" and 0.01 <= s["m"]["C"] <= 100)


def test_grid_points_enumerate_every_combination():
    points = grid_points({"opt": {"choice": ["sgd", "adam"]}, "depth": {"randint": [1, 4]}, "w": {"quniform": [0, 1, 0.5]}})
    assert len(points) == 2 * 3 * 3
    assert {p["w"] for p in points} == {0.0, 0.5, 1.0}
    assert len({tuple(sorted(p.items())) for p in points}) == 18
