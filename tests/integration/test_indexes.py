"""Every query of the job protocol (the worker's, the driver's refresh, the monitor's sweep and metrics) is
served by an index: it reads the few documents it is about, never the whole jobs collection, so its
cost does not grow with the experiment's history. Counted by the server itself, not by explain
(FerretDB 2 cannot explain findAndModify):

* FerretDB 2: PostgreSQL's counters of the table that holds the jobs collection (``pg_stat_user_tables``:
  rows read by sequential scans plus rows fetched through indexes; DocumentDB runs a filter that no
  index serves as a scan of the whole ``_id`` index, so sequential scans alone would miss it);
* mongod: ``serverStatus`` ``metrics.queryExecutor.scannedObjects`` (documents examined).
"""

import pymongo
import pytest
from bson import ObjectId

from testbed.mongo import MongoServer
from hyperfleet.mongoexp import MongoTrials
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_ERROR, JobStore
from tests.integration.test_store import new_trials

pytestmark = pytest.mark.timeout(300)

#: finished trials of an old experiment that no operation below is about
HISTORY = 3000
#: queued trials of each of the experiments the operations are about
QUEUED = 40
EXPERIMENTS = ("e1", "e2", "e3")
#: what an operation may read: every trial of the live experiments, and some
READ_LIMIT = len(EXPERIMENTS) * QUEUED + 50


class DocumentsRead:
    """How many documents of the jobs collection the server has read so far."""

    def __init__(self, server: MongoServer, url: str):
        self.server, self.url = server, url

    def settle(self) -> None:
        """Make the count include every command sent so far (FerretDB: the PostgreSQL sessions that ran
        them end, which reports their statistics; a busy session reports them only after idling 10 s)."""
        if self.server.kind == "ferretdb":
            self.server.restart_ferretdb()

    def read(self) -> int:
        if self.server.kind == "mongod":
            with pymongo.MongoClient(self.server.url) as client:
                return client.admin.command("serverStatus")["metrics"]["queryExecutor"]["scannedObjects"]
        database = self.url.rsplit("/", 1)[1].split("?")[0]
        return int(self.server.psql(
            "SELECT s.seq_tup_read + coalesce(s.idx_tup_fetch, 0) FROM documentdb_api_catalog.collections c "
            "JOIN pg_stat_user_tables s ON s.relid = format('documentdb_data.documents_%s', c.collection_id)::regclass "
            f"WHERE c.database_name = '{database}' AND c.collection_name = 'jobs'"))

    def during(self, action) -> int:
        """Documents read by ``action(store)``, on a store connected after FerretDB's restart."""
        self.settle()
        before = self.read()
        store = JobStore.connect(self.url)
        try:
            action(store)
        finally:
            store.close()
        self.settle()
        return self.read() - before


@pytest.fixture(scope="module")
def indexed():
    """Its own server (the count needs FerretDB restarted): an old experiment of 3,000 DONE trials, and
    3 live ones of 40 queued trials each, some of them RUNNING, DONE and ERROR."""
    with MongoServer() as server:
        url = server.database_url("indexes")
        store = JobStore.connect(url)
        new_trials(store, HISTORY, "old")
        store.jobs.update_many({"exp_key": "old"}, {"$set": {"state": JOB_STATE_DONE}})
        for exp_key in EXPERIMENTS:
            new_trials(store, QUEUED, exp_key)
        for n in range(6):
            trial = store.reserve(f"setup{n}", {"host": "setup"}, "e1")
            if n % 3 == 1:
                store.finish(trial["_id"], f"setup{n}", {"status": "ok", "loss": float(n)})
            elif n % 3 == 2:
                store.fail(trial["_id"], f"setup{n}", ("ValueError", "bad"), "Traceback")
        store.close()
        yield server, url


# what each process of the job protocol asks the server, one command or a short sequence each
OPERATIONS = {
    "worker reserves of one experiment": lambda store, url: store.reserve("w", {"host": "h"}, "e2"),
    "worker reserves of any experiment": lambda store, url: store.reserve("w", {"host": "h"}),
    "worker heartbeat": lambda store, url: store.heartbeat(ObjectId(), "w"),
    "worker checkpoint": lambda store, url: store.checkpoint(ObjectId(), "w", {"status": "ok"}),
    "worker finishes": lambda store, url: store.finish(ObjectId(), "w", {"status": "ok", "loss": 1.0}),
    "worker fails": lambda store, url: store.fail(ObjectId(), "w", ("E", "e"), "tb"),
    "worker hands back": lambda store, url: store.hand_back(ObjectId(), "w", "stop"),
    "monitor reads running trials": lambda store, url: store.running_trials(),
    "monitor reads failed trials": lambda store, url: store.failed_trials(3),
    "monitor requeues an orphan": lambda store, url: store.requeue_orphan(
        {"_id": ObjectId(), "owner": ["w"], "refresh_time": None}, "gone"),
    "monitor errors an orphan": lambda store, url: store.error_orphan(
        {"_id": ObjectId(), "owner": ["w"], "refresh_time": None}, "gone"),
    "metrics read open trials": lambda store, url: store.open_trials("e1", fields=["tid", "state"]),
    "metrics read finished trials": lambda store, url: store.finished_trials("e1", JOB_STATE_DONE, 0),
    "metrics read one trial's times": lambda store, url: store.trial_times(ObjectId()),
    "driver counts open and failed": lambda store, url: store.count("e3", [JOB_STATE_ERROR]),
    "driver's first refresh": lambda store, url: MongoTrials(url, exp_key="e2", refresh=True),
    "driver's next refresh": lambda store, url: MongoTrials(url, exp_key="e3", refresh=True).refresh(),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_the_job_protocol_reads_only_the_documents_it_is_about(indexed, operation):
    server, url = indexed
    read = DocumentsRead(server, url).during(lambda store: OPERATIONS[operation](store, url))
    assert read <= READ_LIMIT, f"{operation} read {read} documents of {HISTORY + READ_LIMIT}: a collection scan"


def test_the_count_sees_a_query_that_no_index_serves(indexed):
    """The check above can fail: a filter on a field no index covers reads the whole collection."""
    server, url = indexed
    read = DocumentsRead(server, url).during(lambda store: store.jobs.find_one({"misc.workdir": "nowhere"}))
    assert read >= HISTORY


def test_an_index_is_built_in_its_request_and_no_background_build_job_polls(mongo_server, mongo_url):
    """FerretDB builds an index in the createIndexes request, so the test server (testbed/mongo.py's
    TEMPLATE_SQL) drops DocumentDB's pg_cron jobs that poll the queue of background builds every 2
    seconds; the jobs left run once a minute, in background workers (no connection to make)."""
    with pymongo.MongoClient(mongo_url) as client:
        jobs = client.get_default_database().jobs
        jobs.insert_many([{"tid": n, "exp_key": "e"} for n in range(50)])
        jobs.create_index([("exp_key", 1), ("tid", 1)], name="by_exp")
        assert "by_exp" in jobs.index_information()
        assert [d["tid"] for d in jobs.find({"exp_key": "e"}, sort=[("tid", 1)]).limit(3)] == [0, 1, 2]
    if mongo_server.kind == "ferretdb":
        schedules = mongo_server.psql("SELECT schedule, command FROM cron.job ORDER BY jobid").splitlines()
        assert schedules and all(line.startswith("* * * * *|") for line in schedules), schedules
        assert mongo_server.psql("SHOW cron.use_background_workers").strip() == "on"
