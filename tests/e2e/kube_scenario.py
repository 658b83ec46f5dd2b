"""The Kubernetes end-to-end scenario, on any cluster a kubeconfig context reaches, with real pods:

1. ``pulumi up`` of a Kubernetes stack (Deployments and the StatefulSet awaited to readiness, the
   driver Job not: it runs for minutes);
2. every pod of the release is Ready, its probes passing, under the chart's security context;
3. the driver Job runs and a trial is RUNNING;
4. at once, while each of two worker pods holds a trial: ``kubectl delete pod`` of one (the kubelet's
   SIGTERM makes its worker hand the trial back, asserted from the trial's history);
5. and a SIGKILL on the node of the other's worker process: the monitor requeues its trial;
6. the Job completes with exactly max_evals trials DONE, distinct tids;
7. ``pulumi preview --expect-no-changes`` passes;
8. ``pulumi destroy`` leaves no object in the namespace (the namespace itself is gone).

``make test`` runs it on the tests' local cluster (tests/e2e/test_kube_stack.py), ``make kind-test``
on kind (scripts/kind-test.sh runs ``python -m tests.e2e.kube_scenario``). It reads the database
through ``kubectl port-forward`` with the credentials of the release's Secret, and prints timings.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import functools
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testbed.kube_server import wait_until

REPO = Path(__file__).resolve().parents[2]
JOB_STATE_NEW, JOB_STATE_RUNNING, JOB_STATE_DONE = 0, 1, 2

# SIGKILL of every process of a pod's worker container, found by the pod name the chart gives it in
# HYPERFLEET_POD_NAME; run on the node (this host for the local cluster, `docker exec` for kind).
# A process cannot SIGKILL its container's PID 1 from inside, so `kubectl exec` can't do it.
KILL_WORKER_SCRIPT = r"""
for p in /proc/[0-9]*; do
  if tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qx "HYPERFLEET_POD_NAME=$1" &&
     tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q 'hyperfleet worker'; then
    kill -9 "${p#/proc/}" && echo "${p#/proc/}"
  fi
done
"""


class PortForward:
    """One ``kubectl port-forward`` process, started and forwarding; its output is read as it comes (a
    pipe left unread would block kubectl once full: it writes a line for each connection)."""

    def __init__(self, argv: list[str]):
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = self.process.stdout.readline() or ""
        if "Forwarding from" not in first:
            self.stop()
            raise AssertionError(f"kubectl port-forward did not start: {first.strip()}")
        self._said: collections.deque[str] = collections.deque(maxlen=10)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if not line.startswith(("Handling connection", "Forwarding from")):
                self._said.append(line.strip())

    def said(self) -> str:
        """Its last lines other than the connection notices (once it ended)."""
        self._reader.join(5)
        return " | ".join(self._said) or "nothing"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Stack:
    """What the scenario needs to know of a stack, read from its ``Pulumi.<stack>.yaml``."""

    name: str
    namespace: str
    release: str
    exp_key: str
    max_evals: int

    @classmethod
    def read(cls, name: str) -> Stack:
        config = yaml.safe_load((REPO / f"Pulumi.{name}.yaml").read_text())["config"]
        (experiment,) = config["hyperfleet:experiments"]
        return cls(name=name, namespace=config["hyperfleet:kubernetes"]["namespace"], release=f"hyperfleet-{name}",
                   exp_key=experiment.get("exp_key", experiment["name"]), max_evals=int(experiment["max_evals"]))


@dataclass
class Scenario:
    stack: Stack
    pulumi: object  # run(*args, check=True) -> CompletedProcess (tests/pulumi_engine.py)
    kubeconfig: str | None
    context: str
    node_exec: list[str]  # argv prefix that runs a command on the node; [] = here
    timings: dict = field(default_factory=dict)

    # --- clients --------------------------------------------------------------------------------

    def kubectl_argv(self, *args: str) -> list[str]:
        """``kubectl ARGS`` against the stack's namespace, in its cluster."""
        kubeconfig = [f"--kubeconfig={self.kubeconfig}"] if self.kubeconfig else []
        return ["kubectl", *kubeconfig, f"--context={self.context}", f"--namespace={self.stack.namespace}", *args]

    def kubectl(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        argv = self.kubectl_argv(*args)
        result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
        if check:
            assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr.strip()}"
        return result

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    @functools.cached_property
    def api(self):
        """A client of the cluster's API in this process, for what the tests poll for minutes: a kubectl
        call costs a process start and its configuration's loading each time."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig, context=self.context)

    def listed(self, kind: str, selector: str) -> list[dict]:
        """The ``pods`` or ``deployments`` of the stack's namespace that ``selector`` selects, as kubectl's
        JSON shows them."""
        from kubernetes import client

        read = {"pods": client.CoreV1Api(self.api).list_namespaced_pod,
                "deployments": client.AppsV1Api(self.api).list_namespaced_deployment}[kind]
        return self.api.sanitize_for_serialization(read(self.stack.namespace, label_selector=selector).items)

    @contextlib.contextmanager
    def database(self, password: str | None = None):
        """The trials collection through ``kubectl port-forward`` to the release's Mongo Service (as the
        workers log in, or with ``password`` instead of theirs)."""
        import pymongo

        with self.port_forward(f"svc/{self.stack.release}-mongo", "mongo") as port:
            client = pymongo.MongoClient(self._mongo_url(port, password), serverSelectionTimeoutMS=10000)
            try:
                yield client.get_default_database()["jobs"]
            finally:
                client.close()

    @contextlib.contextmanager
    def port_forward(self, target: str, remote: str | int):
        """``kubectl port-forward TARGET PORT:REMOTE`` on a free local port, which it yields. kubectl ends
        the whole forward at the first error on one connection (a stream to the pod reset, seen on a loaded
        machine: the next query was refused): it is then started again on the same port, and what it said
        is printed."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        argv = self.kubectl_argv("port-forward", target, f"{port}:{remote}")
        forward = [PortForward(argv)]
        closing = threading.Event()

        def restart_when_it_ends():
            while not closing.wait(0.2):
                if forward[0].process.poll() is None:
                    continue
                print(f"kubectl port-forward {target} ended (exit {forward[0].process.returncode}): "
                      f"{forward[0].said()}; starting it again on port {port}", file=sys.stderr, flush=True)
                try:
                    forward[0] = PortForward(argv)
                except AssertionError as err:  # the port not free yet, the pod going: the next round tries again
                    print(err, file=sys.stderr, flush=True)

        keeper = threading.Thread(target=restart_when_it_ends, name=f"port-forward {target}", daemon=True)
        keeper.start()
        try:
            yield port
        finally:
            closing.set()
            keeper.join(30)
            forward[0].stop()

    def _mongo_url(self, port: int, password: str | None = None) -> str:
        """The workers' MONGO_URL, from their Deployment, pointed at the forwarded port."""
        import base64
        from urllib.parse import quote_plus, urlsplit, urlunsplit

        worker = self.get("deployment", f"{self.stack.release}-worker")
        env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
        secret = self.get("secret", env["MONGO_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"])["data"]
        value = {name: base64.b64decode(secret[env[name]["valueFrom"]["secretKeyRef"]["key"]]).decode()
                 for name in ("MONGO_USERNAME", "MONGO_PASSWORD")}
        template = urlsplit(env["MONGO_URL"]["value"])
        credentials = f"{quote_plus(value['MONGO_USERNAME'])}:{quote_plus(password or value['MONGO_PASSWORD'])}"
        return urlunsplit(template._replace(netloc=f"{credentials}@127.0.0.1:{port}"))

    # --- steps ----------------------------------------------------------------------------------

    def run(self) -> dict:
        started = time.monotonic()
        self.up_result = self.pulumi("up", "--yes", "--skip-preview")
        self.timings["pulumi up (all pods Ready)"] = time.monotonic() - started
        self.check_pods_ready_and_secure()
        with self.database() as jobs:
            self.wait_for_running_trial(jobs, started)
            self.strike_two_workers(jobs)
            self.wait_for_the_experiment(jobs)
        started = time.monotonic()
        self.pulumi("preview", "--expect-no-changes")
        self.timings["no-op preview"] = time.monotonic() - started
        started = time.monotonic()
        self.pulumi("destroy", "--yes", "--skip-preview")
        self.timings["pulumi destroy"] = time.monotonic() - started
        self.check_nothing_left()
        return self.timings

    def selector(self, component: str | None = None) -> str:
        """The label selector of the release's objects (of one component)."""
        selector = f"app.kubernetes.io/instance={self.stack.release}"
        if component:
            selector += f",app.kubernetes.io/component={component}"
        return selector

    def pods(self, component: str | None = None) -> list[dict]:
        return self.listed("pods", self.selector(component))

    def check_pods_ready_and_secure(self) -> None:
        for component in ("mongo", "worker", "monitor"):
            pods = [p for p in self.pods(component) if not p["metadata"].get("deletionTimestamp")]
            assert pods, f"no {component} pod"
            for pod in pods:
                name = pod["metadata"]["name"]
                conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
                assert conditions.get("Ready") == "True", f"{name} is not Ready: {pod['status']}"
                for status in pod["status"]["containerStatuses"]:
                    assert status["ready"] and status["restartCount"] == 0, f"{name}: {status}"
                spec = pod["spec"]
                assert spec["securityContext"]["runAsNonRoot"] is True, name
                for container in spec["containers"]:
                    context = container["securityContext"]
                    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
                    assert context["capabilities"]["drop"] == ["ALL"], name
                    if component == "monitor":  # its readiness probe is an HTTP check of its health endpoint
                        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"

    def wait_for_running_trial(self, jobs, started: float) -> None:
        wait_until(lambda: jobs.find_one({"exp_key": self.stack.exp_key, "state": JOB_STATE_RUNNING}), 300,
                   "a RUNNING trial")
        self.timings["pulumi up to a RUNNING trial"] = time.monotonic() - started
        wait_until(lambda: jobs.find_one({"exp_key": self.stack.exp_key, "state": JOB_STATE_DONE}), 300,
                   "a DONE trial")
        self.timings["pulumi up to the first DONE trial"] = time.monotonic() - started

    def live_pods_holding_trials(self, jobs, count: int) -> list[str]:
        """``count`` live worker pods that each hold a RUNNING trial at the same moment."""
        live = {p["metadata"]["name"] for p in self.pods("worker")
                if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"}

        def find():
            holding = {((doc.get("hyperfleet") or {}).get("worker") or {}).get("pod")
                       for doc in jobs.find({"exp_key": self.stack.exp_key, "state": JOB_STATE_RUNNING})}
            pods = sorted(holding & live)
            return pods[:count] if len(pods) >= count else None
        return wait_until(find, 120, f"RUNNING trials held by {count} live worker pods")

    def recovery_by(self, jobs, pod: str, since: datetime.datetime) -> dict | None:
        """The first hand-back or requeue, recorded from ``since`` on, of a trial that ``pod``'s worker
        held: the trial it held when the test struck, which may not be the one the test saw a moment
        before (a trial takes 2 s)."""
        for doc in jobs.find({"exp_key": self.stack.exp_key}):
            for entry in (doc.get("hyperfleet") or {}).get("history") or []:
                if ((entry.get("owner") or "").startswith(f"{pod}:") and entry["event"] in ("handed back", "requeued")
                        and entry["at"] >= since):
                    return entry
        return None

    @staticmethod
    def now() -> datetime.datetime:
        """What the history's ``at`` is compared with (naive UTC, as pymongo reads it), less a second of
        clock skew between this process and the cluster's."""
        return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(seconds=1)

    def strike_two_workers(self, jobs) -> None:
        """At once, while each holds a trial: delete one worker's pod (its worker hands the trial back on
        SIGTERM) and kill -9 another's worker process (the monitor requeues its trial). Both at once, so
        that the experiment still has trials running when the second strikes, however slow the machine."""
        deleted, killed = self.live_pods_holding_trials(jobs, 2)
        started, since = time.monotonic(), self.now()
        self.kubectl("delete", "pod", deleted, "--wait=false")
        result = subprocess.run([*self.node_exec, "sh", "-c", KILL_WORKER_SCRIPT, "kill-worker", killed],
                                capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout.split(), \
            f"no worker process of {killed} killed on the node: {result.stdout} {result.stderr}"
        entry = wait_until(lambda: self.recovery_by(jobs, deleted, since), 60,
                           f"the trial of the deleted pod {deleted} to be recovered")
        self.timings["pod deleted to trial back in the queue (worker's hand-back)"] = time.monotonic() - started
        assert entry["event"] == "handed back", f"the trial of {deleted} was not handed back by its worker: {entry}"
        entry = wait_until(lambda: self.recovery_by(jobs, killed, since), 60,
                           f"the trial of the killed worker of {killed} to be requeued")
        self.timings["worker killed to trial back in the queue (monitor)"] = time.monotonic() - started
        assert entry["event"] == "requeued", f"the trial of {killed} was not requeued by the monitor: {entry}"

    def wait_for_the_experiment(self, jobs) -> None:
        self.kubectl("wait", "--for=condition=complete", "job", "-l", f"hyperfleet.io/exp-key={self.stack.exp_key}",
                     "--timeout=600s", timeout=620)
        done = list(jobs.find({"exp_key": self.stack.exp_key, "state": JOB_STATE_DONE}, {"tid": 1}))
        tids = [d["tid"] for d in done]
        assert len(done) == self.stack.max_evals, f"{len(done)} trials DONE, not {self.stack.max_evals}"
        assert len(set(tids)) == len(tids), f"repeated tids: {sorted(tids)}"
        assert jobs.count_documents({"exp_key": self.stack.exp_key, "state": {"$ne": JOB_STATE_DONE}}) == 0

    def check_nothing_left(self) -> None:
        result = self.kubectl("get", "namespace", self.stack.namespace, check=False)
        assert result.returncode != 0 and "NotFound" in result.stderr, f"the namespace is still there: {result.stdout}"
        result = self.kubectl("get", "all,configmap,secret,pvc", "-o", "name", check=False)
        assert not result.stdout.strip(), f"left in the namespace: {result.stdout}"

    def diagnostics(self) -> str:
        """What went on in the namespace, for a failure's message."""
        parts = [self.kubectl("get", "pods,jobs,pvc", "-o", "wide", check=False).stdout,
                 self.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False).stdout[-3000:]]
        for component in ("monitor", "worker", "driver", "mongo"):
            parts.append(self.kubectl("logs", "-l", f"app.kubernetes.io/instance={self.stack.release},"
                                      f"app.kubernetes.io/component={component}", "--tail=20", "--prefix",
                                      check=False).stdout)
        return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="kind", help="the Pulumi stack (Pulumi.STACK.yaml)")
    parser.add_argument("--context", required=True, help="the kubeconfig context of the stack's cluster")
    parser.add_argument("--kubeconfig", help="default: KUBECONFIG or ~/.kube/config")
    parser.add_argument("--node-exec", default="", help="command prefix that runs a command on the node, "
                        "e.g. 'docker exec hyperfleet-control-plane' for kind; empty: this host")
    args = parser.parse_args(argv)

    def pulumi(*pargs: str, check: bool = True):
        result = subprocess.run(["pulumi", *pargs, "--stack", args.stack, "--non-interactive"], cwd=REPO,
                                capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(pargs)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    pulumi("stack", "select", "--create")
    scenario = Scenario(Stack.read(args.stack), pulumi, args.kubeconfig, args.context, shlex.split(args.node_exec))
    try:
        timings = scenario.run()
    except BaseException:
        print(scenario.diagnostics(), file=sys.stderr)
        pulumi("destroy", "--yes", check=False)
        raise
    for what, seconds in timings.items():
        print(f"{what}: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    sys.exit(main())
