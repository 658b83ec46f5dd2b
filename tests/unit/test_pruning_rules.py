"""The pruning rules on their own: parsing (defaults, bad values refused naming the key, in the spec
too), the median and ASHA decisions on values the test chooses, and report() outside a worker."""

import pytest
from hyperopt import Trials, fmin, hp, rand

import hyperfleet
from hyperfleet.pruning import (RULES, PruningError, asha_prunes, asha_rungs, check_value, median_prunes, parse_rule)
from hyperfleet.spec import SpecError, parse_spec


def test_rules_are_normalised_with_their_defaults():
    assert parse_rule(None) is None
    assert parse_rule({"rule": "median"}) == {"rule": "median", "warmup_steps": 0, "min_trials": 5}
    assert parse_rule({"rule": "asha", "max_step": 27}) == {"rule": "asha", "min_step": 1, "reduction_factor": 3,
                                                            "max_step": 27}
    assert parse_rule({"rule": "asha"})["max_step"] is None
    assert set(RULES) == {"median", "asha"}


@pytest.mark.parametrize("value,message", [
    ("median", "pruning: needs a mapping"),
    ({}, "pruning.rule: needs one of median, asha"),
    ({"rule": "hyperband"}, "pruning.rule: needs one of median, asha"),
    ({"rule": "median", "min_step": 1}, "pruning.min_step: unknown key for rule median"),
    ({"rule": "median", "warmup_steps": -1}, "pruning.warmup_steps: needs an integer >= 0"),
    ({"rule": "median", "warmup_steps": 1.5}, "pruning.warmup_steps: needs an integer >= 0"),
    ({"rule": "median", "min_trials": 0}, "pruning.min_trials: needs an integer >= 1"),
    ({"rule": "median", "min_trials": True}, "pruning.min_trials: needs an integer >= 1"),
    ({"rule": "asha", "min_step": 0}, "pruning.min_step: needs an integer >= 1"),
    ({"rule": "asha", "reduction_factor": 1}, "pruning.reduction_factor: needs an integer >= 2"),
    ({"rule": "asha", "min_step": 4, "max_step": 4}, "pruning.max_step: needs to be greater than min_step (4)"),
    ({"rule": "asha", "max_step": "27"}, "pruning.max_step: needs an integer >= 1"),
])
def test_bad_rules_are_refused_naming_the_key_in_the_rule_and_in_a_spec(value, message):
    with pytest.raises(PruningError) as caught:
        parse_rule(value)
    assert str(caught.value).startswith(message), caught.value
    spec = {"name": "e", "objective": "m.f", "max_evals": 2, "space": {"x": {"uniform": [0, 1]}}, "pruning": value}
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_a_spec_keeps_the_normalised_rule():
    spec = parse_spec({"name": "e", "objective": "m.f", "max_evals": 2, "space": {"x": {"uniform": [0, 1]}},
                       "pruning": {"rule": "median", "min_trials": 3}})
    assert spec.pruning == {"rule": "median", "warmup_steps": 0, "min_trials": 3}
    assert spec.model_dump(mode="json")["pruning"] == spec.pruning


def test_the_median_rule():
    rule = parse_rule({"rule": "median", "warmup_steps": 2, "min_trials": 3})
    others = [1.0, 2.0, 3.0]
    assert median_prunes(rule, 2, 2.5, others)  # worse than the median 2.0
    assert not median_prunes(rule, 2, 2.0, others)  # equal: continues
    assert not median_prunes(rule, 1, 9.0, others)  # warm-up
    assert not median_prunes(rule, 2, 9.0, others[:2])  # too few others
    assert median_prunes(rule, 5, 1.8, [1.0, 1.5, 2.0, 3.0])  # even count: the mean of the middle two, 1.75
    assert not median_prunes(rule, 5, 1.75, [1.0, 1.5, 2.0, 3.0])


def test_asha_rungs_and_decisions():
    rule = parse_rule({"rule": "asha", "min_step": 1, "reduction_factor": 3, "max_step": 27})
    assert asha_rungs(rule, None, 0) == []
    assert asha_rungs(rule, None, 1) == [1]
    assert asha_rungs(rule, 1, 2) == []
    assert asha_rungs(rule, 2, 3) == [3]
    assert asha_rungs(rule, 0, 10) == [1, 3, 9]  # a report past rungs it skipped stands for each
    assert asha_rungs(rule, 9, 27) == []  # max_step is where trials end: never judged
    assert asha_rungs(parse_rule({"rule": "asha", "min_step": 2, "reduction_factor": 2}), None, 100) == [2, 4, 8, 16, 32, 64]
    # fewer values than the reduction factor: only the best so far continues
    assert not asha_prunes(rule, 1.0, [])
    assert not asha_prunes(rule, 1.0, [2.0])
    assert asha_prunes(rule, 2.0, [1.0])
    # n values: the best floor(n / 3) continue, ties included
    assert not asha_prunes(rule, 2.0, [1.0, 3.0, 4.0, 5.0, 6.0])  # 2nd best of 6: kept 2
    assert asha_prunes(rule, 3.0, [1.0, 2.0, 4.0, 5.0, 6.0])  # 3rd of 6
    assert not asha_prunes(rule, 2.0, [1.0, 2.0, 4.0, 5.0, 6.0])  # tied with the 2nd


def test_report_outside_a_worker_checks_its_arguments_and_does_nothing_else():
    from tests.objectives import learning_curve

    trials = Trials()
    fmin(learning_curve, {"level": hp.uniform("level", 0, 1), "steps": 4, "log": "/dev/null"}, algo=rand.suggest,
         max_evals=3, trials=trials, show_progressbar=False)
    assert [t["result"]["status"] for t in trials.trials] == ["ok"] * 3
    assert hyperfleet.report(3, 0.5) is None
    for step, loss, error in ((-1, 0.5, ValueError), (1.5, 0.5, TypeError), (True, 0.5, TypeError),
                              (1, float("nan"), ValueError), (1, "x", TypeError)):
        with pytest.raises(error, match="report"):
            hyperfleet.report(step, loss)
    assert check_value(__import__("numpy").int64(3), __import__("numpy").float32(0.5)) == (3, 0.5)


def test_fmin_refuses_a_bad_rule_and_a_rule_without_mongo_trials():
    with pytest.raises(PruningError, match=r"^pruning.min_trials: needs an integer >= 1"):
        hyperfleet.fmin(abs, hp.uniform("x", 0, 1), algo=rand.suggest, max_evals=1, pruning={"rule": "median", "min_trials": 0})
    with pytest.raises(ValueError, match="pruning: needs trials=hyperfleet.MongoTrials"):
        hyperfleet.fmin(abs, hp.uniform("x", 0, 1), algo=rand.suggest, max_evals=1, trials=Trials(), pruning={"rule": "asha"})


def test_the_example_spec_and_objective():
    """examples/experiments/branin-pruned.yaml parses with its rule; its objective runs outside a worker."""
    from examples.objectives import branin, branin_epochs
    from hyperfleet.driver import load_spec
    from tests.helpers import REPO

    spec = load_spec(REPO / "examples/experiments/branin-pruned.yaml")
    assert spec.pruning == {"rule": "asha", "min_step": 1, "reduction_factor": 3, "max_step": 27}
    point = {"x": 3.14159, "y": 2.275, "epochs": 3, "epoch_seconds": 0}
    assert branin_epochs(point) == pytest.approx(branin(point) + 20 / 3)
