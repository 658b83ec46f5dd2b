"""The job store against the real server: atomicity, conditional writes, server-clock heartbeats."""

import multiprocessing
import threading
import time
import uuid

import pytest
from hyperopt import base

from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_NEW, JOB_STATE_RUNNING, JobStore, StoreUnavailable
from tests.helpers import wait_for


def trial_docs(store, count, exp_key="e1"):
    """``count`` NEW trials of ``exp_key`` with fresh tids, as the driver makes them (not inserted)."""
    tids = store.allocate_tids(count)
    return [
        {"state": JOB_STATE_NEW, "tid": tid, "spec": None, "result": {"status": "new"},
         "misc": {"tid": tid, "cmd": ("token_load", "tests.objectives.quadratic"), "workdir": None,
                  "idxs": {"x": [tid]}, "vals": {"x": [float(tid)]}},
         "exp_key": exp_key, "owner": None, "version": 0, "book_time": None, "refresh_time": None}
        for tid in tids
    ]


def new_trials(store, count, exp_key="e1"):
    docs = trial_docs(store, count, exp_key)
    store.insert_trials(docs)
    return [d["tid"] for d in docs]


def test_a_connect_timeout_under_a_millisecond_is_one_millisecond_not_pymongos_zero(mongo_url):
    """pymongo reads a connect timeout of 0 as no timeout at all (and here a 0 ms server selection reached
    the server 3 times in 20): the store gives pymongo at least 1 ms, with which it reaches a live server (on a
    loaded machine, not at every try: a CI run's one try timed out)."""
    store = wait_for(lambda: _connected_or_none(mongo_url, 0.0001), timeout=30, step=0.1)
    try:
        assert store.client.options.server_selection_timeout == 0.001
        assert store.client.options.pool_options.connect_timeout == 0.001
        assert store.client.admin.command("ping")["ok"] == 1
    finally:
        store.client.close()


def _connected_or_none(mongo_url: str, timeout_seconds: float) -> JobStore | None:
    try:
        return JobStore.connect(mongo_url, timeout_seconds=timeout_seconds)
    except StoreUnavailable:
        return None


def test_tids_are_unique_under_concurrency(store):
    got, lock = [], threading.Lock()

    def allocate():
        for _ in range(20):
            tids = store.allocate_tids(3)
            with lock:
                got.extend(tids)

    threads = [threading.Thread(target=allocate) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(300))


def test_each_trial_is_reserved_exactly_once_under_concurrency(store):
    new_trials(store, 120)
    reserved, lock = [], threading.Lock()

    def reserve(n):
        while (doc := store.reserve(f"w{n}", {"host": "test", "pid": n}, "e1")) is not None:
            with lock:
                reserved.append(doc["tid"])

    threads = [threading.Thread(target=reserve, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reserved) == 120
    assert len(set(reserved)) == 120
    assert store.count("e1", [JOB_STATE_RUNNING]) == 120


def _reserve_until_empty(url: str, name: str, start) -> list[int]:
    """A worker process: its own connection, reserving as fast as it can once all have started."""
    store = JobStore.connect(url)
    start.wait()
    tids = []
    while (doc := store.reserve(name, {"host": "test", "process": name}, "e1")) is not None:
        tids.append(doc["tid"])
    store.close()
    return tids


def test_processes_reserving_from_one_queue_never_share_a_trial(store, mongo_url):
    """The server's findAndModify is atomic: 4 processes, each with its own connections, empty a queue of
    400 trials; each trial is handed out once, to the process its document names."""
    new_trials(store, 400)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        start = manager.Barrier(4)
        results = [pool.apply_async(_reserve_until_empty, (mongo_url, f"p{n}", start)) for n in range(4)]
        got = {f"p{n}": result.get(timeout=120) for n, result in enumerate(results)}
    handed_out = [tid for tids in got.values() for tid in tids]
    assert len(handed_out) == 400 and sorted(handed_out) == list(range(400)), "a trial was handed out twice"
    owners = {doc["tid"]: doc["owner"] for doc in store.jobs.find({}, projection=["tid", "owner"])}
    assert all(owners[tid] == [name] for name, tids in got.items() for tid in tids)
    assert all(got.values()), "a process got nothing: the test raced no one"


def _allocate_at_once(store, start, got):
    start.wait()
    got.extend(store.allocate_tids(2))


def test_first_tid_allocations_that_race_to_create_the_counter_all_succeed(mongo_server):
    """8 clients allocate the first ids of fresh databases at once: their upserts of the counter race
    (DocumentDB answers the losers with code 1, mongod with DuplicateKeyError); every one gets its ids."""
    for _ in range(10):
        url = mongo_server.database_url("t" + uuid.uuid4().hex[:12])
        stores = [JobStore.connect(url) for _ in range(8)]
        start, got = threading.Barrier(8), []
        threads = [threading.Thread(target=_allocate_at_once, args=(s, start, got)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stores[0].client.drop_database(stores[0].address.database)
        for s in stores:
            s.close()
        assert sorted(got) == list(range(16))


def test_reserve_takes_the_oldest_trial_of_the_requested_experiment(store):
    new_trials(store, 2, exp_key="other")
    mine = new_trials(store, 2, exp_key="mine")
    doc = store.reserve("w", {"host": "h", "pid": 1}, "mine")
    assert doc["tid"] == mine[0]
    assert doc["state"] == JOB_STATE_RUNNING and doc["owner"] == ["w"]
    assert doc["hyperfleet"]["attempts"] == 1 and doc["hyperfleet"]["worker"] == {"host": "h", "pid": 1}
    # set by one update; mongod gives both one time, FerretDB a time per field (seen 1 ms apart under load)
    assert abs((doc["book_time"] - doc["refresh_time"]).total_seconds()) <= 0.005


def test_heartbeat_advances_refresh_time_from_the_server_clock(store):
    new_trials(store, 1)
    doc = store.reserve("w", {}, "e1")
    time.sleep(0.3)
    assert store.heartbeat(doc["_id"], "w")
    after = store.jobs.find_one({"_id": doc["_id"]})["refresh_time"]
    assert after > doc["refresh_time"]
    assert abs((store.server_time() - after).total_seconds()) < 2
    assert not store.heartbeat(doc["_id"], "someone-else")


def test_hand_back_requeues_counts_and_records_the_reason(store):
    new_trials(store, 1)
    doc = store.reserve("w", {}, "e1")
    assert store.hand_back(doc["_id"], "w", "worker shutdown (SIGTERM)")
    back = store.jobs.find_one({"_id": doc["_id"]})
    assert back["state"] == JOB_STATE_NEW and back["owner"] is None and back["book_time"] is None
    assert back["hyperfleet"]["requeues"] == 1
    assert back["hyperfleet"]["history"][-1]["reason"] == "worker shutdown (SIGTERM)"
    again = store.reserve("w2", {}, "e1")
    assert again["_id"] == doc["_id"] and again["hyperfleet"]["attempts"] == 2


def test_the_history_names_an_orphans_last_holder_and_keeps_a_retried_errors_first_2000_characters(store):
    new_trials(store, 1)
    doc = store.reserve("w", {}, "e1")
    assert store.requeue_orphan(store.running_trials("e1")[0], "no heartbeat")
    assert store.jobs.find_one()["hyperfleet"]["history"][-1]["owner"] == "w"
    store.reserve("w2", {}, "e1")
    message = "x" * 4000
    assert store.fail(doc["_id"], "w2", ("<class 'ValueError'>", message), "tb", retry=True)
    entry = store.jobs.find_one()["hyperfleet"]["history"][-1]
    assert entry["owner"] == "w2" and entry["event"] == "retried"
    assert len(entry["reason"]) == 2000  # HISTORY_REASON_LIMIT, written out: a mutant of the constant fails here
    assert f"objective failed, run again: {message}".startswith(entry["reason"])


def test_a_late_result_cannot_overwrite_a_handed_back_trial(store):
    new_trials(store, 1)
    doc = store.reserve("w", {}, "e1")
    assert store.hand_back(doc["_id"], "w", "test")
    assert not store.finish(doc["_id"], "w", {"loss": 1.0, "status": "ok"})
    assert not store.fail(doc["_id"], "w", ("E", "late"), "tb")
    taken = store.reserve("w2", {}, "e1")
    assert store.finish(taken["_id"], "w2", {"loss": 2.0, "status": "ok"})
    assert not store.finish(taken["_id"], "w", {"loss": 1.0, "status": "ok"})
    final = store.jobs.find_one({"_id": doc["_id"]})
    assert final["state"] == JOB_STATE_DONE and final["result"]["loss"] == 2.0


def test_fail_records_hyperopts_error_pair_and_the_traceback(store):
    new_trials(store, 1)
    doc = store.reserve("w", {}, "e1")
    assert store.fail(doc["_id"], "w", ("<class 'ValueError'>", "bad"), "Traceback ...ValueError: bad")
    final = store.jobs.find_one({"_id": doc["_id"]})
    assert final["state"] == JOB_STATE_ERROR
    assert final["error"] == ["<class 'ValueError'>", "bad"]
    assert "ValueError: bad" in final["hyperfleet"]["traceback"]


def test_experiment_attachments_replace_and_delete(store):
    attachments = store.experiment_attachments("e1")
    other = store.experiment_attachments("e2")
    attachments["domain"] = b"v1"
    attachments["domain"] = b"v2" * 200_000  # several GridFS chunks
    other["domain"] = b"other"
    assert attachments["domain"] == b"v2" * 200_000
    assert other["domain"] == b"other"
    assert store.db.fs.files.count_documents({"filename": "domain", "exp_key": "e1"}) == 1
    assert list(attachments) == ["domain"]
    del attachments["domain"]
    assert "domain" not in attachments and "domain" in other


def test_trial_attachments(store):
    new_trials(store, 1)
    doc = store.jobs.find_one()
    attachments = store.trial_attachments(doc)
    attachments["weights"] = b"\x00\x01"
    attachments["weights"] = b"\x02"
    attachments["log"] = b"text"
    assert attachments["weights"] == b"\x02" and sorted(attachments) == ["log", "weights"]
    assert store.db.fs.files.count_documents({}) == 2
    log_file = store.db.fs.files.find_one({"filename": f"{doc['_id']}_log"})["_id"]
    del attachments["log"]  # its file goes with it, chunks too
    assert list(attachments) == ["weights"] and store.db.fs.files.count_documents({}) == 1
    assert store.db.fs.chunks.count_documents({"files_id": log_file}) == 0
    with pytest.raises(KeyError):
        del attachments["log"]


def test_deleting_an_experiment_takes_its_trials_values_attachments_and_record_and_nothing_else(store):
    from hyperfleet.store import EXPERIMENTS, PROGRESS

    for exp_key in ("e1", "e2"):
        new_trials(store, 2, exp_key=exp_key)
        store.save_experiment(exp_key, {"space": {"x": ["uniform", 0, 1]}}, 2)
        store.record_progress(exp_key, 0, 1, 0.5)
        store.experiment_attachments(exp_key)["domain"] = exp_key.encode() * 100_000  # several chunks
        store.trial_attachments(store.jobs.find_one({"exp_key": exp_key}))["log"] = b"text"
    assert store.delete_experiment("e1") == 2
    for exp_key, left in (("e1", 0), ("e2", 1)):
        assert store.jobs.count_documents({"exp_key": exp_key}) == 2 * left
        assert store.db[PROGRESS].count_documents({"exp_key": exp_key}) == left
        assert store.db[EXPERIMENTS].count_documents({"_id": exp_key}) == left
        assert list(store.experiment_attachments(exp_key)) == (["domain"] if left else [])
    files = list(store.db.fs.files.find({}, projection={"_id": 1}))
    assert len(files) == 2  # e2's experiment attachment and its trial's log: their chunks are all there is
    assert store.db.fs.chunks.count_documents({"files_id": {"$nin": [f["_id"] for f in files]}}) == 0
    assert store.experiment_attachments("e2")["domain"] == b"e2" * 100_000


def test_an_experiment_record_holds_its_spec_as_canonical_json(store):
    """The spec's text in the record is the same for the same spec, whatever the order of its keys."""
    from hyperfleet.store import EXPERIMENTS

    store.save_experiment("e1", {"space": {"y": 1, "x": 2}, "max_evals": 3}, 3)
    store.save_experiment("e2", {"max_evals": 3, "space": {"x": 2, "y": 1}}, 3)
    texts = [d["spec_json"] for d in store.db[EXPERIMENTS].find({}, sort=[("_id", 1)])]
    assert texts[0] == texts[1]
    assert store.experiment("e1")["spec"] == {"space": {"x": 2, "y": 1}, "max_evals": 3}


def test_a_pruned_trials_end_advances_its_version_by_one(store):
    new_trials(store, 1)
    doc = store.reserve("w", {}, "e1")
    before = store.jobs.find_one()["version"]
    assert store.finish_pruned(doc["_id"], "w", {"loss": 1.0, "status": "ok", "pruned": True}, {"step": 3})
    assert store.jobs.find_one()["version"] == before + 1


def test_trials_inserted_again_after_a_lost_connection_stay_as_they_were(store):
    """A retried insert (the driver's first try reached the server, its answer was lost) sends the same
    documents, _id included: those already there are kept as they are now, those the first try did not
    get to (its connection lost part way) are inserted, and the call succeeds."""
    tids = store.allocate_tids(3)
    docs = [{"state": JOB_STATE_NEW, "tid": tid, "exp_key": "e1", "misc": {"tid": tid}} for tid in tids]
    inserted = store.insert_trials(docs[:2])
    assert [d["version"] for d in store.jobs.find()] == [0, 0]  # a trial without one starts at hyperopt's first
    reserved = store.reserve("w", {}, "e1")
    retried = store.insert_trials(inserted + docs[2:])
    assert retried[:2] == inserted and [d["tid"] for d in retried] == tids
    assert sorted(d["tid"] for d in store.jobs.find()) == tids  # the first two already there did not stop the third
    assert store.jobs.find_one({"_id": reserved["_id"]})["state"] == JOB_STATE_RUNNING


def test_a_write_error_other_than_a_trial_already_there_fails_the_insert(store):
    """Only duplicates (a retried insert's trials already there) are let pass: a trial the server refuses
    for another reason (here an _id that is an array, error 2) fails the call."""
    from pymongo.errors import BulkWriteError

    docs = trial_docs(store, 2)
    docs[1]["_id"] = [1, 2]
    with pytest.raises(BulkWriteError) as raised:
        store.insert_trials(docs)
    assert [e["code"] for e in raised.value.details["writeErrors"]] == [2]
    assert store.jobs.count_documents({}) == 1  # unordered: the good trial went in


def test_last_tid_counts_the_trial_ids_handed_out(store):
    assert store.last_tid() == 0
    store.allocate_tids(3)
    assert store.last_tid() == 3


def test_documents_stay_readable_by_hyperopt(store):
    new_trials(store, 3)
    doc = store.reserve("w", {}, "e1")
    store.finish(doc["_id"], "w", {"loss": 0.5, "status": "ok"})
    docs = list(store.jobs.find({"state": {"$ne": JOB_STATE_ERROR}}))
    trials = base.trials_from_docs(docs, exp_key="e1")  # hyperopt validates every key it needs
    assert len(trials) == 3
    assert trials.best_trial["result"]["loss"] == 0.5
    states = {t["tid"]: t["state"] for t in trials.trials}
    assert states.pop(doc["tid"]) == JOB_STATE_DONE and list(states.values()) == [JOB_STATE_NEW] * 2


def test_every_change_of_a_trial_advances_its_version_by_one(store):
    """hyperopt's ``version``: retry_failed writes only to the version it read, so a change that does not
    advance it could be overwritten by a monitor acting on an older read."""
    new_trials(store, 1)
    steps = []

    def step(name, change):
        before = store.jobs.find_one()["version"]
        assert change() not in (None, False), name
        steps.append((name, store.jobs.find_one()["version"] - before))

    def reserve():
        return store.reserve("w", {}, "e1")

    step("reserve", reserve)
    step("hand_back", lambda: store.hand_back(store.jobs.find_one()["_id"], "w", "shutdown"))
    step("reserve", reserve)
    step("requeue_orphan", lambda: store.requeue_orphan(store.running_trials("e1")[0], "no heartbeat"))
    step("reserve", reserve)
    step("error_orphan", lambda: store.error_orphan(store.running_trials("e1")[0], "retry budget spent"))
    step("retry_failed", lambda: store.retry_failed(store.jobs.find_one(), "objective failed"))
    step("reserve", reserve)
    step("fail", lambda: store.fail(store.jobs.find_one()["_id"], "w", ("E", "bad"), "tb"))
    step("retry_failed", lambda: store.retry_failed(store.jobs.find_one(), "objective failed"))
    step("reserve", reserve)
    step("fail with retry", lambda: store.fail(store.jobs.find_one()["_id"], "w", ("E", "bad"), "tb", retry=True))
    step("reserve", reserve)
    step("finish", lambda: store.finish(store.jobs.find_one()["_id"], "w", {"loss": 1.0, "status": "ok"}))
    assert [delta for _, delta in steps] == [1] * len(steps), steps


def test_a_trial_keeps_the_last_history_entries_up_to_the_limit(store):
    from hyperfleet.store import HISTORY_LIMIT

    new_trials(store, 1)
    for n in range(HISTORY_LIMIT + 5):
        doc = store.reserve("w", {}, "e1")
        assert store.hand_back(doc["_id"], "w", f"hand-back {n}")
    history = store.jobs.find_one()["hyperfleet"]["history"]
    assert [h["reason"] for h in history] == [f"hand-back {n}" for n in range(5, HISTORY_LIMIT + 5)]
    assert store.jobs.find_one()["hyperfleet"]["requeues"] == HISTORY_LIMIT + 5


def test_cancelling_an_experiment_withdraws_its_queue_and_is_recorded_until_it_runs_again(store):
    from hyperfleet.store import JOB_STATE_CANCEL

    new_trials(store, 3, exp_key="stop-me")
    new_trials(store, 2, exp_key="other")
    running = store.reserve("w", {}, "stop-me")
    # the dashboard may cancel an experiment no driver recorded (trials queued by hyperopt's own fmin)
    assert not store.experiment_cancelled("stop-me")
    assert store.cancel_experiment("stop-me") == 2
    assert store.experiment_cancelled("stop-me") and not store.experiment_cancelled("other")
    assert store.count("stop-me", [JOB_STATE_CANCEL]) == 2 and store.count("other", [JOB_STATE_NEW]) == 2
    # a count is of its experiment's trials only, or of every experiment's (None)
    assert store.count("other", [JOB_STATE_NEW, JOB_STATE_RUNNING]) == 2
    assert store.count(None, [JOB_STATE_NEW, JOB_STATE_RUNNING, JOB_STATE_CANCEL]) == 5
    # a withdrawn trial is a change like any other: its version advanced by one
    assert {d["version"] for d in store.jobs.find({"state": JOB_STATE_CANCEL})} == {1}
    assert store.jobs.find_one({"_id": running["_id"]})["state"] == JOB_STATE_RUNNING
    store.save_experiment("stop-me", {"name": "stop-me"}, 3)
    assert not store.experiment_cancelled("stop-me")


def test_trials_that_evaluate_fmins_domain_carry_its_file_id_looked_up_once_per_experiment(store):
    store.experiment_attachments("e1")["FMinIter_Domain"] = b"old pickle"
    store.experiment_attachments("e1")["FMinIter_Domain"] = b"the pickled domain"
    file_id = store.latest_attachment_id("FMinIter_Domain", "e1")
    assert store.read_file(file_id) == b"the pickled domain"

    def trial(exp_key, cmd):
        return {"state": JOB_STATE_NEW, "tid": 0, "spec": None, "result": {"status": "new"},
                "misc": {"tid": 0, "cmd": cmd, "workdir": None, "idxs": {}, "vals": {}}, "exp_key": exp_key,
                "owner": None, "book_time": None, "refresh_time": None}

    cache = {}
    docs = store.insert_trials([trial("e1", ("domain_attachment", "FMinIter_Domain")),
                                trial("e2", ("domain_attachment", "FMinIter_Domain")),
                                trial("e1", ("token_load", "tests.objectives.quadratic")),
                                trial("e1", ("domain_attachment",))], domain_ids=cache)
    assert [d["hyperfleet"].get("domain_file_id") for d in docs] == [file_id, None, None, None]
    assert cache == {("FMinIter_Domain", "e1"): file_id, ("FMinIter_Domain", "e2"): None}
    assert store.jobs.find_one({"exp_key": "e1", "misc.cmd.0": "domain_attachment",
                                "hyperfleet.domain_file_id": file_id}) is not None


def test_a_trial_put_back_in_the_queue_is_stamped_with_the_time_it_went_back(store):
    """refresh_time is a trial's last change on the server clock, requeues included (the report's and the
    dashboard's 'last change'; hyperopt's own Trials reads it as well)."""

    new_trials(store, 1)
    doc = store.reserve("w", {}, "e1")
    # a server time after the reservation's (its clock counts milliseconds)
    before = wait_for(lambda: (now := store.server_time()) > doc["refresh_time"] and now, timeout=10, step=0.005)
    assert store.hand_back(doc["_id"], "w", "shutdown")
    back = store.jobs.find_one({"_id": doc["_id"]})
    assert back["refresh_time"] >= before > doc["refresh_time"]


def test_a_checkpoint_says_whether_the_trial_is_still_the_callers(store):
    new_trials(store, 1)
    doc = store.reserve("w", {}, "e1")
    assert store.checkpoint(doc["_id"], "w", {"loss": 0.7, "status": "ok"}) is True
    assert store.jobs.find_one()["result"] == {"loss": 0.7, "status": "ok"}
    assert store.checkpoint(doc["_id"], "w", None) is True  # a heartbeat that keeps the partial result
    assert store.checkpoint(doc["_id"], "someone-else", {"loss": 0.1, "status": "ok"}) is False
    assert store.jobs.find_one()["result"] == {"loss": 0.7, "status": "ok"}


def test_a_trial_that_ends_is_stamped_with_the_time_it_ended(store):
    """refresh_time of a DONE or ERROR trial is when it ended (server clock): the monitor's run-time
    histogram is that minus book_time (runtime/README.md)."""
    from tests.helpers import wait_for

    new_trials(store, 3)
    ends = {"finish": lambda d: store.finish(d["_id"], "w", {"loss": 1.0, "status": "ok"}),
            "fail": lambda d: store.fail(d["_id"], "w", ("E", "bad"), "tb"),
            "error_orphan": lambda d: store.error_orphan(store.jobs.find_one({"_id": d["_id"]}), "gone")}
    for name, end in ends.items():
        doc = store.reserve("w", {}, "e1")
        reserved = doc["refresh_time"]
        before = wait_for(lambda: (now := store.server_time()) > reserved and now, timeout=10, step=0.005)  # noqa: B023
        assert end(doc), name
        assert store.jobs.find_one({"_id": doc["_id"]})["refresh_time"] >= before, name


def test_the_latest_of_several_files_of_one_name_is_the_domain_a_trial_gets(store):
    """hyperopt's own MongoTrials adds a file per upload and leaves the older ones: the newest is the one."""
    import datetime

    from tests.helpers import wait_for

    older = store.gfs.put(b"older domain", filename="FMinIter_Domain", exp_key="e1")
    uploaded = store.db.fs.files.find_one({"_id": older})["uploadDate"]
    # GridFS stamps uploads in milliseconds of the client's clock: the next upload must be stamped later
    wait_for(lambda: datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
             > uploaded + datetime.timedelta(milliseconds=2), timeout=10, step=0.001)
    newer = store.gfs.put(b"newer domain", filename="FMinIter_Domain", exp_key="e1")
    assert store.latest_attachment_id("FMinIter_Domain", "e1") == newer
    assert store.read_file(store.latest_attachment_id("FMinIter_Domain", None)) == b"newer domain"
    assert store.latest_attachment_id("FMinIter_Domain", "e2") is None


def test_one_reported_value_per_trial_and_step_the_server_holds_to(store):
    """The progress collection's unique index: two clients writing the same trial's value at the same step
    (a report retried after a lost answer, racing its first try) leave one document, never two."""
    from pymongo.errors import DuplicateKeyError

    from hyperfleet.store import PROGRESS

    value = {"exp_key": "e1", "tid": 0, "step": 3, "loss": 1.0}
    store.db[PROGRESS].insert_one(dict(value))
    with pytest.raises(DuplicateKeyError):
        store.db[PROGRESS].insert_one({**value, "loss": 2.0})
    store.db[PROGRESS].insert_one({**value, "step": 4})  # another step of the same trial is another value
    assert store.db[PROGRESS].count_documents({"exp_key": "e1", "tid": 0}) == 2
