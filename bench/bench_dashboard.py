"""The dashboard with 10^4 trials in one experiment: API latency and the page's first render.

    make bench-dashboard [ARGS="--trials 10000 --repeats 5"]

* API: each GET the page makes, timed from this process (HTTP on loopback), median of ``--repeats``
  (after one warm-up). Target: <= 200 ms.
* First render: headless chromium (Debian's, through Selenium) opens the experiment's page; the time
  from navigation start until the counts show the experiment's trials and the table has its rows,
  median of ``--repeats``. Target: <= 1 s.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import random
import statistics
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testbed.mongo import MongoServer  # noqa: E402
from hyperfleet.store import JOB_STATE_DONE, JOB_STATE_ERROR, JobStore  # noqa: E402
from tests.helpers import start_dashboard  # noqa: E402

EXP = "big"


def fill(url: str, trials: int) -> None:
    store = JobStore.connect(url)
    rng = random.Random(1)
    start = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)
    tids = store.allocate_tids(trials)
    docs = []
    for i, tid in enumerate(tids):
        x, y = rng.uniform(-5, 10), rng.uniform(0, 15)
        failed = rng.random() < 0.05
        docs.append({"state": JOB_STATE_ERROR if failed else JOB_STATE_DONE, "tid": tid, "exp_key": EXP,
                     "spec": None, "owner": None, "version": 1,
                     "result": {"status": "fail"} if failed else {"status": "ok", "loss": (x - 1) ** 2 + (y - 4) ** 2},
                     "error": ["ValueError", "bad point"] if failed else None,
                     "misc": {"tid": tid, "cmd": None, "workdir": None, "idxs": {"x": [tid], "y": [tid]},
                              "vals": {"x": [x], "y": [y]}},
                     "book_time": start + _dt.timedelta(seconds=i), "refresh_time": start + _dt.timedelta(seconds=i + 1)})
        if len(docs) == 1000:
            store.insert_trials(docs)
            docs = []
    if docs:
        store.insert_trials(docs)
    store.save_experiment(EXP, {"name": EXP, "space": {"x": {"uniform": [-5, 10]}, "y": {"uniform": [0, 15]}}},
                          trials)
    store.close()


def timed_get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
    return time.perf_counter() - started


def first_render(base: str, trials: int, repeats: int) -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    times = []
    try:
        for _ in range(repeats + 1):
            driver.get("about:blank")
            driver.get(f"{base}/#/exp/{EXP}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                ms = driver.execute_script(
                    "const d = document.querySelector('#count-done b'), e = document.querySelector('#count-error b');"
                    "const rows = document.querySelectorAll('#trials tr[data-tid]').length;"
                    "return d && e && rows && (+d.textContent + +e.textContent) === arguments[0] ? performance.now() : null",
                    trials)
                if ms is not None:
                    times.append(ms / 1000)
                    break
                time.sleep(0.01)
            else:
                raise RuntimeError("the page did not render the experiment in 30 s")
    finally:
        driver.quit()
    return times[1:]  # the first load warms the server and the browser's cache


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with MongoServer() as server:
        url = server.database_url("dashbench")
        started = time.monotonic()
        fill(url, args.trials)
        print(f"server: {server.kind}; {args.trials} trials inserted in {time.monotonic() - started:.1f} s", flush=True)
        proc, base = start_dashboard(url)
        try:
            paths = ["/api/experiments", f"/api/experiments/{EXP}", f"/api/experiments/{EXP}/trials?limit=50",
                     f"/api/experiments/{EXP}/trials?state=error&sort=loss&limit=50",
                     f"/api/experiments/{EXP}/trials?param=x&min=0&max=1&limit=50",
                     f"/api/experiments/{EXP}/trials/{args.trials // 2}"]
            print(f"{'GET':64} {'median':>8} {'min':>8} {'max':>8}")
            for path in paths:
                timed_get(base + path)
                samples = [timed_get(base + path) for _ in range(args.repeats)]
                print(f"{path:64} {statistics.median(samples) * 1000:>6.0f} ms {min(samples) * 1000:>5.0f} ms "
                      f"{max(samples) * 1000:>5.0f} ms", flush=True)
            renders = first_render(base, args.trials, args.repeats)
            print(f"{'first render of the experiment page (browser)':64} {statistics.median(renders) * 1000:>6.0f} ms "
                  f"{min(renders) * 1000:>5.0f} ms {max(renders) * 1000:>5.0f} ms")
            print("targets: API <= 200 ms, first render <= 1000 ms")
        finally:
            proc.terminate()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
