"""Experiment specs at their edges: each bound of the schema accepts the value on it and refuses the one
beyond it, and the helpers the report and the driver use give what they promise (tests/unit/test_spec.py
has the invalid specs one by one)."""

import pytest

from hyperfleet.spec import Notify, SpecError, parse_spec, space_labels
from tests.helpers import REPO

VALID = {"name": "exp-1", "objective": "examples.objectives:branin", "max_evals": 10,
         "space": {"x": {"uniform": [-5, 10]}}}


def problems(**changes) -> list[str]:
    try:
        parse_spec({**VALID, **changes})
    except SpecError as err:
        return err.problems
    return []


@pytest.mark.parametrize("kind,args", [("quniform", [0, 1, 0]), ("qloguniform", [1, 2, 0]), ("qnormal", [0, 1, 0]),
                                       ("qlognormal", [0, 1, 0]), ("normal", [0, 0]), ("lognormal", [0, 0]),
                                       ("uniform", [1, 1]), ("loguniform", [1, 1]), ("randint", [2, 2])])
def test_a_zero_step_or_width_is_refused(kind, args):
    assert [p.split(":")[0] for p in problems(space={"x": {kind: args}})] == [f"space.x.{kind}"]


@pytest.mark.parametrize("kind,args", [("quniform", [0, 1, 0.001]), ("qloguniform", [0.001, 2, 0.001]),
                                       ("qnormal", [0, 0.001, 0.001]), ("qlognormal", [0, 0.001, 0.001]),
                                       ("normal", [-3, 0.001]), ("uniform", [1, 1.001]), ("randint", [2, 3])])
def test_the_smallest_positive_step_or_width_is_accepted(kind, args):
    assert problems(space={"x": {kind: args}}) == []


@pytest.mark.parametrize("field,edge,beyond", [("parallelism", 1, 0), ("max_evals", 1, 0), ("retries", 0, -1)])
def test_counts_accept_their_least_value(field, edge, beyond):
    assert problems(**{field: edge}) == []
    assert [p.split(":")[0] for p in problems(**{field: beyond})] == [field]


def test_early_stop_and_notify_at_their_edges():
    assert problems(early_stop={"no_improvement": 1}) == []
    assert problems(notify={"webhooks": [{"url": "https://hooks.example/x"}], "stalled_after_minutes": 0.5}) == []
    assert [p.split(":")[0] for p in problems(notify={"webhooks": []})] == ["notify.webhooks"]
    assert [p.split(":")[0] for p in problems(notify={"webhooks": [{"url": "https://h/x"}],
                                                      "stalled_after_minutes": 0})] == ["notify.stalled_after_minutes"]


def test_the_documented_stall_default_is_the_schemas():
    stated = "stalled_after_minutes (30)"
    assert stated in (REPO / "docs/stack-config.md").read_text()
    assert Notify.model_fields["stalled_after_minutes"].default == 30


def test_space_labels_lists_every_parameter_nested_options_included():
    space = {"lr": {"loguniform": [1e-4, 1e-1]}, "kind": "const",
             "model": {"choice": [{"kind": "svm", "C": {"loguniform": [0.01, 100]}},
                                  {"kind": "forest", "trees": {"randint": [10, 200]},
                                   "depth": {"choice": [2, {"leaf": {"uniform": [0, 1]}}]}},
                                  "none"]}}
    labels = space_labels(space)
    assert labels == {"lr": ("loguniform", [1e-4, 1e-1]), "model": ("choice", space["model"]["choice"]),
                      "C": ("loguniform", [0.01, 100]), "trees": ("randint", [10, 200]),
                      "depth": ("choice", [2, {"leaf": {"uniform": [0, 1]}}]), "leaf": ("uniform", [0, 1])}
    assert list(labels) == ["lr", "model", "C", "trees", "depth", "leaf"]


@pytest.mark.parametrize("args", [[False, 1], [0, True], ["0", 1], [0, float("inf")], [float("nan"), 1], [0, None]])
def test_bounds_are_finite_numbers_not_booleans_or_strings(args):
    assert [p.split(":")[0] for p in problems(space={"x": {"uniform": args}})] == ["space.x.uniform"]


def test_a_grid_steps_from_low_to_high():
    from hyperfleet.spec import grid_points

    assert [p["w"] for p in grid_points({"w": {"quniform": [1, 2, 0.25]}})] == [1.0, 1.25, 1.5, 1.75, 2.0]
    assert [p["w"] for p in grid_points({"w": {"quniform": [-3, -1, 1]}})] == [-3.0, -2.0, -1.0]


def test_a_one_letter_image_name_is_an_image():
    assert problems(objective={"image": "x"}) == []


@pytest.mark.parametrize("key", ["parallelism", "retries"])
def test_the_readme_example_states_the_schemas_defaults(key):
    import re

    from hyperfleet.spec import ExperimentSpec

    (stated,) = re.findall(rf"^{key}: \d+ +#.*\(default (\d+)\)$", (REPO / "runtime/README.md").read_text(), re.MULTILINE)
    assert ExperimentSpec.model_fields[key].default == int(stated)
    assert getattr(parse_spec(VALID), key) == int(stated)


def test_a_webhook_is_told_of_at_least_one_event_and_of_all_by_default():
    assert [p.split(":")[0] for p in problems(notify={"webhooks": [{"url": "https://h/x", "events": []}]})] == \
        ["notify.webhooks.0.events"]
    spec = parse_spec({**VALID, "notify": {"webhooks": [{"url": "https://h/x"}]}})
    assert spec.notify.webhooks[0].events == ["finished", "failed", "stalled"]


def test_a_log_scale_with_a_step_needs_a_positive_low_too():
    assert [p.split(":")[0] for p in problems(space={"x": {"qloguniform": [0, 2, 1]}})] == ["space.x.qloguniform"]


def test_a_misnamed_parameter_does_not_hide_the_next_ones_problems():
    found = problems(space={True: {"uniform": [0, 1]}, "a.b": {"uniform": [0, 1]}, "x": {"uniform": [1, 0]}})
    # one line per problem: the YAML 1.1 message was cut in two at its "; " (parse_spec splits there)
    assert [p.split(":")[0] for p in found] == ["space.True", "space.a.b", "space.x.uniform"], found
    assert found[0].endswith('quote the name ("y": ...)')


def test_a_grid_passes_over_constants_wherever_they_stand():
    from hyperfleet.spec import grid_points

    points = grid_points({"kind": "svm", "n": {"randint": [1, 3]}, "note": "x", "opt": {"choice": ["a", "b"]}})
    assert points == [{"n": 1, "opt": 0}, {"n": 1, "opt": 1}, {"n": 2, "opt": 0}, {"n": 2, "opt": 1}]


def test_a_webhook_may_ask_for_one_event_only():
    spec = parse_spec({**VALID, "notify": {"webhooks": [{"url": "https://h/x", "events": ["failed"]}]}})
    assert spec.notify.webhooks[0].events == ["failed"]


def test_grid_values_keep_12_decimals():
    from hyperfleet.spec import grid_points

    values = [p["w"] for p in grid_points({"w": {"quniform": [0, 4e-12, 1e-12]}})]
    assert values == [0.0, 1e-12, 2e-12, 3e-12, 4e-12]
