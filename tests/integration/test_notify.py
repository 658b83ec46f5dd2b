"""Webhooks (the spec's ``notify``), against a local HTTP receiver: what the driver tells on finished,
failed and stalled, one message per event, retried after a 500, and a webhook that is down never
stopping the experiment."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from testbed.processes import free_port
from hyperfleet import notify
from hyperfleet.notify import Notifier, StallWatch
from hyperfleet.spec import Webhook
from tests.helpers import run_cli, start_worker, stop_all


class Receiver:
    """An HTTP server that answers 500 to the first POST on each path, then 200, and keeps what it took."""

    def __init__(self):
        self.taken: dict[str, list[dict]] = {}
        self.refused: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not receiver.refused.get(self.path):
                    receiver.refused[self.path] = 1
                    self.send_response(500)
                else:
                    receiver.taken.setdefault(self.path, []).append(body)
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_a_webhook_is_tried_again_after_a_500_and_a_dead_one_is_given_up(receiver, caplog):
    waits = []
    assert notify.post(receiver.url + "/hook", {"text": "hi"}, sleep=waits.append) is True
    assert receiver.refused["/hook"] == 1 and receiver.taken["/hook"] == [{"text": "hi"}] and waits == [1]
    dead = f"http://127.0.0.1:{free_port()}/services/SECRET"
    waits.clear()
    assert notify.post(dead, {"text": "hi"}, sleep=waits.append) is False
    assert waits == [1, 2]  # three tries
    assert "giving up" in caplog.text and "SECRET" not in caplog.text  # the path of a Slack URL is its secret


def test_payloads_slack_and_json():
    assert notify.payload("slack", "finished", "e1", {"done": 3, "best_loss": 0.25}) == {
        "text": "hyperfleet: experiment e1 finished: done 3, best loss 0.25"}
    body = notify.payload("json", "stalled", "e1", {"reason": "no trial finished in 5 min", "pending": 2})
    assert body["event"] == "stalled" and body["exp_key"] == "e1" and body["pending"] == 2
    assert body["text"] == "hyperfleet: experiment e1 stalled (no trial finished in 5 min): pending 2"


def test_each_webhook_gets_only_its_events():
    sent = []
    notifier = Notifier("e1", [Webhook(url="http://a/", events=["failed"]), Webhook(url="http://b/", format="json")],
                        post=lambda url, body: sent.append((url, body)) or True)
    assert notifier.send("finished", done=1) == 1
    assert [url for url, _ in sent] == ["http://b/"]


def test_stall_watch_says_it_once_per_stall():
    now = [0.0]
    watch = StallWatch(60, clock=lambda: now[0])
    assert not watch.check(finished=0, pending=2)
    now[0] = 59
    assert not watch.check(0, 2)
    now[0] = 61
    assert watch.check(0, 2) and not watch.check(0, 2)  # told once
    now[0] = 70
    assert not watch.check(1, 2)  # progress: the clock restarts
    now[0] = 200
    assert watch.check(1, 2)
    assert not StallWatch(1, clock=lambda: now[0]).check(5, 0)  # nothing pending is not a stall


def run_driver(mongo_url, tmp_path, spec: dict, workers: int = 1) -> subprocess.CompletedProcess:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    procs = [start_worker(mongo_url, "--log-level", "error") for _ in range(workers)]
    try:
        driver = run_cli(mongo_url, path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = driver.communicate(timeout=120)
    finally:
        stop_all(procs)
    return subprocess.CompletedProcess(driver.args, driver.returncode, out, err)


@pytest.mark.timeout(180)
def test_the_driver_tells_stalled_then_finished_once_each(mongo_url, tmp_path, receiver):
    spec = {"name": "slow", "objective": "tests.objectives:slow_quadratic", "algo": "rand", "max_evals": 1,
            "space": {"x": {"uniform": [0, 1]}, "sleep": {"choice": [4]}},
            # no trial finishes for 2.4 s while one runs
            "notify": {"stalled_after_minutes": 0.04, "webhooks": [
                {"url": receiver.url + "/slack"}, {"url": receiver.url + "/json", "format": "json"}]}}
    result = run_driver(mongo_url, tmp_path, spec)
    assert result.returncode == 0, result.stderr
    assert [m["text"].split(":")[1].strip() for m in receiver.taken["/slack"]] == [
        "experiment slow stalled (no trial finished in 0.04 min)", "experiment slow finished"]
    assert [m["event"] for m in receiver.taken["/json"]] == ["stalled", "finished"]
    finished = receiver.taken["/json"][1]
    assert finished["done"] == 1 and finished["error"] == 0 and isinstance(finished["best_loss"], float)
    assert receiver.refused == {"/slack": 1, "/json": 1}  # the first try of each was refused, and retried


@pytest.mark.timeout(180)
def test_the_driver_tells_failed_and_a_dead_webhook_does_not_stop_it(mongo_url, tmp_path, receiver):
    dead = f"http://127.0.0.1:{free_port()}/hook"
    spec = {"name": "broken", "objective": "tests.objectives:flaky", "algo": "rand", "max_evals": 2,
            "space": {"x": {"uniform": [-2, -1]}},
            "notify": {"webhooks": [{"url": dead}, {"url": receiver.url + "/hook", "format": "json"}]}}
    result = run_driver(mongo_url, tmp_path, spec)
    assert result.returncode == 1 and "no trial succeeded" in result.stderr  # the experiment's own outcome
    assert [m["event"] for m in receiver.taken["/hook"]] == ["failed"]
    assert receiver.taken["/hook"][0]["error"] == 2
    assert "webhook 127.0.0.1" in result.stderr and "giving up" in result.stderr
