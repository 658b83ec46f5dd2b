"""store.retry_upsert: an upsert that lost a race to create its document is tried again, up to
UPSERT_ATTEMPTS tries in all; any other error is not retried (tests/integration/test_store.py races
real clients; here the count of tries is checked exactly, with the errors the server gives)."""

import pytest
from pymongo.errors import DuplicateKeyError, OperationFailure

from hyperfleet import store
from hyperfleet.store import UPSERT_ATTEMPTS, UPSERT_BACKOFF_SECONDS, retry_upsert, upsert_conflict

# what DocumentDB (FerretDB 2) answers the loser of a race, and what mongod does
LOST_RACE = [DuplicateKeyError("E11000 duplicate key error"),
             OperationFailure("deadlock detected", code=1),
             OperationFailure('conflicting key value violates exclusion constraint "x"', code=1)]


def attempts(errors: list[Exception]):
    """An upsert that fails with ``errors`` in turn, then succeeds; and the list of its tries."""
    tries = []

    def upsert():
        tries.append(len(tries) + 1)
        if len(tries) <= len(errors):
            raise errors[len(tries) - 1]
        return "upserted"
    return upsert, tries


@pytest.mark.parametrize("error", LOST_RACE, ids=["duplicate key", "deadlock", "exclusion"])
def test_a_lost_race_is_tried_again_up_to_the_attempts(error):
    assert upsert_conflict(error)
    upsert, tries = attempts([error] * (UPSERT_ATTEMPTS - 1))
    assert retry_upsert(upsert) == "upserted" and len(tries) == UPSERT_ATTEMPTS
    upsert, tries = attempts([error] * UPSERT_ATTEMPTS)
    with pytest.raises(type(error)):
        retry_upsert(upsert)
    assert len(tries) == UPSERT_ATTEMPTS


@pytest.mark.parametrize("error", [OperationFailure("deadlock detected", code=2), OperationFailure("other", code=1)])
def test_other_errors_are_raised_at_once(error):
    assert not upsert_conflict(error)
    upsert, tries = attempts([error])
    with pytest.raises(OperationFailure):
        retry_upsert(upsert)
    assert tries == [1]


def test_each_try_again_waits_a_random_time_up_to_a_bound_that_grows(monkeypatch):
    """Before try k + 1 the wait is drawn from 0 to k times UPSERT_BACKOFF_SECONDS: short, and spread, so
    that clients in a deadlock do not all try again at once."""
    waits, ranges = [], []
    draw = store.random.uniform
    monkeypatch.setattr(store.time, "sleep", waits.append)
    monkeypatch.setattr(store.random, "uniform", lambda low, high: ranges.append((low, high)) or draw(low, high))
    upsert, tries = attempts([LOST_RACE[1]] * (UPSERT_ATTEMPTS - 1))
    assert retry_upsert(upsert) == "upserted"
    assert len(waits) == UPSERT_ATTEMPTS - 1
    assert all(0 <= wait <= UPSERT_BACKOFF_SECONDS * k for k, wait in enumerate(waits, start=1)), waits
    # the ranges drawn from: 0 to k times the backoff, exactly
    assert ranges == [(0, UPSERT_BACKOFF_SECONDS * k) for k in range(1, UPSERT_ATTEMPTS)], ranges
