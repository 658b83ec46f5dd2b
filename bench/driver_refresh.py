"""One driver's refresh loop, measured: run by bench_driver.py under hyperfleet's virtualenv or stock's
(hyperopt 0.3.0 with pymongo 3), so it imports only hyperopt and pymongo besides the MongoTrials
under test.

    python bench/driver_refresh.py IMPL URL EXP_KEY ITERATIONS   # IMPL: hyperfleet | stock

Loads the experiment's trials once, then ``ITERATIONS`` times: the oldest RUNNING trial finishes and
a new one starts (what happens between two of fmin's refreshes in a steady run), and
``trials.refresh()`` is timed, with the documents the server sent for it (pymongo's command events:
find and getMore batches). Prints JSON: the first load and each refresh's seconds and documents.
"""

import json
import sys
import time

import pymongo
from pymongo import monitoring


class DocumentsRead(monitoring.CommandListener):
    def __init__(self):
        self.documents = 0

    def started(self, event):
        pass

    def succeeded(self, event):
        cursor = event.reply.get("cursor") if hasattr(event.reply, "get") else None
        if cursor:
            self.documents += len(cursor.get("firstBatch", cursor.get("nextBatch", [])))

    def failed(self, event):
        pass


def main(impl: str, url: str, exp_key: str, iterations: int) -> None:
    listener = DocumentsRead()
    monitoring.register(listener)
    if impl == "stock":
        from hyperopt.mongoexp import MongoTrials
        trials_url = "mongo://" + url.removeprefix("mongodb://") + "/jobs"  # a server without auth
    else:
        from hyperfleet.mongoexp import MongoTrials
        trials_url = url
    jobs = pymongo.MongoClient(url).get_default_database().jobs
    template = jobs.find_one({"exp_key": exp_key, "state": 2})
    running = {k: v for k, v in jobs.find_one({"exp_key": exp_key, "state": 1}).items() if k != "_id"}
    started = time.perf_counter()
    trials = MongoTrials(trials_url, exp_key=exp_key)
    load = {"seconds": time.perf_counter() - started, "documents": listener.documents, "trials": len(trials.trials)}
    next_tid = jobs.find_one({"exp_key": exp_key}, sort=[("tid", -1)])["tid"] + 1
    refreshes = []
    for i in range(iterations):
        oldest = jobs.find_one({"exp_key": exp_key, "state": 1}, sort=[("tid", 1)])
        jobs.update_one({"_id": oldest["_id"]}, {"$set": {"state": 2, "result": template["result"]},
                                                 "$inc": {"version": 1}})
        jobs.insert_one({**running, "tid": next_tid + i, "misc": {**running["misc"], "tid": next_tid + i}})
        before = listener.documents
        started = time.perf_counter()
        trials.refresh()
        refreshes.append({"seconds": time.perf_counter() - started, "documents": listener.documents - before})
    print(json.dumps({"load": load, "refreshes": refreshes, "trials": len(trials.trials)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
