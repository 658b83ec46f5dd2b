"""`pulumi up` of the Kubernetes target (stack kube-ci: the chart with values from the stack config) on
the tests' single-node cluster (testbed/kube_cluster), through the real engine and the real
pulumi-kubernetes provider of `make toolchain`, with real pods: the scenario of
tests/e2e/kube_scenario.py (the same one `make kind-test` runs on kind), plus what the stack config
must have changed in the objects, and the password kept out of Pulumi's state.
"""

from __future__ import annotations

import base64
import json

import pymongo
import pytest
import yaml

from tests.helpers import REPO
from tests.e2e.kube_scenario import Scenario, Stack
from tests.pulumi_engine import kube_stack

STACK = "kube-ci"
PASSPHRASE = "hyperfleet-kube-ci"  # the test stack's secrets protect nothing of value


@pytest.fixture
def pulumi(kube_cluster, tmp_path):
    yield from kube_stack(REPO, STACK, PASSPHRASE, tmp_path / "state", kube_cluster.kubeconfig)


class KubeCiScenario(Scenario):
    def check_pods_ready_and_secure(self) -> None:
        super().check_pods_ready_and_secure()
        # the stack config reached the objects
        worker = self.get("deployment", f"{self.stack.release}-worker")
        assert worker["spec"]["replicas"] == 2
        pod_spec = worker["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        assert container["image"] == "hyperfleet/runtime:test"
        assert container["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
        assert pod_spec["tolerations"][0]["key"] == "cloud.google.com/gke-spot"
        mongo = self.get("statefulset", f"{self.stack.release}-mongo")
        assert mongo["spec"]["template"]["spec"]["containers"][0]["image"] == "hyperfleet/test-mongo:test"
        claims = self.get("pvc", "-l", "app.kubernetes.io/component=mongo")["items"]
        assert [(c["status"]["phase"], c["spec"]["resources"]["requests"]["storage"]) for c in claims] == \
            [("Bound", "1Gi")]
        (job,) = self.get("jobs", "-l", f"hyperfleet.io/exp-key={self.stack.exp_key}")["items"]
        assert job["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
        # the password: generated, in the cluster's Secret, and only encrypted in Pulumi's state
        secret = self.get("secret", f"{self.stack.release}-mongo-auth")["data"]["password"]
        password = base64.b64decode(secret).decode()
        assert len(password) >= 24
        state = self.pulumi("stack", "export").stdout
        assert password not in state and secret not in state
        # nor in what `pulumi up` printed, the pods (their env takes it from the Secret), or their logs
        assert password not in self.up_result.stdout + self.up_result.stderr
        instance = f"app.kubernetes.io/instance={self.stack.release}"
        assert password not in json.dumps(self.get("pods", "-l", instance))
        logs = self.kubectl("logs", "-l", instance, "--all-containers", "--prefix", "--tail=-1",
                            "--max-log-requests=20").stdout
        assert logs and password not in logs
        # and the database checks it
        with self.database(password="not-the-password") as jobs:
            with pytest.raises(pymongo.errors.OperationFailure, match="(?i)authentication failed"):
                jobs.find_one()

    def wait_for_the_experiment(self, jobs) -> None:
        super().wait_for_the_experiment(jobs)
        # after the recovery steps, which need a trial still RUNNING: the experiment is over by now
        self.check_the_dashboard()

    def check_the_dashboard(self) -> None:
        """The monitor's dashboard through its ClusterIP Service, as NOTES.txt says to reach it."""
        import urllib.request

        from tests.helpers import wait_for

        assert self.get("service", f"{self.stack.release}-dashboard")["spec"]["type"] == "ClusterIP"
        with self.port_forward(f"svc/{self.stack.release}-dashboard", "dashboard") as port:
            def get(path):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                    return json.loads(response.read())
            assert get("/api/config") == {"actions": False, "read_token": False}
            # it shows what the database holds (within a refresh): the finished experiment
            wait_for(lambda: [(e["exp_key"], e["done"], e["complete"]) for e in get("/api/experiments")]
                     == [(self.stack.exp_key, self.stack.max_evals, True)], timeout=30, step=1)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_pulumi_up_runs_pods_survives_deleted_and_killed_workers_and_destroy_leaves_nothing(pulumi, kube_cluster):
    scenario = KubeCiScenario(Stack.read(STACK), pulumi, kube_cluster.kubeconfig, kube_cluster.context, node_exec=[])
    try:
        timings = scenario.run()
    except BaseException:
        print(scenario.diagnostics())
        raise
    print("\nkube-ci on the local cluster: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


def test_a_context_the_kubeconfig_lacks_fails_the_preview_naming_it(pulumi, kube_cluster, tmp_path):
    config = yaml.safe_load((REPO / f"Pulumi.{STACK}.yaml").read_text())
    config["config"]["hyperfleet:kubernetes"]["context"] = "no-such-context"
    config_file = tmp_path / "Pulumi.bad.yaml"
    config_file.write_text(yaml.safe_dump(config))
    result = pulumi("preview", "--config-file", str(config_file), check=False)
    assert result.returncode != 0
    assert ("hyperfleet:kubernetes.context: no context 'no-such-context' in the default kubeconfig "
            f"(KUBECONFIG or ~/.kube/config) (it has: {kube_cluster.context})") in result.stdout + result.stderr
