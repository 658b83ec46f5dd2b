"""Run a distributed search on this machine: a MongoDB server, three workers and fmin.

    make demo

The server is mongod when it is on PATH, otherwise the FerretDB test server (`make mongo-server`).
"""

import os
import subprocess
import sys
import time

from hyperopt import fmin, hp, tpe

import hyperfleet
from hyperfleet.mongo_url import redact_url
from examples.objectives import branin
from testbed.mongo import MongoServer

WORKERS = 3
MAX_EVALS = 60


def main() -> int:
    with MongoServer() as server:
        url = server.database_url("demo")
        print(f"MongoDB ({server.kind}) at {redact_url(url)}")
        # the address holds the password: in the environment, not on a command line anyone can read with ps
        env = dict(os.environ, PYTHONPATH=os.getcwd(), HYPERFLEET_WORKER_MONGO=url)
        workers = [
            subprocess.Popen([sys.executable, "-m", "hyperfleet", "worker", "--log-level", "warning"], env=env)
            for _ in range(WORKERS)
        ]
        try:
            started = time.monotonic()
            trials = hyperfleet.MongoTrials(url, exp_key="branin")
            space = {"x": hp.uniform("x", -5, 10), "y": hp.uniform("y", 0, 15)}
            best = fmin(branin, space, algo=tpe.suggest, max_evals=MAX_EVALS, trials=trials, max_queue_len=WORKERS)
            elapsed = time.monotonic() - started
            owners = {t["owner"][0] for t in trials.trials}
            print(f"{len(trials.trials)} trials in {elapsed:.1f}s by {len(owners)} workers")
            print(f"best loss {trials.best_trial['result']['loss']:.4f} at x={best['x']:.3f} y={best['y']:.3f} (optimum 0.3979)")
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
