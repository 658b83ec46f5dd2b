"""How fast the monitor notices a dead worker, and what one sweep costs over a big collection.

    make bench-monitor

* detection latency: ``kill -9`` of a worker process (heartbeat only, and with the process check)
  and ``docker kill`` of a worker container (container check), measured from the kill to the
  requeue written on the trial. No baseline is printed: stock hyperopt has no monitor (such a
  trial stays RUNNING), and hyperkops' monitor judges a trial by its age against its timeout (the
  trial's own length), so there is no detection time of the same kind to measure beside ours.
* liveness, one check of 100 RUNNING trials per mode (a check lists its world once per sweep, then
  judges each trial): process (100 live pids), docker (100 worker containers on the local engine,
  created, not started), kubernetes (100 pods on the tests' API server, testbed/kube_server: pods are
  only listed, so they need not run).
* experiment metrics (hyperfleet.experiment_metrics): one refresh over 10^5 trials of one experiment
  (100 RUNNING, 100 queued): the first (counts every finished trial once), a steady one, one after 10
  trials finished.
* sweep time: 10^6 trial documents of which 100 RUNNING. Target: <= 20 ms per sweep. Beside it, the
  failed-trial query a sweep adds with ``--max-objective-retries`` (ERROR trials within their budget). The sweep asks
  for ``{state: 1}`` only, which mongod serves from the ``(state, exp_key, tid)`` index. FerretDB v1
  cannot use an index for it: it sends PostgreSQL ``_jsonb -> $1 @> $2`` with the field name as a
  parameter, which no expression index matches, so on FerretDB each sweep is a sequential scan.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prometheus_client import CollectorRegistry  # noqa: E402

from hyperfleet.experiment_metrics import ExperimentMetrics  # noqa: E402
from hyperfleet.monitor import Reaper  # noqa: E402
from hyperfleet.settings import MonitorSettings  # noqa: E402
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_NEW, JOB_STATE_RUNNING, JobStore  # noqa: E402
from testbed.mongo import MongoServer  # noqa: E402

GRACE, INTERVAL, HEARTBEAT = 3.0, 0.5, 1.0


def env():
    return dict(os.environ, PYTHONPATH=str(REPO))


def enqueue_sleeper(store: JobStore, seconds: float = 600) -> None:
    tid = store.allocate_tids(1)[0]
    store.insert_trials([{
        "state": JOB_STATE_NEW, "tid": tid, "spec": None, "result": {"status": "new"},
        "misc": {"tid": tid, "cmd": ("token_load", "tests.objectives.sleep_trial"), "workdir": None,
                 "idxs": {"sleep": [tid]}, "vals": {"sleep": [seconds]}},
        "exp_key": "bench", "owner": None, "book_time": None, "refresh_time": None,
    }])


def wait(predicate, timeout=120.0, step=0.005):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(step)
    return value


def detection(server: MongoServer, mode: str, samples: int, image: str | None) -> list[float]:
    url = server.database_url("d" + uuid.uuid4().hex[:8])
    store = JobStore.connect(url)
    liveness = {"heartbeat only": "none", "process check": "process", "container check": "docker"}[mode]
    monitor = subprocess.Popen([sys.executable, "-m", "hyperfleet", "monitor", "--mongo", url, "--liveness", liveness,
                                "--grace-seconds", str(GRACE), "--interval-seconds", str(INTERVAL),
                                "--health-port", "0", "--max-retries", "1000", "--log-level", "error"], env=env())
    latencies = []
    try:
        for i in range(samples):
            enqueue_sleeper(store)
            name = f"hyperfleet-bench-{os.getpid()}-{i}"
            if mode == "container check":
                subprocess.run(["docker", "run", "-d", "--name", name, "--network", "host",
                                "--label", "hyperfleet.role=worker", "-e", f"HYPERFLEET_CONTAINER_NAME={name}",
                                "-e", "PYTHONPATH=/src", "-v", f"{REPO}:/src:ro", image, "worker", "--mongo", url,
                                "--heartbeat-seconds", str(HEARTBEAT), "--log-level", "error"],
                               check=True, capture_output=True)
            else:
                worker = subprocess.Popen([sys.executable, "-m", "hyperfleet", "worker", "--mongo", url,
                                           "--heartbeat-seconds", str(HEARTBEAT), "--log-level", "error"], env=env())
            doc = wait(lambda: store.jobs.find_one({"state": JOB_STATE_RUNNING}))
            time.sleep(1.0 + (i % 4) * 0.37)  # kill at different phases of the heartbeat and the sweep
            killed = time.monotonic()
            if mode == "container check":
                subprocess.run(["docker", "kill", name], check=True, capture_output=True)
            else:
                worker.kill()
                worker.wait()
            wait(lambda doc=doc: store.jobs.find_one({"_id": doc["_id"], "state": JOB_STATE_NEW}))
            latencies.append(time.monotonic() - killed)
            store.jobs.update_one({"_id": doc["_id"]}, {"$set": {"state": JOB_STATE_DONE}})
            if mode == "container check":
                subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    finally:
        monitor.terminate()
        monitor.wait(15)
        store.client.drop_database(store.address.database)
        store.close()
    return latencies


def fill(store: JobStore, total: int, running: int) -> float:
    started = time.monotonic()
    batch = 10_000
    for first in range(0, total, batch):
        store.jobs.insert_many([
            {"state": JOB_STATE_RUNNING if tid < running else JOB_STATE_DONE, "tid": tid, "exp_key": "bench",
             "owner": ["host:1"], "spec": None, "result": {"loss": 0.1, "status": "ok"},
             "misc": {"tid": tid, "cmd": ["domain_attachment", "FMinIter_Domain"], "workdir": None,
                      "idxs": {"x": [tid]}, "vals": {"x": [0.5]}},
             "version": 2, "hyperfleet": {"attempts": 1, "requeues": 0}}
            for tid in range(first, min(total, first + batch))
        ], ordered=False)
    store.jobs.update_many({"state": JOB_STATE_RUNNING}, {"$currentDate": {"refresh_time": True, "book_time": True}})
    return time.monotonic() - started


def sweep_times(store: JobStore, repeats: int) -> list[float]:
    reaper = Reaper(store, MonitorSettings(grace_seconds=3600, health_port=None), checks=[])
    times = []
    for _ in range(repeats):
        report = reaper.sweep()
        assert report.running == 100 and report.requeued == 0
        times.append(report.seconds)
    return times


def failed_query_times(store: JobStore, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        store.failed_trials(3)
        times.append(time.perf_counter() - started)
    return times


def check_times(check, workers: list[dict], repeats: int) -> list[float]:
    """One sweep's use of a liveness check: refresh (list the world), then judge every RUNNING trial."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        check.refresh()
        gone = [check.gone(w) for w in workers]
        times.append(time.perf_counter() - started)
        assert getattr(check, "enabled", True) and gone == [None] * len(workers), gone[:3]
    return times


def liveness_costs(image: str, running: int, repeats: int) -> list[tuple[str, list[float]]]:
    import socket

    from hyperfleet.contract import ROLE_LABEL, ROLE_WORKER
    from hyperfleet.liveness import DockerLiveness, KubernetesLiveness, ProcessLiveness, process_start_ticks

    out = []
    me = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start_ticks(os.getpid())}
    out.append(("process", check_times(ProcessLiveness(), [me] * running, repeats)))

    label = f"hyperfleet.bench={uuid.uuid4().hex[:8]}"
    names = [f"hyperfleet-bench-liveness-{i}" for i in range(running)]
    try:
        for name in names:
            subprocess.run(["docker", "create", "--name", name, "--label", f"{ROLE_LABEL}={ROLE_WORKER}",
                            "--label", label, "--entrypoint", "sleep", image, "3600"], check=True, capture_output=True)
        subprocess.run(["docker", "start", *names], check=True, capture_output=True)
        out.append(("docker", check_times(DockerLiveness(), [{"container": n} for n in names], repeats)))
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)

    from kubernetes import client, config

    from testbed.kube_server import KubeServer
    with KubeServer(controller_manager=False) as kube:
        core = client.CoreV1Api(config.new_client_from_config(config_file=kube.kubeconfig, context=kube.context))
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench")))
        core.create_namespaced_service_account("bench", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default")))
        for i in range(running):
            core.create_namespaced_pod("bench", client.V1Pod(
                metadata=client.V1ObjectMeta(name=f"worker-{i}", labels={"app": "worker"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="w", image="none")],
                                      automount_service_account_token=False)))
        check = KubernetesLiveness("bench", "app=worker", core_api=core)
        out.append(("kubernetes", check_times(check, [{"pod": f"worker-{i}", "namespace": "bench"}
                                                      for i in range(running)], repeats)))
    return out


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:8.1f} ms   max {max(values) * 1000:8.1f} ms"


def seconds(values: list[float]) -> str:
    return f"p50 {statistics.median(values):5.2f} s   max {max(values):5.2f} s"


def metrics_refresh_times(server: MongoServer, total: int, repeats: int) -> list[tuple[str, list[float]]]:
    """The per-experiment metrics' refresh over ``total`` trials of one experiment, 100 RUNNING and 100
    queued at the top of the tids: the first refresh (counts every finished trial once), a steady one
    (nothing changed), and one after 10 trials finished."""
    database = "m" + uuid.uuid4().hex[:8]
    store = JobStore.connect(server.database_url(database))
    try:
        fill(store, total, 0)
        top = total - 200
        store.jobs.update_many({"exp_key": "bench", "tid": {"$gte": top}},
                               {"$set": {"state": JOB_STATE_RUNNING}, "$currentDate": {"book_time": True}})
        store.jobs.update_many({"exp_key": "bench", "tid": {"$gte": top + 100}}, {"$set": {"state": JOB_STATE_NEW}})
        registry = CollectorRegistry()
        metrics = ExperimentMetrics(registry)

        def timed() -> float:
            started = time.perf_counter()
            metrics.refresh(store)
            return time.perf_counter() - started

        rows = [("first refresh", [timed()]), ("steady refresh", [timed() for _ in range(repeats)])]
        after = []
        for _ in range(repeats):
            for doc in list(store.jobs.find({"state": JOB_STATE_RUNNING}, limit=10, projection=["_id"])):
                store.jobs.update_one({"_id": doc["_id"]},
                                      {"$set": {"state": JOB_STATE_DONE}, "$currentDate": {"refresh_time": True}})
            after.append(timed())
        rows.append(("refresh after 10 trials finished", after))
        assert registry.get_sample_value("hyperfleet_experiment_trials", {"exp_key": "bench", "state": "done"}) == \
            total - 200 + 10 * repeats
        return rows
    finally:
        store.client.drop_database(database)
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--image", default=None, help="worker image for the container check (built when missing)")
    parser.add_argument("--skip-detection", action="store_true", help="leave out detection and liveness")
    parser.add_argument("--skip-sweep", action="store_true", help="leave out the sweep over --documents")
    parser.add_argument("--liveness-trials", type=int, default=100, help="RUNNING trials of the liveness checks")
    parser.add_argument("--metrics-documents", type=int, default=100_000,
                        help="trials of the experiment whose metrics refresh is timed")
    args = parser.parse_args()

    image = args.image or "hyperfleet/runtime:bench"
    if not args.skip_detection and not args.image:
        subprocess.run([str(REPO / "scripts" / "build-runtime-image.sh"), image,
                        os.environ.get("BASE_IMAGE", "hyperfleet/base:bookworm")], check=True,
                       env=dict(os.environ, PYTHON=sys.executable))
    rows = []
    with MongoServer() as server:
        print(f"server: {server.kind}; grace {GRACE}s, sweep every {INTERVAL}s, heartbeat every {HEARTBEAT}s")
        if not args.skip_detection:
            for mode in ("heartbeat only", "process check", "container check"):
                values = detection(server, mode, args.samples, image)
                bound = GRACE + INTERVAL if mode == "heartbeat only" else INTERVAL
                rows.append((f"detection, {mode}", seconds(values), f"bound {bound:.1f} s"))
                print("  ", *rows[-1], flush=True)

            for mode, values in liveness_costs(image, args.liveness_trials, 30):
                rows.append((f"liveness check, {mode}, {args.liveness_trials} RUNNING", ms(values), "once per sweep"))
                print("  ", *rows[-1], flush=True)

        for name, values in metrics_refresh_times(server, args.metrics_documents, 5):
            rows.append((f"experiment metrics, {name}, {args.metrics_documents} trials", ms(values),
                         "its own thread; mongod: ranges of the (state, exp_key, tid) index"))
            print("  ", *rows[-1], flush=True)

        if not args.skip_sweep:
            database = "s" + uuid.uuid4().hex[:8]
            store = JobStore.connect(server.database_url(database))
            took = fill(store, args.documents, 100)
            print(f"   inserted {args.documents} trials in {took:.0f} s", flush=True)
            rows.append((f"sweep, {args.documents} trials, 100 RUNNING", ms(sweep_times(store, 30)),
                         "target 20 ms; reads the 100 RUNNING documents only"))
            rows.append((f"failed-trial query, {args.documents} trials", ms(failed_query_times(store, 10)),
                         "with --max-objective-retries; mongod: the (state, exp_key, tid) index"))
            store.client.drop_database(database)
            store.close()

    print()
    for name, figures, reference in rows:
        print(f"{name:44} {figures:34} {reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
