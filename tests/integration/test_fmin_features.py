"""hyperopt's fmin features on MongoTrials, each with real worker processes: early stopping,
timeout, loss threshold, points to evaluate, the save file, space_eval, attachments, delete_all and
resuming an experiment to more evaluations."""

import time
import uuid

import pytest
from hyperopt import fmin, hp, rand, space_eval
from hyperopt.early_stop import no_progress_loss

import hyperfleet
from hyperfleet.store import JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_NEW, JOB_STATE_RUNNING
from tests.objectives import constant, identity, quadratic, slow_quadratic, with_attachments
from tests.helpers import start_polling_workers, stop_all

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def served_url(mongo_server, tmp_path_factory):
    """One database served by two workers for the whole module, polling before the first test (a test
    with a 2 s timeout must not spend it on their start-up); each test has its own exp_key."""
    url = mongo_server.database_url("f" + uuid.uuid4().hex[:12])
    workers = start_polling_workers(url, 2, tmp_path_factory.mktemp("workers"), "--log-level", "warning")
    yield url
    stop_all(workers)


@pytest.fixture
def trials(served_url, request):
    return hyperfleet.MongoTrials(served_url, exp_key=request.node.name[:60])


def states(trials) -> dict:
    counts = {}
    for doc in trials.store.jobs.find({"exp_key": trials._exp_key}, {"state": 1}):
        counts[doc["state"]] = counts.get(doc["state"], 0) + 1
    return counts


def test_no_progress_loss_stops_a_distributed_fmin_as_on_plain_trials(trials):
    space = {"x": hp.uniform("x", 0, 1), "sleep": 0.05}
    stop_fn, at_stop = no_progress_loss(5), {}

    def watched(view, *args):
        stop, kwargs = stop_fn(view, *args)
        if stop and not at_stop:
            at_stop.update(seen=len(view.trials), queued=sum(states(trials).values()))
        return stop, kwargs

    fmin(constant, space, algo=rand.suggest, max_evals=100, trials=trials, max_queue_len=2,
         early_stop_fn=watched, show_progressbar=False)
    counts = states(trials)
    # no_progress_loss(5) stops at its fifth call (the first, which sets the best loss, counts too), and
    # each call sees one more finished trial
    assert at_stop["seen"] == 5, at_stop
    # nothing is queued after the stop; what was queued then finishes or is withdrawn
    assert sum(counts.values()) == at_stop["queued"], (counts, at_stop)
    assert counts[JOB_STATE_DONE] >= 5, counts
    assert counts.get(JOB_STATE_NEW, 0) == 0 and counts.get(JOB_STATE_RUNNING, 0) == 0, counts


def test_an_early_stop_function_sees_finished_trials_one_more_each_call_in_finish_order(trials):
    seen = []

    def stop_after_four(view, *args):
        seen.append([(t["state"], t["result"]["loss"], t["refresh_time"]) for t in view.trials])
        return len(view.trials) >= 4, args

    fmin(quadratic, hp.uniform("x", -5, 5), algo=rand.suggest, max_evals=50, trials=trials, max_queue_len=3,
         early_stop_fn=stop_after_four, show_progressbar=False)
    assert [len(calls) for calls in seen] == [1, 2, 3, 4]
    last = seen[-1]
    assert all(state == JOB_STATE_DONE for state, _, _ in last)
    assert [finished for _, _, finished in last] == sorted(finished for _, _, finished in last)
    counts = states(trials)
    assert counts.get(JOB_STATE_NEW, 0) == 0 and counts.get(JOB_STATE_RUNNING, 0) == 0, counts


def test_a_timeout_stops_queueing_and_leaves_nothing_queued_or_running(trials):
    space = {"x": hp.uniform("x", -5, 5), "sleep": 0.5}
    started = time.monotonic()
    fmin(slow_quadratic, space, algo=rand.suggest, max_evals=1000, trials=trials, max_queue_len=4, timeout=2,
         show_progressbar=False)
    elapsed = time.monotonic() - started
    counts = states(trials)
    assert 2 <= elapsed < 8, elapsed  # the timeout, then the trials already running (0.5 s each)
    # on the server's clock: nothing was handed out after the timeout, bar reserves racing the cancel (the
    # driver's loop notices the timeout, then withdraws the queue: 1.5 s of headroom, 2.55 s seen under
    # make test's load where 0.5 s was allowed); queueing on would book trials until fmin returned (up to 8 s)
    booked = sorted(d["book_time"] for d in trials.store.jobs.find({"exp_key": trials._exp_key, "book_time": {"$ne": None}}))
    assert (booked[-1] - booked[0]).total_seconds() < 2 + 1.5, booked
    assert counts.get(JOB_STATE_NEW, 0) == 0 and counts.get(JOB_STATE_RUNNING, 0) == 0, counts
    assert counts[JOB_STATE_DONE] >= 4 and counts.get(JOB_STATE_CANCEL, 0) >= 1, counts


def test_a_loss_threshold_stops_the_search_when_a_loss_goes_below_it(trials):
    fmin(identity, hp.uniform("x", 0, 1), algo=rand.suggest, max_evals=200, trials=trials, max_queue_len=2,
         loss_threshold=0.1, show_progressbar=False)
    counts = states(trials)
    assert min(trials.losses()) < 0.1
    assert counts[JOB_STATE_DONE] < 200
    assert counts.get(JOB_STATE_NEW, 0) == 0 and counts.get(JOB_STATE_RUNNING, 0) == 0, counts


def test_points_to_evaluate_are_evaluated_first_and_count_towards_max_evals(trials):
    space = {"x": hp.uniform("x", -5, 5), "opt": hp.choice("opt", ["sgd", "adam"])}
    points = [{"x": 3.0, "opt": 1}, {"x": -1.0, "opt": 0}]
    hyperfleet.fmin(lambda p: quadratic(p["x"]), space, algo=rand.suggest, max_evals=5, trials=trials,
                    points_to_evaluate=points, show_progressbar=False)
    docs = sorted(trials.trials, key=lambda t: t["tid"])
    assert len(docs) == 5 and all(t["state"] == JOB_STATE_DONE for t in docs)
    assert [(t["misc"]["vals"]["x"][0], t["misc"]["vals"]["opt"][0]) for t in docs[:2]] == [(3.0, 1), (-1.0, 0)]
    assert [t["result"]["loss"] for t in docs[:2]] == [0.0, 16.0]


def test_a_trials_save_file_resumes_the_search_where_it_stopped(trials, tmp_path):
    save = tmp_path / "trials.pkl"
    space = hp.uniform("x", -5, 5)
    fmin(quadratic, space, algo=rand.suggest, max_evals=4, trials=trials, trials_save_file=str(save),
         show_progressbar=False)
    assert save.exists()
    fmin(quadratic, space, algo=rand.suggest, max_evals=7, trials=None, trials_save_file=str(save),
         show_progressbar=False)  # hyperopt loads the MongoTrials from the file
    assert states(trials) == {JOB_STATE_DONE: 7}


def test_space_eval_of_the_best_trial_gives_the_options_values(trials):
    space = {"x": hp.uniform("x", -5, 5), "opt": hp.choice("opt", ["sgd", "adam"])}
    best = fmin(lambda p: quadratic(p["x"]) + (0 if p["opt"] == "adam" else 1), space, algo=rand.suggest,
                max_evals=8, trials=trials, return_argmin=False, show_progressbar=False)
    assert best == space_eval(space, trials.argmin)
    assert best["opt"] in ("sgd", "adam")
    assert trials.best_trial["result"]["loss"] == min(trials.losses())


def test_attachments_of_trials_and_of_the_experiment_and_delete_all(trials, served_url):
    other = hyperfleet.MongoTrials(served_url, exp_key=trials._exp_key + "-other")
    fmin(with_attachments, hp.uniform("x", -5, 5), algo=rand.suggest, max_evals=3, trials=trials,
         show_progressbar=False)
    fmin(quadratic, hp.uniform("x", -5, 5), algo=rand.suggest, max_evals=2, trials=other, show_progressbar=False)
    for t in trials.trials:
        assert trials.trial_attachments(t)["note"] == f"x={t['misc']['vals']['x'][0]}".encode()
    trials.attachments["summary"] = b"three trials"
    assert trials.attachments["summary"] == b"three trials"
    trials.delete_all()
    assert len(trials) == 0 and states(trials) == {}
    assert "summary" not in trials.attachments and "FMinIter_Domain" not in trials.attachments
    with pytest.raises(KeyError, match="summary"):  # as a dict's (hyperopt's attachments are one)
        trials.attachments["summary"]
    other.refresh()
    assert len(other) == 2 and "FMinIter_Domain" in other.attachments


def test_fmin_again_with_the_same_exp_key_resumes_to_the_higher_max_evals(trials, served_url):
    space = hp.uniform("x", -5, 5)
    fmin(quadratic, space, algo=rand.suggest, max_evals=4, trials=trials, show_progressbar=False)
    again = hyperfleet.MongoTrials(served_url, exp_key=trials._exp_key)
    fmin(quadratic, space, algo=rand.suggest, max_evals=7, trials=again, show_progressbar=False)
    assert states(again) == {JOB_STATE_DONE: 7}
    assert len({t["tid"] for t in again.trials}) == 7
