"""Pruning with real workers: the median rule and ASHA decide from the values trials report, a pruned
trial ends at its next report (in the worker's thread or its --subprocesses child) and is recorded
DONE with its last loss, never retried; a child that ignores the decision is killed within the bound."""

import datetime
import subprocess
import threading

import pytest
import yaml
from hyperopt import hp, rand

import hyperfleet
from hyperfleet.store import JOB_STATE_DONE, PROGRESS
from hyperfleet.worker import PRUNED_CHILD_GRACE_SECONDS
from tests.helpers import jobs, run_cli, start_worker, stop_all, wait_for

MODES = ["--no-subprocesses", "--subprocesses"]


def run_levels(mongo_url, exp_key, log, levels, rule, strides=None, retries=0, steps=6, objective="learning_curve",
               **params):
    """One trial per level of tests.objectives' ``objective``, queued in this order (one worker runs them in turn),
    under ``rule``."""
    space = {"level": hp.choice("level", levels), "stride": hp.choice("stride", sorted(set(strides or [1]))),
             "steps": steps, "log": str(log), **params}
    stride_index = {s: i for i, s in enumerate(sorted(set(strides or [1])))}
    points = [{"level": i, "stride": stride_index[(strides or [1] * len(levels))[i]]} for i in range(len(levels))]
    trials = hyperfleet.MongoTrials(mongo_url, exp_key=exp_key, retries=retries)
    hyperfleet.fmin(getattr(__import__("tests.objectives").objectives, objective), space, algo=rand.suggest,
                    max_evals=len(levels), trials=trials, points_to_evaluate=points, pruning=rule,
                    show_progressbar=False)
    return {doc["misc"]["vals"]["level"][0]: doc for doc in trials.store.jobs.find({"exp_key": exp_key})}


def steps_run(log, level) -> list[int]:
    """The steps the objective computed for ``level`` (from its log file)."""
    return [int(s) for lv, s in (line.split() for line in log.read_text().splitlines()) if float(lv) == level]


def curve(store, exp_key, tid):
    return [(d["step"], d["loss"], d.get("rungs")) for d in store.db[PROGRESS].find({"exp_key": exp_key, "tid": tid},
                                                                                     sort=[("step", 1)])]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", MODES)
def test_median_prunes_a_trial_worse_than_the_median_after_warm_up_and_never_retries_it(mongo_url, tmp_path, mode):
    """loss(step) = level + 1/(step+1); warm-up 2 steps, 3 other trials needed. Levels 1, 2, 3 run whole
    (fewer than 3 others each); 5 is worse than their median (2.33 at step 2): pruned at step 2, the
    first step past warm-up, its objective ending there; 0.5 is better: never pruned. retries=2: a
    pruned trial is not a failure and runs once."""
    worker = start_worker(mongo_url, mode, "--log-level", "warning")
    log = tmp_path / "steps.log"
    try:
        docs = run_levels(mongo_url, "median", log, [1.0, 2.0, 3.0, 5.0, 0.5],
                          {"rule": "median", "warmup_steps": 2, "min_trials": 3}, retries=2)
    finally:
        assert stop_all([worker]) == [0]
    assert all(d["state"] == JOB_STATE_DONE for d in docs.values())
    bad = docs[3]
    assert bad["hyperfleet"]["pruning"] == {"rule": "median", "warmup_steps": 2, "min_trials": 3}
    assert bad["result"] == {"status": "ok", "loss": pytest.approx(5 + 1 / 3), "pruned": True}
    assert {k: bad["hyperfleet"]["pruned"][k] for k in ("step", "rule")} == {"step": 2, "rule": "median"}
    assert bad["hyperfleet"]["progress"] == {"step": 2, "loss": pytest.approx(5 + 1 / 3),
                                             "best": pytest.approx(5 + 1 / 3), "steps": 3}
    assert steps_run(log, 5.0) == [0, 1, 2]  # it stopped at the report that pruned it
    # never retried or requeued: one attempt, no failure counted
    assert (bad["hyperfleet"]["attempts"], bad["hyperfleet"]["requeues"]) == (1, 0)
    assert bad["hyperfleet"].get("objective_failures", 0) == 0 and "error" not in bad
    for level in (1.0, 2.0, 3.0, 0.5):
        doc = docs[[1.0, 2.0, 3.0, 5.0, 0.5].index(level)]
        assert "pruned" not in doc["hyperfleet"] and "pruned" not in doc["result"], level
        assert doc["result"]["loss"] == pytest.approx(level + 1 / 6)
        assert steps_run(log, level) == list(range(6))
        assert [s for s, _, _ in curve(hyperfleet.JobStore.connect(mongo_url), "median", doc["tid"])] == list(range(6))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", MODES)
def test_asha_promotes_at_its_rungs_and_stops_the_others(mongo_url, tmp_path, mode):
    """Rungs 1, 2, 4 (reduction factor 2, below max_step 8); values at step s: level + 1/(s+1).
    2.0, 1.0 and 0.5 are the best at every rung they reach (or alone there): they run all 8 steps.
    3.0 is not in the best half of 3 values at rung 1: stopped at step 1. 1.5 is in the best 2 of 4 at
    rung 1 (promoted) but not the best of 3 at rung 2: stopped at step 2. 1.2 reports every third step:
    its step 3 stands for rungs 1 and 2; in the best 3 of 6 at rung 1, not in the best 2 of 5 at rung 2:
    stopped at step 3."""
    worker = start_worker(mongo_url, mode, "--log-level", "warning")
    log = tmp_path / "steps.log"
    levels = [2.0, 1.0, 3.0, 1.5, 0.5, 1.2]
    try:
        docs = run_levels(mongo_url, "asha", log, levels,
                          {"rule": "asha", "min_step": 1, "reduction_factor": 2, "max_step": 8},
                          strides=[1, 1, 1, 1, 1, 3], steps=8)
    finally:
        assert stop_all([worker]) == [0]
    store = hyperfleet.JobStore.connect(mongo_url)
    by_level = {level: docs[i] for i, level in enumerate(levels)}
    assert {level: (d["hyperfleet"].get("pruned") or {}).get("step") for level, d in by_level.items()} == \
        {2.0: None, 1.0: None, 3.0: 1, 1.5: 2, 0.5: None, 1.2: 3}
    for level in (2.0, 1.0, 0.5):
        assert steps_run(log, level) == list(range(8)), level
        # rungs below max_step only: the report at step 4 stands for rung 4, none stands for 8
        assert [(s, r) for s, _, r in curve(store, "asha", by_level[level]["tid"]) if r] == [(1, [1]), (2, [2]), (4, [4])]
    assert steps_run(log, 3.0) == [0, 1] and steps_run(log, 1.5) == [0, 1, 2] and steps_run(log, 1.2) == [0, 3]
    assert [(s, r) for s, _, r in curve(store, "asha", by_level[1.2]["tid"])] == [(0, None), (3, [1, 2])]
    for level, step in ((3.0, 1), (1.5, 2), (1.2, 3)):
        doc = by_level[level]
        assert doc["state"] == JOB_STATE_DONE and doc["hyperfleet"]["pruned"]["rule"] == "asha"
        assert doc["result"] == {"status": "ok", "loss": pytest.approx(level + 1 / (step + 1)), "pruned": True}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
def test_a_pruned_trial_keeps_the_attachments_its_objective_saved(mongo_url, tmp_path, mode):
    """A trial pruned at step 0 (5.0 is worse than 1.0 there) keeps what its objective attached before it
    reported: in a --subprocesses child, the child's outcome file brings it back to the worker."""
    worker = start_worker(mongo_url, mode, "--log-level", "warning")
    try:
        docs = run_levels(mongo_url, "attached", tmp_path / "steps.log", [1.0, 5.0],
                          {"rule": "median", "warmup_steps": 0, "min_trials": 1}, steps=3,
                          objective="learning_curve_attached")
    finally:
        assert stop_all([worker]) == [0]
    trials = hyperfleet.MongoTrials(mongo_url, exp_key="attached")
    assert [(d["hyperfleet"].get("pruned") or {}).get("step") for d in docs.values()] == [None, 0]
    assert {level: dict(trials.trial_attachments(d)) for level, d in docs.items()} == \
        {0: {"curve": b"level 1.0"}, 1: {"curve": b"level 5.0"}}


def process_gone(pid: int) -> bool:
    """No such process, or a zombie (killed, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.timeout(120)
def test_a_pruned_child_that_ignores_the_decision_is_killed_within_the_bound(mongo_url, tmp_path):
    """The worker stops a pruned --subprocesses child within its grace (2 s) of the decision, even one
    that catches TrialPruned and carries on (bound 4.5 s: the machine is loaded)."""
    worker = start_worker(mongo_url, "--subprocesses", "--log-level", "warning")
    log = tmp_path / "steps.log"
    driver = threading.Thread(target=run_levels, args=(mongo_url, "stubborn", log, [1.0, 5.0],
                                                       {"rule": "median", "warmup_steps": 0, "min_trials": 1}),
                              kwargs={"steps": 3, "stubborn": True}, daemon=True)
    store = hyperfleet.JobStore.connect(mongo_url)
    try:
        driver.start()
        pruned = wait_for(lambda: store.jobs.find_one({"exp_key": "stubborn", "hyperfleet.pruned": {"$exists": True}}),
                          timeout=60)
        assert pruned, "no trial was pruned"
        pid = int(next(line.split()[1] for line in (tmp_path / "steps.log.pid").read_text().splitlines()
                       if float(line.split()[0]) == 5.0))
        assert wait_for(lambda: process_gone(pid), timeout=30), "the pruned child was never stopped"
        gone_after = datetime.datetime.now(datetime.timezone.utc) - pruned["hyperfleet"]["pruned"]["at"].replace(
            tzinfo=datetime.timezone.utc)
        driver.join(60)
        assert not driver.is_alive()
    finally:
        assert stop_all([worker]) == [0]
    print(f"pruned child gone {gone_after.total_seconds():.2f}s after the decision")
    assert PRUNED_CHILD_GRACE_SECONDS <= gone_after.total_seconds() < PRUNED_CHILD_GRACE_SECONDS + 2.5
    doc = store.jobs.find_one({"exp_key": "stubborn", "tid": pruned["tid"]})
    assert doc["state"] == JOB_STATE_DONE and doc["result"]["pruned"] is True and steps_run(log, 5.0) == [0]


@pytest.mark.timeout(120)
def test_hyperfleet_run_stamps_the_spec_rule_on_its_trials_and_refuses_a_bad_one(mongo_url, tmp_path):
    """`hyperfleet run` with pruning: the grid's second trial (level 5) is worse than the first at step
    0 and is pruned; a spec whose rule is bad is refused before anything is queued, naming the key."""
    spec = {"name": "pruned-run", "objective": "tests.objectives:learning_curve", "algo": "grid", "parallelism": 1,
            "space": {"level": {"choice": [1.0, 5.0]}, "steps": 4, "log": str(tmp_path / "steps.log")},
            "pruning": {"rule": "median", "min_trials": 1}}
    path = tmp_path / "pruned.yaml"
    path.write_text(yaml.safe_dump(spec))
    worker = start_worker(mongo_url, "--log-level", "warning")
    try:
        driver = run_cli(mongo_url, path, stdout=subprocess.PIPE, text=True)
        out, _ = driver.communicate(timeout=60)
    finally:
        assert stop_all([worker]) == [0]
    assert driver.returncode == 0 and out.startswith("pruned-run: 2 trials, 2 done, 0 failed"), out
    docs = list(jobs(mongo_url).find({"exp_key": "pruned-run"}, sort=[("tid", 1)]))
    assert [d["hyperfleet"]["pruning"] for d in docs] == [{"rule": "median", "warmup_steps": 0, "min_trials": 1}] * 2
    assert [(d["hyperfleet"].get("pruned") or {}).get("step") for d in docs] == [None, 0]
    assert steps_run(tmp_path / "steps.log", 5.0) == [0]

    path.write_text(yaml.safe_dump({**spec, "name": "bad-rule", "pruning": {"rule": "asha", "reduction_factor": 1}}))
    driver = run_cli(mongo_url, path, stderr=subprocess.PIPE, text=True)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 2 and "pruning.reduction_factor: needs an integer >= 2" in err, err
    assert jobs(mongo_url).count_documents({"exp_key": "bad-rule"}) == 0


def test_mongo_trials_refuse_a_bad_rule_naming_the_key(mongo_url):
    with pytest.raises(ValueError, match=r"^pruning.warmup_steps: needs an integer >= 0, got -2"):
        hyperfleet.MongoTrials(mongo_url, exp_key="bad", pruning={"rule": "median", "warmup_steps": -2})


def test_a_trial_handed_back_after_a_decision_loses_it(store):
    """The decision belongs to the attempt: a trial handed back (its worker stopped) before its pruned
    result was written is queued without the mark, so its next attempt is judged afresh."""
    tid = store.allocate_tids(1)[0]
    store.insert_trials([{"state": 0, "tid": tid, "exp_key": "back", "owner": None, "misc": {"tid": tid},
                          "result": {"status": "new"}}], pruning={"rule": "median", "warmup_steps": 0, "min_trials": 1})
    doc = store.reserve("w:1", {"host": "w", "pid": 1}, "back")
    assert store.trial_progress(doc["_id"], "w:1", {"step": 0, "loss": 1.0, "best": 1.0, "steps": 1},
                                {"step": 0, "rule": "median", "at": datetime.datetime.now(datetime.timezone.utc)})
    assert store.jobs.find_one({"_id": doc["_id"]})["hyperfleet"]["pruned"]["step"] == 0
    assert store.hand_back(doc["_id"], "w:1", "worker shutdown (SIGTERM)")
    back = store.jobs.find_one({"_id": doc["_id"]})
    assert back["state"] == 0 and "pruned" not in back["hyperfleet"]
    assert back["hyperfleet"]["pruning"]["rule"] == "median"


@pytest.mark.timeout(120)
def test_report_from_a_thread_the_objective_starts_reaches_the_trial(mongo_url, tmp_path):
    """An objective whose training loop runs in a thread of its own: its reports still reach the trial
    (the one trial reporting in the worker), and the poor one is pruned at its first report."""
    worker = start_worker(mongo_url, "--no-subprocesses", "--log-level", "warning")
    log = tmp_path / "steps.log"
    try:
        docs = run_levels(mongo_url, "threaded", log, [1.0, 5.0], {"rule": "median", "warmup_steps": 0, "min_trials": 1},
                          steps=3, in_thread=True)
    finally:
        assert stop_all([worker]) == [0]
    assert [(docs[i]["hyperfleet"]["progress"]["steps"], docs[i]["result"].get("pruned")) for i in (0, 1)] == \
        [(3, None), (1, True)]
    assert steps_run(log, 5.0) == [0]
