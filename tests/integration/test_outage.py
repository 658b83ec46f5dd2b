"""A MongoDB outage in the middle of a run: the server (FerretDB and its PostgreSQL) stops for 15 s
while 4 workers, the monitor and a driver run 100 trials, then starts again on the same data."""

import subprocess
import time

import pytest
import yaml

from hyperfleet.store import JOB_STATE_DONE
from testbed.mongo import MongoServer
from tests.helpers import jobs, run_cli, start_monitor, start_worker, stop_all, wait_for

OUTAGE_SECONDS = 15
UNREACHABLE = "MongoDB unreachable"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_outage_mid_run_loses_nothing_duplicates_nothing_and_is_logged_once(tmp_path):
    evaluations = tmp_path / "evaluations"
    spec = {"name": "outage", "objective": "tests.objectives:logged_quadratic", "algo": "rand", "max_evals": 100,
            "parallelism": 4, "space": {"x": {"uniform": [-5, 5]}, "sleep": {"choice": [0.15]},
                                        "log": {"choice": [str(evaluations)]}}}
    (tmp_path / "outage.yaml").write_text(yaml.safe_dump(spec))
    logs = {name: open(tmp_path / f"{name}.log", "w+") for name in ("w0", "w1", "w2", "w3", "monitor", "driver")}
    with MongoServer() as server:
        url = server.database_url("outage")
        workers = [start_worker(url, "--log-level", "warning", stderr=logs[f"w{i}"]) for i in range(4)]
        monitor = start_monitor(url, "--grace-seconds", "5", "--interval-seconds", "1", "--health-port", "0",
                                stderr=logs["monitor"])
        try:
            driver = run_cli(url, tmp_path / "outage.yaml", stdout=subprocess.PIPE, stderr=logs["driver"], text=True)
            wait_for(lambda: jobs(url).count_documents({"state": JOB_STATE_DONE}) >= 25, timeout=60)
            server.stop_processes()
            time.sleep(OUTAGE_SECONDS)
            server.start()
            back = time.monotonic()
            try:
                out, _ = driver.communicate(timeout=180)
            except subprocess.TimeoutExpired:  # where the trials are, and what each process said
                states = {d["_id"]: d["n"] for d in jobs(url).aggregate([{"$group": {"_id": "$state", "n": {"$sum": 1}}}])}
                print(f"the driver did not finish in 180 s; trials by state: {states}")
                for name, f in logs.items():
                    f.seek(0)
                    print(f"--- {name}:\n{f.read()[-1500:]}")
                raise
            recovered_in = time.monotonic() - back
            assert driver.returncode == 0, out
            assert all(w.poll() is None for w in workers) and monitor.poll() is None  # no restarts
            docs = list(jobs(url).find({"exp_key": "outage"}))
            assert len(docs) == 100 and all(d["state"] == JOB_STATE_DONE for d in docs)
            assert len({d["tid"] for d in docs}) == 100
            evaluated = evaluations.read_text().split()
            assert len(evaluated) == 100 and len(set(evaluated)) == 100, "a trial was evaluated twice"
            assert out.startswith("outage: 100 trials, 100 done, 0 failed")
            assert recovered_in < 60
            print(f"outage of {OUTAGE_SECONDS}s: the driver finished {recovered_in:.1f}s after the server was back")
        finally:
            stop_all(workers)
            stop_all([monitor])
    text = {name: (f.seek(0), f.read())[1] for name, f in logs.items()}
    # once per activity that met the outage (reserving, heartbeat, recording a result), not per attempt
    for i in range(4):
        assert 1 <= text[f"w{i}"].count(UNREACHABLE) <= 3, text[f"w{i}"]
    assert text["monitor"].count(UNREACHABLE) == 1, text["monitor"]
    assert text["driver"].count(UNREACHABLE) == 1, text["driver"]
    assert "Traceback" not in "".join(text.values())
