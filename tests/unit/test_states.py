"""The trial states are hyperopt's: the contract writes them down (TrialState) so the worker starts
without importing hyperopt, and this test checks the copy."""

import ast
import re
from pathlib import Path

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



def test_the_stores_docstring_names_every_state_and_every_field_it_writes():
    doc = " ".join(store.__doc__.split())
    for state in TrialState:
        assert state.name in doc, state.name
    tree = ast.parse(Path(store.__file__).read_text())
    # "hyperfleet.<field>" in updates, and the keys of the sub-document a new trial gets (extra = {...})
    written = {n.value.split(".", 1)[1] for n in ast.walk(tree)
               if isinstance(n, ast.Constant) and isinstance(n.value, str) and re.fullmatch(r"hyperfleet\.[a-z_]+", n.value)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["extra"]:
            written |= {k.value for k in node.value.keys}
    assert {"attempts", "retries", "queued_at", "worker"} <= written
    missing = {field for field in written if f"``{field}``" not in doc}
    assert not missing, f"store.py's docstring misses the hyperfleet fields {sorted(missing)}"
