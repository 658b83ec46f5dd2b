"""The trial states are hyperopt's: the store keeps its own copy so the worker starts without hyperopt."""

from hyperopt import base

from hyperfleet import store


def test_the_stores_trial_states_are_hyperopts():
    assert store.JOB_STATES == tuple(base.JOB_STATES)
    assert set(store.JOB_VALID_STATES) == base.JOB_VALID_STATES
    for name in ("NEW", "RUNNING", "DONE", "ERROR", "CANCEL"):
        assert getattr(store, f"JOB_STATE_{name}") == getattr(base, f"JOB_STATE_{name}")
    assert set(store.STATE_NAMES) == set(store.JOB_STATES)
