"""The trial states are hyperopt's: the contract writes them down (TrialState) so the worker starts
without importing hyperopt, and this test checks the copy."""

from hyperopt import base

from hyperfleet import store
from hyperfleet.contract import TrialState


def test_the_stores_trial_states_are_hyperopts():
    assert store.JOB_STATES == tuple(base.JOB_STATES)
    assert set(store.JOB_VALID_STATES) == base.JOB_VALID_STATES
    for name in ("NEW", "RUNNING", "DONE", "ERROR", "CANCEL"):
        assert getattr(store, f"JOB_STATE_{name}") == getattr(base, f"JOB_STATE_{name}")
    assert set(store.STATE_NAMES) == set(store.JOB_STATES)
    for state in TrialState:
        assert state == getattr(base, f"JOB_STATE_{state.name}")
    assert [int(s) for s in TrialState] == list(base.JOB_STATES)
    assert store.STATE_NAMES == {0: "new", 1: "running", 2: "done", 3: "error", 4: "cancel"}
