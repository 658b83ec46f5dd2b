"""hyperfleet.mongoexp beyond what hyperopt's own suite can show on FerretDB (make test-hyperopt-suite
runs that suite): the parts of its TestTrials that FerretDB cannot store, MongoJobs' methods, and
main_worker_helper."""

import types

import pytest
from hyperopt import STATUS_FAIL, STATUS_OK, base

from hyperfleet import mongoexp
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING


def trial_doc(tid, loss=None, state=JOB_STATE_NEW):
    result = {"status": "new"} if loss is None else {"status": STATUS_OK, "loss": loss}
    return {"state": state, "tid": tid, "spec": {"x": 1}, "result": result, "exp_key": None, "owner": None,
            "version": 0, "book_time": None, "refresh_time": None,
            "misc": {"tid": tid, "cmd": ("token_load", "tests.objectives.quadratic_trial"), "idxs": {"x": [tid]},
                     "vals": {"x": [1.0]}}}


@pytest.fixture
def mongo(mongo_url):
    """hyperopt's spelling of the test database's address: mongo://[user:pw@]host:port/db/jobs[?options]."""
    head, sep, query = mongo_url.partition("?")
    return head.replace("mongodb://", "mongo://") + "/jobs" + sep + query


def test_tids_of_any_type_as_hyperopt_allows_them(mongo):
    trials = mongoexp.MongoTrials(mongo)
    trials.insert_trial_doc(trial_doc("a"))
    trials.insert_trial_docs([trial_doc(5), trial_doc(4), trial_doc(9)])
    assert len(trials) == 0  # not yet refreshed, as on plain Trials
    trials.refresh()
    assert [t["tid"] for t in trials.trials] == ["a", 5, 4, 9]  # insertion order, as stock's
    assert len(trials.specs) == len(trials.results) == len(trials.miscs) == 4
    trials.insert_trial_docs([trial_doc("id0"), trial_doc("id1")])
    assert len(trials) == 4
    trials.refresh()
    assert len(trials) == 6


def test_best_trial_skips_failed_trials_and_says_when_all_failed(mongo):
    trials = mongoexp.MongoTrials(mongo)
    failed = trial_doc(0, state=JOB_STATE_DONE)
    failed["result"] = {"status": STATUS_FAIL}
    trials.insert_trial_doc(failed)
    trials.refresh()
    with pytest.raises(base.AllTrialsFailed):
        assert trials.best_trial is None
    trials.insert_trial_docs([trial_doc(1, loss=1.0, state=JOB_STATE_DONE), trial_doc(2, loss=0.5, state=JOB_STATE_DONE)])
    trials.refresh()
    assert trials.best_trial["tid"] == 2


def test_mongojobs_reserve_update_and_attachments(mongo):
    jobs = mongoexp.MongoJobs.new_from_connection_str(mongo)
    first, second = jobs.insert(trial_doc(0)), jobs.insert(trial_doc(1))
    assert len(jobs) == 2 and "_id" in first
    assert jobs.reserve("host-a", cond={"tid": 1})["tid"] == 1  # cond narrows the choice
    with pytest.raises(ValueError, match="owned"):
        jobs.reserve("host-a", cond={"owner": "someone"})
    taken = jobs.reserve(("host", 7))
    assert taken["tid"] == 0 and taken["owner"] == ["host:7"] and taken["state"] == JOB_STATE_RUNNING
    assert jobs.reserve("host-b") is None
    jobs.update(taken, {"result": {"status": STATUS_OK, "loss": 2.0}, "state": JOB_STATE_DONE})
    assert taken["version"] == 2  # reserved (1), then updated
    stale = dict(taken, version=0)
    with pytest.raises(mongoexp.OperationFailure, match="changed since"):
        jobs.update(stale, {"state": JOB_STATE_ERROR})
    assert [d["tid"] for d in jobs.jobs_complete()] == [0] and [d["tid"] for d in jobs.jobs_running()] == [1]
    jobs.set_attachment(taken, b"weights", "model")
    assert jobs.attachment_names(taken) == ["model"] and jobs.get_attachment(taken, "model") == b"weights"
    jobs.delete_attachment(taken, "model")
    with pytest.raises(mongoexp.OperationFailure):
        jobs.get_attachment(taken, "model")
    jobs.delete(second)
    assert len(jobs) == 1


def test_parse_url_reads_a_missing_password_from_the_password_file(tmp_path):
    pwfile = tmp_path / "pw"
    pwfile.write_text("s3cret\n")
    assert mongoexp.parse_url("mongo://user@db.example:27018/hp/jobs?authSource=admin", pwfile=str(pwfile)) == (
        "mongo", "user", "s3cret", "db.example", 27018, "hp", "jobs", "admin")
    with pytest.raises(ValueError, match="/database/collection"):
        mongoexp.parse_url("mongo://host:27017/onlydb")


def test_main_worker_helper_runs_max_jobs_then_raises_reserve_timeout_when_idle(mongo, mongo_url):
    jobs = mongoexp.MongoJobs.new_from_connection_str(mongo)
    for tid in range(3):
        jobs.insert(trial_doc(tid))
    options = types.SimpleNamespace(mongo=mongo_url.split("://")[1], exp_key=None, max_jobs=2, poll_interval=0.1,
                                    reserve_timeout=1, workdir=None, last_job_timeout=None)
    assert mongoexp.main_worker_helper(options, ()) == 0
    assert jobs.jobs.count_documents({"state": JOB_STATE_DONE}) == 2
    options.max_jobs = 5
    with pytest.raises(mongoexp.ReserveTimeout):
        mongoexp.main_worker_helper(options, ())
    assert jobs.jobs.count_documents({"state": JOB_STATE_DONE}) == 3
