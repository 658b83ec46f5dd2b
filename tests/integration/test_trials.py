"""MongoTrials against the real server: hyperopt's Trials API, and refresh cost."""

import pickle

import pytest
from hyperopt import hp, rand

import hyperfleet
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_NEW, JOB_STATE_RUNNING, JobStore
from tests.helpers import DocsReturned, finish_all


def suggest_and_insert(trials, count, seed=0):
    """What fmin does to enqueue trials, without evaluating them."""
    from hyperopt import base
    import numpy as np

    domain = base.Domain(lambda x: x, hp.uniform("x", 0, 1))
    tids = trials.new_trial_ids(count)
    docs = rand.suggest(tids, domain, trials, np.random.default_rng(seed).integers(2**31 - 1))
    trials.insert_trial_docs(docs)
    return tids


def test_tids_are_unique_across_drivers(mongo_url):
    a = hyperfleet.MongoTrials(mongo_url, exp_key="a")
    b = hyperfleet.MongoTrials(mongo_url, exp_key="b")
    tids = a.new_trial_ids(5) + b.new_trial_ids(5) + a.new_trial_ids(5)
    assert len(set(tids)) == 15


def test_trials_api_matches_hyperopt(mongo_url):
    trials = hyperfleet.MongoTrials(mongo_url, exp_key="e1")
    assert len(trials) == 0
    suggest_and_insert(trials, 4)
    assert trials.count_by_state_unsynced(JOB_STATE_NEW) == 4
    finish_all(trials.store, "e1")
    assert trials.count_by_state_unsynced([JOB_STATE_NEW, JOB_STATE_RUNNING]) == 0
    trials.refresh()
    assert len(trials) == 4
    assert trials.best_trial["tid"] == min(trials.tids)
    assert trials.losses() == [t * 0.1 for t in trials.tids]
    assert set(trials.argmin) == {"x"}
    other = trials.view(exp_key="elsewhere")
    assert len(other) == 0


def test_refresh_reads_only_what_changed(mongo_server, mongo_url):
    listener = DocsReturned("jobs")  # the trials, not the job_ids counter (one document per refresh)
    import pymongo

    client = pymongo.MongoClient(mongo_server.url, event_listeners=[listener])
    store = JobStore(client, hyperfleet.parse_mongo_url(mongo_url))
    store.ensure_indexes()
    trials = hyperfleet.MongoTrials(store, exp_key="e1", resync_seconds=3600)
    suggest_and_insert(trials, 200)
    finish_all(store, "e1")
    trials.refresh()
    assert len(trials) == 200 and trials.count_by_state_unsynced(JOB_STATE_DONE) == 200

    listener.documents = 0
    trials.refresh()
    assert listener.documents == 0  # nothing changed, nothing read

    suggest_and_insert(trials, 1, seed=1)
    finish_all(store, "e1")
    listener.documents = 0
    trials.refresh()
    # the reserve/finish above returned one document to our client; the refresh read one more
    assert listener.documents <= 2
    assert len(trials) == 201


def test_another_clients_trials_are_seen_at_once_and_hand_made_ones_at_the_resync(mongo_url):
    trials = hyperfleet.MongoTrials(mongo_url, exp_key="e1", resync_seconds=3600)
    other = hyperfleet.MongoTrials(mongo_url, exp_key="e1")
    early = other.new_trial_ids(1)  # allocated first, inserted last
    suggest_and_insert(trials, 2)
    trials.refresh()
    from hyperopt import base

    doc = base.Trials(exp_key="e1").new_trial_docs(early, [None], [{"status": "new"}], [
        {"tid": early[0], "cmd": None, "workdir": None, "idxs": {"x": [early[0]]}, "vals": {"x": [0.5]}}])
    other.insert_trial_docs(doc)
    trials.refresh()
    assert len(trials) == 3  # its id came from the job_ids counter: the next refresh has it
    # a finished trial with an id of its own (not from the counter): only the resync can know of it
    own = {**doc[0], "tid": 10_000, "state": 2, "result": {"status": "ok", "loss": 1.0},
           "misc": {**doc[0]["misc"], "tid": 10_000}}
    own.pop("_id", None)
    trials.store.jobs.insert_one(own)
    trials.refresh()
    assert len(trials) == 3
    trials.resync_seconds = 0
    trials.refresh()
    assert len(trials) == 4 and trials.tids == sorted(trials.tids) and 10_000 in trials.tids


def test_errors_are_counted_but_not_in_trials(mongo_url):
    trials = hyperfleet.MongoTrials(mongo_url, exp_key="e1")
    suggest_and_insert(trials, 3)
    doc = trials.store.reserve("w", {}, "e1")
    trials.store.fail(doc["_id"], "w", ("E", "boom"), "tb")
    assert trials.count_by_state_unsynced(3) == 1
    assert len(trials) == 2 and doc["tid"] not in trials.tids


def test_delete_all_removes_trials_and_attachments(mongo_url):
    trials = hyperfleet.MongoTrials(mongo_url, exp_key="e1")
    keep = hyperfleet.MongoTrials(mongo_url, exp_key="e2")
    suggest_and_insert(trials, 3)
    suggest_and_insert(keep, 2)
    trials.attachments["FMinIter_Domain"] = b"x"
    trials.refresh()
    trials.trial_attachments(trials.trials[0])["w"] = b"y"
    trials.delete_all()
    assert len(trials) == 0 and "FMinIter_Domain" not in trials.attachments
    assert trials.store.db.fs.files.count_documents({}) == 0
    keep.refresh()
    assert len(keep) == 2


def test_pickles_by_address(mongo_url):
    trials = hyperfleet.MongoTrials(mongo_url, exp_key="e1")
    suggest_and_insert(trials, 2)
    trials.refresh()
    copy = pickle.loads(pickle.dumps(trials))
    assert copy.tids == trials.tids and copy is not trials


def test_unreachable_server_fails_fast():
    import time

    started = time.monotonic()
    with pytest.raises(hyperfleet.StoreUnavailable, match="cannot reach MongoDB at mongodb://127.0.0.1:9/db"):
        hyperfleet.MongoTrials("mongodb://127.0.0.1:9/db", exp_key="e", connect_timeout_seconds=1)
    assert time.monotonic() - started < 5
