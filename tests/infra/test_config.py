"""The stack config model: defaults, and bad config rejected with a message naming the key."""

import pytest
import yaml

from hyperfleet.settings import MonitorSettings, WorkerSettings
from infra.config import ConfigError, MonitorConfig, WorkersConfig, parse_config
from tests.helpers import REPO, versions_env

EXPERIMENT = {"name": "demo", "objective": "hyperfleet.demo:branin", "algo": "tpe", "max_evals": 10,
              "space": {"x": {"uniform": [-5, 10]}, "y": {"uniform": [0, 15]}}}

INVALID = [
    ({"target": "nomad"}, "hyperfleet:target: Input should be 'docker', 'kubernetes' or 'gke'"),
    ({"tagret": "docker"}, "hyperfleet:tagret: unknown key"),
    ({"workers": {"replicas": -1}}, "hyperfleet:workers.replicas: Input should be greater than or equal to 0"),
    ({"workers": {"replica": 2}}, "hyperfleet:workers.replica: unknown key"),
    ({"workers": {"hosts": ["myhost:2375"]}}, "hyperfleet:workers.hosts: Docker hosts are unix://"),
    ({"workers": {"hosts": []}}, "hyperfleet:workers.hosts: List should have at least 1 item"),
    # GPUs on Docker hosts (docs/gpus.md)
    ({"workers": {"hosts": [{"engine": "unix:///a.sock", "gpus": [0, 1, 0]}]}},
     "hyperfleet:workers.hosts[0].gpus: GPU 0 is listed twice"),
    ({"workers": {"hosts": [{"engine": "unix:///a.sock", "gpus": [0, "0"]}]}},
     "hyperfleet:workers.hosts[0].gpus: GPU 0 is listed twice"),
    ({"workers": {"hosts": [{"engine": "unix:///a.sock", "gpus": [-1]}]}},
     "hyperfleet:workers.hosts[0].gpus: GPUs are indices (0, 1, …) or UUIDs (GPU-…), not -1"),
    ({"workers": {"hosts": [{"engine": "unix:///a.sock", "gpus": ["all"]}]}},
     "hyperfleet:workers.hosts[0].gpus: GPUs are indices (0, 1, …) or UUIDs (GPU-…), not all"),
    ({"workers": {"hosts": [{"engine": "unix:///a.sock", "gpu": [0]}]}}, "hyperfleet:workers.hosts[0].gpu: unknown key"),
    ({"workers": {"hosts": [{"gpus": [0]}]}}, "hyperfleet:workers.hosts[0].engine: required"),
    ({"workers": {"hosts": [{"engine": "gpu-1", "gpus": [0]}]}}, "hyperfleet:workers.hosts: Docker hosts are unix://"),
    ({"workers": {"hosts": ["unix:///a.sock", {"engine": "unix:///a.sock", "gpus": [0]}]}},
     "hyperfleet:workers.hosts: a Docker host is listed twice"),
    ({"workers": {"hosts": [{"engine": "unix:///a.sock", "gpus": [0]}], "trialsPerGpu": 0}},
     "hyperfleet:workers.trialsPerGpu: Input should be greater than or equal to 1"),
    ({"workers": {"trialsPerGpu": 2}}, "hyperfleet:workers.trialsPerGpu: no host of workers.hosts lists gpus"),
    ({"workers": {"hosts": [{"engine": "unix:///a.sock", "gpus": [0]}], "replicas": 2}},
     "hyperfleet:workers.replicas: every host of workers.hosts lists gpus"),
    ({"workers": {"resources": {"gpu": 1}}}, "hyperfleet:workers.resources.gpu: Kubernetes resources; on Docker hosts"),
    ({"target": "kubernetes", "workers": {"hosts": [{"engine": "unix:///a.sock", "gpus": [0]}]}},
     "hyperfleet:workers.hosts[0].gpus: Docker hosts' GPUs; on the kubernetes target request them with"),
    ({"target": "kubernetes", "workers": {"resources": {"gpu": -1}}},
     "hyperfleet:workers.resources.gpu: Input should be greater than or equal to 0"),
    ({"target": "kubernetes", "workers": {"resources": {"extended": {"fpga": 1}}}},
     "hyperfleet:workers.resources.extended: extended resources are named domain/name (e.g. amd.com/gpu), not fpga"),
    ({"target": "kubernetes", "workers": {"resources": {"extended": {"nvidia.com/gpu": 1}}}},
     "hyperfleet:workers.resources.extended: nvidia.com/gpu: write it as gpu"),
    ({"workers": {"hosts": ["unix:///a.sock", "ssh://gpu-1"]}}, "hyperfleet:mongo.advertiseHost: needed when"),
    ({"workers": {"hosts": ["unix:///a.sock", "ssh://gpu-1"]}, "mongo": {"advertiseHost": "10.0.0.5"}},
     "hyperfleet:mongo.publishPort: needed when"),
    ({"workers": {"hosts": ["unix:///a.sock", "ssh://gpu-1"]}, "mongo": {"advertiseHost": "10.0.0.5", "publishPort": 27017}},
     "hyperfleet:mongo.publishHost: 127.0.0.1 can't be reached from the other Docker hosts"),
    ({"workers": {"hosts": ["tcp://gpu-1:2375"]}}, "hyperfleet:workers.hosts: tcp://gpu-1:2375 would be reached without TLS"),
    ({"workers": {"hosts": ["tcp://10.0.0.7:2376"]}, "docker": {"tls": {"certPath": "/nonexistent"}}},
     "hyperfleet:docker.tls.certPath: /nonexistent lacks ca.pem, cert.pem, key.pem"),
    ({"docker": {"ssh": {"identityFile": "/nonexistent/id"}}}, "hyperfleet:docker.ssh.identityFile: no file /nonexistent/id"),
    ({"docker": {"allowPlainTCP": True}}, "hyperfleet:docker.allowPlainTCP: unknown key"),
    ({"mongo": {"allowPlaintext": True}}, "hyperfleet:mongo.allowPlaintext: Mongo is not published beyond this machine"),
    ({"mongo": {"allowPlaintext": True, "publishPort": 27017}},
     "hyperfleet:mongo.allowPlaintext: Mongo is not published beyond this machine"),
    ({"target": "kubernetes", "mongo": {"allowPlaintext": True}},
     "hyperfleet:mongo.allowPlaintext: the kubernetes target serves Mongo on the cluster's own Service"),
    ({"mongo": {"allowPlainText": True}}, "hyperfleet:mongo.allowPlainText: unknown key"),
    ({"mongo": {"allowPlaintext": "maybe"}}, "hyperfleet:mongo.allowPlaintext: Input should be a valid boolean"),
    ({"workers": {"resources": {"memory": "lots"}}}, "hyperfleet:workers.resources.memory: a memory"),
    ({"workers": {"resources": {"cpu": "2 cores"}}}, "hyperfleet:workers.resources.cpu: a CPU"),
    ({"workers": {"env": {"1BAD": "x"}}}, "hyperfleet:workers.env: not a variable name: 1BAD"),
    ({"workers": {"heartbeatSeconds": 0}}, "hyperfleet:workers.heartbeatSeconds: Input should be greater than 0"),
    ({"mongo": {"publishPort": 70000}}, "hyperfleet:mongo.publishPort: Input should be less than or equal to 65535"),
    ({"mongo": {"authMechanism": "MAGIC"}}, "hyperfleet:mongo.authMechanism: Input should be"),
    ({"monitor": {"graceSeconds": 1, "intervalSeconds": 2}}, "hyperfleet:monitor: graceSeconds must be longer"),
    ({"monitor": {"policy": "ignore"}}, "hyperfleet:monitor.policy: Input should be 'requeue' or 'error'"),
    ({"target": "kubernetes", "workers": {"autoscaling": {"mode": "hpa"}}},
     "hyperfleet:workers.autoscaling.mode: Input should be 'fixed', 'keda' or 'cpu'"),
    ({"target": "kubernetes", "workers": {"autoscaling": {"mode": "keda", "minReplicas": 5, "maxReplicas": 2}}},
     "hyperfleet:workers.autoscaling: minReplicas (5) is above maxReplicas (2)"),
    ({"target": "kubernetes", "workers": {"autoscaling": {"mode": "keda", "maxReplicas": 0}}},
     "hyperfleet:workers.autoscaling.maxReplicas: Input should be greater than or equal to 1"),
    ({"target": "kubernetes", "workers": {"autoscaling": {"mode": "keda", "trialsPerWorker": 0}}},
     "hyperfleet:workers.autoscaling.trialsPerWorker: Input should be greater than 0"),
    ({"target": "kubernetes", "workers": {"autoscaling": {"mode": "keda", "maxReplicas": 4, "fallbackReplicas": 5}}},
     "hyperfleet:workers.autoscaling: fallbackReplicas (5) is above maxReplicas (4)"),
    ({"target": "kubernetes", "workers": {"autoscaling": {"mode": "keda", "fallbackReplicas": 0}}},
     "hyperfleet:workers.autoscaling.fallbackReplicas: Input should be greater than or equal to 1"),
    ({"target": "kubernetes", "workers": {"autoscaling": {"mode": "keda", "fallbackFailureThreshold": -1}}},
     "hyperfleet:workers.autoscaling.fallbackFailureThreshold: Input should be greater than or equal to 0"),
    ({"target": "kubernetes", "workers": {"autoscaling": {"mode": "cpu"}}},
     "hyperfleet:workers.autoscaling: minReplicas: a CPU HorizontalPodAutoscaler can't scale to 0"),
    ({"target": "kubernetes", "workers": {"autoscaling": {"mode": "keda"}}, "monitor": {"enabled": False}},
     "hyperfleet:workers.autoscaling.mode: keda reads the monitor's open-trials gauge"),
    ({"workers": {"autoscaling": {"mode": "keda"}}}, "hyperfleet:workers.autoscaling.mode: the docker target runs"),
    ({"target": "gke"}, "hyperfleet:gke: needed when target is gke"),
    ({"target": "gke", "gke": {"project": "p"}}, "hyperfleet:gke.region: required"),
    ({"target": "gke", "gke": {"region": "europe-west1"}}, "hyperfleet:gke.project: required"),
    ({"target": "kubernetes", "images": {"build": True}}, "hyperfleet:images.build: the kubernetes target runs"),
    ({"experiments": [{**EXPERIMENT, "objective": {"image": "me/objective:1", "node_selector": {"gpu": "a100"}}}]},
     "hyperfleet:experiments[0].objective.node_selector: only trial pods (kubernetes and gke targets) honour it"),
    ({"target": "kubernetes", "experiments": [{**EXPERIMENT, "objective": {
        "image": "me/objective:1", "tolerations": [{"key": "gpu", "operator": "Sometimes"}]}}]},
     "hyperfleet:experiments[0].objective.tolerations.0.operator: Input should be 'Exists' or 'Equal'"),
    ({"images": {"build": "sometimes"}}, "hyperfleet:images.build: Input should be a valid boolean"),
    ({"experiments": [{**EXPERIMENT, "max_evals": 0}]},
     "hyperfleet:experiments[0].max_evals: Input should be greater than or equal to 1"),
    ({"experiments": [{**EXPERIMENT, "space": {"lr": {"loguniform": [0, 1]}}}]},
     "hyperfleet:experiments[0].space.lr.loguniform: needs [low, high] with 0 < low < high"),
    ({"experiments": [EXPERIMENT, EXPERIMENT]}, "hyperfleet:experiments[1].name: the exp_key demo is used twice"),
    ({"experiments": {"name": "x"}}, "hyperfleet:experiments: Input should be a valid list"),
]


@pytest.mark.parametrize("raw,message", INVALID, ids=[m.split(":")[1].split(" ")[0] for _, m in INVALID])
def test_invalid_config_is_rejected_naming_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems


def test_plain_tcp_is_for_this_machine_or_said_explicitly_and_each_host_kind_gets_its_access(tmp_path):
    assert parse_config({"workers": {"hosts": ["tcp://127.0.0.1:2375"]}}).docker.access("tcp://127.0.0.1:2375").cert_path is None
    plain = parse_config({"workers": {"hosts": ["tcp://gpu-1:2375"]}, "docker": {"allowPlainTcp": True}})
    assert plain.workers.hosts == ["tcp://gpu-1:2375"] and plain.docker.access("tcp://gpu-1:2375").cert_path is None
    with pytest.raises(ConfigError, match="allowPlainTcp"):
        parse_config({"workers": {"hosts": ["tcp://gpu-1:2375"]}})
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    (tmp_path / "id").write_text("key")
    config = parse_config({"workers": {"hosts": ["unix:///var/run/docker.sock", "tcp://gpu-1:2376", "ssh://me@gpu-2:2222"]},
                           "mongo": {"advertiseHost": "10.0.0.5", "publishPort": 27017, "publishHost": "10.0.0.5"},
                           "docker": {"tls": {"certPath": str(tmp_path)},
                                      "ssh": {"identityFile": str(tmp_path / "id"), "knownHostsFile": str(tmp_path / "id")}}})
    assert config.docker.access("tcp://gpu-1:2376").cert_path == str(tmp_path)
    assert config.docker.access("tcp://gpu-1:2376").base_url() == "https://gpu-1:2376"
    assert config.docker.access("ssh://me@gpu-2:2222").ssh_options == (
        "-i", str(tmp_path / "id"), "-o", f"UserKnownHostsFile={tmp_path / 'id'}", "-o", "StrictHostKeyChecking=yes")
    assert config.docker.access("unix:///var/run/docker.sock") == config.docker.access("unix:///var/run/docker.sock").__class__(
        "unix:///var/run/docker.sock")


def test_defaults_are_a_local_docker_stack():
    config = parse_config({})
    assert config.target == "docker" and config.workers.hosts == ["unix:///var/run/docker.sock"]
    assert config.mongo.image == "mongo:7.0" and config.mongo.publish_port is None
    assert config.worker_image == "hyperfleet/runtime:0.1.0" and config.images.base_image == versions_env()["PYTHON_BASE_IMAGE"]


def test_resources_convert_to_docker_limits():
    config = parse_config({"workers": {"resources": {"cpu": "500m", "memory": "1Gi"}}})
    assert config.workers.resources.docker_cpus() == 0.5 and config.workers.resources.docker_memory_mb() == 1024


@pytest.mark.parametrize("stack,target", [("dev", "docker"), ("ci", "docker"), ("kind", "kubernetes"),
                                          ("kube-ci", "kubernetes")])
def test_committed_stack_configs_are_valid(stack, target):
    raw = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
    config = parse_config({k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("hyperfleet:")})
    assert config.target == target and config.experiment_specs()


def test_kind_is_the_kubernetes_target_under_its_former_name():
    """Stacks written before the target was called kubernetes keep working, and mean the same."""
    assert parse_config({"target": "kubernetes"}) == parse_config({"target": "kubernetes"})
    assert parse_config({"target": "kubernetes"}).target == "kubernetes"
    with pytest.raises(ConfigError, match="the kubernetes target runs"):
        parse_config({"target": "kubernetes", "images": {"build": True}})


def test_the_stack_configs_defaults_are_the_settings_values():
    """tests/unit/test_defaults.py checks the other copies."""
    assert WorkersConfig().heartbeat_seconds == WorkerSettings.heartbeat_seconds
    assert WorkersConfig().poll_interval_seconds == WorkerSettings.poll_interval_seconds
    assert WorkersConfig().subprocesses == WorkerSettings.use_subprocesses
    for field in ("grace_seconds", "interval_seconds", "policy", "max_retries"):
        assert getattr(MonitorConfig(), field) == getattr(MonitorSettings, field), field


@pytest.mark.parametrize("raw,message", [
    ({"dashboard": {"enabled": True}, "monitor": {"enabled": False}}, "hyperfleet:dashboard.enabled: the monitor serves"),
    ({"dashboard": {"port": 0}}, "hyperfleet:dashboard.port:"),
    ({"dashboard": {"tokken": "x"}}, "hyperfleet:dashboard.tokken: unknown key"),
    ({"dashboard": {"serviceType": "NodePort"}}, "hyperfleet:dashboard.serviceType: a Kubernetes Service's type"),
    ({"target": "kubernetes", "dashboard": {"serviceType": "Ingress"}}, "hyperfleet:dashboard.serviceType: Input should be"),
    ({"dashboard": {"readToken": "maybe"}}, "hyperfleet:dashboard.readToken: Input should be a valid boolean"),
    ({"notify": {"webhooks": [{"url": "ftp://x"}]}}, "hyperfleet:notify.webhooks[0].url:"),
    ({"notify": {"webhooks": []}}, "hyperfleet:notify.webhooks:"),
])
def test_bad_dashboard_and_notify_config_names_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert message in str(err.value), str(err.value)


def test_autoscaling_defaults_are_the_charts_and_map_to_its_values():
    from infra.kubernetes.values import chart_values

    chart = yaml.safe_load((REPO / "charts/hyperfleet/values.yaml").read_text())["workers"]["autoscaling"]
    config = parse_config({"target": "kubernetes"})
    assert chart_values(config, "s")["workers"]["autoscaling"] == chart
    config = parse_config({"target": "kubernetes", "workers": {"autoscaling": {"mode": "keda", "maxReplicas": 4,
                                                                          "cooldownSeconds": 15}}})
    assert chart_values(config, "s")["workers"]["autoscaling"] == {**chart, "mode": "keda", "maxReplicas": 4,
                                                                   "cooldownSeconds": 15}
    assert chart["fallbackReplicas"] is None  # the chart's default: maxReplicas
    config = parse_config({"target": "kubernetes", "workers": {"autoscaling": {
        "mode": "keda", "maxReplicas": 4, "fallbackReplicas": 2, "fallbackFailureThreshold": 5}}})
    assert chart_values(config, "s")["workers"]["autoscaling"] == {**chart, "mode": "keda", "maxReplicas": 4,
                                                                   "fallbackReplicas": 2, "fallbackFailureThreshold": 5}


@pytest.mark.parametrize("target,dashboard,on", [
    ("docker", {}, False),
    ("docker", {"publishHost": "localhost"}, False),
    ("docker", {"publishHost": "::1"}, False),
    ("docker", {"publishHost": "0.0.0.0"}, True),
    ("docker", {"publishHost": "192.0.2.7"}, True),
    ("docker", {"publishHost": "0.0.0.0", "readToken": False}, False),
    ("docker", {"readToken": True}, True),
    ("kubernetes", {}, False),
    ("kubernetes", {"serviceType": "NodePort"}, True),
    ("kubernetes", {"serviceType": "LoadBalancer"}, True),
    ("kubernetes", {"serviceType": "LoadBalancer", "readToken": False}, False),
    ("kubernetes", {"readToken": True}, True),
])
def test_the_dashboards_reads_need_the_token_when_published_beyond_loopback_unless_told(target, dashboard, on):
    from infra.config import check_dashboard_token
    from infra.kubernetes.values import chart_values

    config = parse_config({"target": target, "dashboard": {"enabled": True, **dashboard}})
    assert config.dashboard.reads_need_token(target) is on
    if target == "kubernetes":
        assert chart_values(config, "s")["dashboard"]["readToken"] is on
    check_dashboard_token(config, "a token")  # with a token: fine either way
    if on:
        with pytest.raises(ConfigError) as err:
            check_dashboard_token(config, None)
        assert "hyperfleet:dashboardToken:" in str(err.value) and "readToken: false" in str(err.value)
    else:
        check_dashboard_token(config, None)


def test_the_plain_list_of_hosts_stays_valid_beside_hosts_with_gpus():
    plain = parse_config({"workers": {"hosts": ["unix:///var/run/docker.sock"]}})
    assert plain.workers.engines == ["unix:///var/run/docker.sock"] and plain.workers.host_gpus == [[]]
    mixed = parse_config({"mongo": {"advertiseHost": "10.0.0.5", "publishPort": 27017, "publishHost": "0.0.0.0"},
                          "workers": {"trialsPerGpu": 2, "hosts": [
                              "unix:///var/run/docker.sock", {"engine": "ssh://gpu-1", "gpus": [0, 1]},
                              {"engine": "ssh://gpu-2", "gpus": ["GPU-3a23c669-1f69"]}, {"engine": "ssh://cpu-1"}]}})
    assert mixed.workers.engines == ["unix:///var/run/docker.sock", "ssh://gpu-1", "ssh://gpu-2", "ssh://cpu-1"]
    assert mixed.workers.host_gpus == [[], ["0", "1"], ["GPU-3a23c669-1f69"], []]
    assert mixed.workers.trials_per_gpu == 2


def test_kubernetes_workers_gpus_and_extended_resources_become_their_limits():
    from infra.kubernetes.values import chart_values

    config = parse_config({"target": "kubernetes", "workers": {"resources": {
        "memory": "4Gi", "gpu": 1, "extended": {"amd.com/gpu": 2}}}})
    assert chart_values(config, "s")["workers"]["resources"] == {
        "requests": {"memory": "4Gi"}, "limits": {"memory": "4Gi", "nvidia.com/gpu": 1, "amd.com/gpu": 2}}
