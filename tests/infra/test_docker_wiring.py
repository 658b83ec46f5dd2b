"""The Docker target's wiring, with Pulumi's mocks (no engine): what each component creates and how."""

import json
import pulumi

from hyperfleet.contract import DRIVER_SPEC_PATH, MONGO_TLS_CA_FILE, STACK_CONNECT_TIMEOUT_SECONDS
from infra.certificates import generate
from infra.config import parse_config

EXPERIMENT = {"name": "demo", "objective": "hyperfleet.demo:branin", "algo": "rand", "max_evals": 5,
              "space": {"x": {"uniform": [-5, 10]}, "y": {"uniform": [0, 15]}}}


class Mocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.created = []

    def new_resource(self, args):
        self.created.append(args)
        outputs = dict(args.inputs)
        if args.typ == "pulumi-python:dynamic:Resource" and "names" in args.inputs:
            # the certificates: made by their provider's own code, for the names the program passed
            outputs.update(generate(args.inputs["common_name"], args.inputs["names"]))
        elif args.typ == "pulumi-python:dynamic:Resource":
            outputs["result"] = "s3cr3t/pw"
        outputs.setdefault("name", args.name)
        return [f"{args.name}-id", outputs]

    def call(self, args):
        return {}


def deploy(raw: dict, stack: str = "t"):
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="hyperfleet", stack=stack, preview=False)
    from infra.docker import target

    outputs = target.deploy(parse_config(raw), stack)
    resolved(pulumi.Output.all(*outputs.values()))  # lets every registration reach the mocks
    return mocks, outputs


def resolved(output):
    """The value of an Output under mocks (the mock engine resolves them on its loop)."""
    box = {}

    @pulumi.runtime.test
    def grab():
        return pulumi.Output.from_input(output).apply(lambda v: box.setdefault("v", v))

    grab()
    return box["v"]


def by_type(mocks, typ):
    return [r for r in mocks.created if r.typ == typ]


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # how the engine protocol marks a secret value


def env_of(resource) -> dict:
    """The container's environment, which must reach the engine as a secret (it holds the password)."""
    envs = resource.inputs["envs"]
    assert isinstance(envs, dict) and SECRET_SIG in envs, f"{resource.name}: envs are not secret"
    return dict(e.split("=", 1) for e in envs["value"])


def label_map(resource) -> dict:
    return {entry["label"]: entry["value"] for entry in resource.inputs["labels"]}


def test_default_stack_creates_mongo_workers_monitor_and_one_driver_per_experiment():
    mocks, outputs = deploy({"images": {"build": False}, "experiments": [EXPERIMENT]})
    url = resolved(outputs["mongo_url"])
    containers = {r.inputs["name"]: r for r in by_type(mocks, "docker:index/container:Container")}
    assert sorted(containers) == ["hyperfleet-t-driver-demo", "hyperfleet-t-mongo", "hyperfleet-t-monitor",
                                  "hyperfleet-t-worker-0", "hyperfleet-t-worker-1"]
    assert url == "mongodb://hyperfleet:s3cr3t%2Fpw@hyperfleet-t-mongo:27017/hyperfleet?authSource=admin"
    mongo = containers["hyperfleet-t-mongo"]
    assert env_of(mongo) == {"MONGO_INITDB_ROOT_USERNAME": "hyperfleet", "MONGO_INITDB_ROOT_PASSWORD": "s3cr3t/pw"}
    assert mongo.inputs.get("ports", []) == []  # no host port unless asked
    assert mongo.inputs["volumes"][0]["containerPath"] == "/data/db"
    [volume] = by_type(mocks, "docker:index/volume:Volume")
    assert volume.inputs["name"] == "hyperfleet-t-mongo-data"
    for name in ("hyperfleet-t-worker-0", "hyperfleet-t-worker-1"):
        worker = containers[name]
        env = env_of(worker)
        assert env["MONGO_URL"] == url and env["HYPERFLEET_CONTAINER_NAME"] == name
        assert worker.inputs["command"] == ["worker", "--connect-timeout-seconds", str(STACK_CONNECT_TIMEOUT_SECONDS),
                                            "--heartbeat-seconds", "2.0",
                                            "--poll-interval", "0.05", "--no-subprocesses",
                                            "--alive-file", "/tmp/hyperfleet-alive"]
        assert worker.inputs["healthcheck"]["tests"] == ["CMD", "hyperfleet", "alive", "/tmp/hyperfleet-alive"]
        assert worker.inputs["restart"] == "unless-stopped"
        assert label_map(worker)["hyperfleet.role"] == "worker" and not worker.inputs.get("volumes")
    monitor = containers["hyperfleet-t-monitor"]
    assert monitor.inputs["command"][:3] == ["monitor", "--liveness", "docker"]
    assert env_of(monitor) == {"MONGO_URL": url} and monitor.inputs["volumes"][0]["readOnly"] is True
    driver = containers["hyperfleet-t-driver-demo"]
    assert driver.inputs["command"][:3] == ["run", DRIVER_SPEC_PATH, "--no-progress"]
    assert driver.inputs["uploads"][0]["file"] == DRIVER_SPEC_PATH
    assert driver.inputs["mustRun"] is False and driver.inputs["restart"] == "on-failure"
    assert '"max_evals": 5' in driver.inputs["uploads"][0]["content"]
    for resource in containers.values():
        assert label_map(resource)["hyperfleet.stack"] == "t"
        assert resource.inputs["networksAdvanced"][0]["name"] == "hyperfleet-t"
    assert resolved(outputs["experiments"]) == ["demo"]


def test_mongo_url_is_a_secret_output():
    _, outputs = deploy({"images": {"build": False}})
    from pulumi.runtime.sync_await import _sync_await

    assert _sync_await(outputs["mongo_url"].is_secret()) is True
    assert outputs["status_command"] == "docker exec hyperfleet-t-monitor hyperfleet status"


def test_workers_round_robin_over_docker_hosts_with_the_advertised_mongo_address():
    raw = {"images": {"build": False}, "mongo": {"publishPort": 27017, "publishHost": "0.0.0.0",
                                                 "advertiseHost": "10.0.0.5"},
           "workers": {"replicas": 5, "hosts": ["unix:///var/run/docker.sock", "ssh://ops@gpu-1"]}}
    mocks, _ = deploy(raw)
    providers = {r.name: r.inputs["host"] for r in by_type(mocks, "pulumi:providers:docker")}
    assert providers == {"docker-0": "unix:///var/run/docker.sock", "docker-1": "ssh://ops@gpu-1"}
    workers = sorted((r for r in by_type(mocks, "docker:index/container:Container")
                      if label_map(r)["hyperfleet.role"] == "worker"), key=lambda r: r.inputs["name"])
    engines = [env_of(w)["HYPERFLEET_DOCKER_ENGINE"] for w in workers]
    assert engines == ["unix:///var/run/docker.sock", "ssh://ops@gpu-1"] * 2 + ["unix:///var/run/docker.sock"]
    assert [w.provider.split("::")[3] for w in workers] == \
        ["docker-0", "docker-1", "docker-0", "docker-1", "docker-0"]
    assert "@10.0.0.5:27017/" in env_of(workers[1])["MONGO_URL"]
    assert "@hyperfleet-t-mongo:27017/" in env_of(workers[0])["MONGO_URL"]
    mongo = next(r for r in by_type(mocks, "docker:index/container:Container") if r.inputs["name"].endswith("mongo"))
    assert [{key: port.get(key) for key in ("internal", "external", "ip")} for port in mongo.inputs["ports"]] == \
        [{"internal": 27017, "external": 27017, "ip": "0.0.0.0"}]
    assert len(by_type(mocks, "docker:index/network:Network")) == 2


def test_hosts_with_gpus_get_one_worker_per_gpu_slot_pinned_by_a_device_request_and_the_rest_round_robin():
    raw = {"images": {"build": False}, "mongo": {"publishPort": 27017, "publishHost": "0.0.0.0",
                                                 "advertiseHost": "10.0.0.5"},
           "workers": {"replicas": 3, "trialsPerGpu": 2,
                       "hosts": ["unix:///var/run/docker.sock", {"engine": "ssh://ops@gpu-1", "gpus": [0, 1]},
                                 {"engine": "ssh://ops@gpu-2", "gpus": ["GPU-3a23c669-1f69"]}]}}
    mocks, _ = deploy(raw)
    workers = {r.inputs["name"]: r for r in by_type(mocks, "docker:index/container:Container")
               if label_map(r)["hyperfleet.role"] == "worker"}
    placed = {name: (env_of(w)["HYPERFLEET_DOCKER_ENGINE"], w.inputs.get("gpus"), label_map(w).get("hyperfleet.gpu"),
                     w.inputs["command"][w.inputs["command"].index("--gpu") + 1] if "--gpu" in w.inputs["command"] else None)
              for name, w in workers.items()}
    home, gpu1, gpu2 = "unix:///var/run/docker.sock", "ssh://ops@gpu-1", "ssh://ops@gpu-2"
    uuid = "GPU-3a23c669-1f69"
    assert placed == {  # the plain host keeps the replicas, under their old names; each GPU gets trialsPerGpu workers
        "hyperfleet-t-worker-0": (home, None, None, None), "hyperfleet-t-worker-1": (home, None, None, None),
        "hyperfleet-t-worker-2": (home, None, None, None),
        "hyperfleet-t-worker-h1-gpu0-0": (gpu1, "device=0", "0", "0"),
        "hyperfleet-t-worker-h1-gpu0-1": (gpu1, "device=0", "0", "0"),
        "hyperfleet-t-worker-h1-gpu1-0": (gpu1, "device=1", "1", "1"),
        "hyperfleet-t-worker-h1-gpu1-1": (gpu1, "device=1", "1", "1"),
        f"hyperfleet-t-worker-h2-gpu{uuid}-0": (gpu2, f"device={uuid}", uuid, uuid),
        f"hyperfleet-t-worker-h2-gpu{uuid}-1": (gpu2, f"device={uuid}", uuid, uuid)}
    assert [w.provider.split("::")[3] for n, w in sorted(workers.items()) if "gpu1-" in n] == ["docker-1", "docker-1"]
    assert not any(w.inputs.get("runtime") for w in workers.values())  # device requests, not the nvidia runtime


def test_with_gpus_on_every_host_replicas_make_no_plain_workers():
    raw = {"images": {"build": False}, "workers": {"hosts": [{"engine": "unix:///var/run/docker.sock", "gpus": [0]}]}}
    mocks, _ = deploy(raw)
    assert sorted(r.inputs["name"] for r in by_type(mocks, "docker:index/container:Container")
                  if label_map(r)["hyperfleet.role"] == "worker") == ["hyperfleet-t-worker-h0-gpu0-0"]


def test_container_objectives_give_workers_the_engine_socket():
    experiment = {**EXPERIMENT, "objective": {"image": "my/trainer:1"}}
    mocks, _ = deploy({"images": {"build": False}, "experiments": [experiment]})
    worker = next(r for r in by_type(mocks, "docker:index/container:Container")
                  if r.inputs["name"] == "hyperfleet-t-worker-0")
    assert worker.inputs["volumes"] == [{"hostPath": "/var/run/docker.sock", "containerPath": "/var/run/docker.sock"}]


def test_building_the_runtime_image_from_images_runtime():
    mocks, _ = deploy({"images": {"build": True, "baseImage": "hyperfleet/base:bookworm"}})
    [image] = by_type(mocks, "docker:index/image:Image")
    assert image.inputs["imageName"] == "hyperfleet/runtime:0.1.0" and image.inputs["skipPush"] is True
    assert image.inputs["build"]["dockerfile"].endswith("images/runtime/Dockerfile")
    assert image.inputs["build"]["args"] == {"BASE_IMAGE": "hyperfleet/base:bookworm"}


def test_monitor_can_be_turned_off():
    mocks, _ = deploy({"images": {"build": False}, "monitor": {"enabled": False}})
    names = [r.inputs["name"] for r in by_type(mocks, "docker:index/container:Container")]
    assert "hyperfleet-t-monitor" not in names and len(names) == 3


def test_the_dashboard_is_published_on_localhost_with_its_token_kept_secret():
    pulumi.runtime.set_all_config({"hyperfleet:dashboardToken": "t0k3n"}, secret_keys=["hyperfleet:dashboardToken"])
    try:
        mocks, outputs = deploy({"dashboard": {"enabled": True, "port": 9100}, "experiments": [EXPERIMENT]})
    finally:
        pulumi.runtime.set_all_config({})
    [monitor] = [r for r in by_type(mocks, "docker:index/container:Container") if r.name == "monitor-container"]
    command = monitor.inputs["command"]
    assert command[command.index("--dashboard-port") + 1] == "8090"
    assert monitor.inputs["ports"] == [{"internal": 8090, "external": 9100, "ip": "127.0.0.1"}]
    assert env_of(monitor)["HYPERFLEET_MONITOR_DASHBOARD_TOKEN"] == "t0k3n"  # env_of: only as a secret
    assert resolved(outputs["dashboard_url"]) == "http://127.0.0.1:9100/"
    assert "t0k3n" not in repr(resolved(pulumi.Output.all(*[v for k, v in outputs.items() if k != "mongo_url"])))


def test_without_a_token_the_dashboard_runs_with_its_actions_off_and_off_by_default_it_is_not_published():
    mocks, _ = deploy({"dashboard": {"enabled": True}, "experiments": [EXPERIMENT]})
    [monitor] = [r for r in by_type(mocks, "docker:index/container:Container") if r.name == "monitor-container"]
    assert "--dashboard-port" in monitor.inputs["command"]
    assert "HYPERFLEET_MONITOR_DASHBOARD_TOKEN" not in env_of(monitor)
    mocks, outputs = deploy({"experiments": [EXPERIMENT]})
    [monitor] = [r for r in by_type(mocks, "docker:index/container:Container") if r.name == "monitor-container"]
    assert "--dashboard-port" not in monitor.inputs["command"] and not monitor.inputs.get("ports")
    assert "dashboard_url" not in outputs


def test_published_beyond_this_machine_the_dashboards_reads_need_the_token():
    def monitor_command(dashboard: dict) -> list[str]:
        mocks, _ = deploy({"dashboard": {"enabled": True, **dashboard}, "experiments": [EXPERIMENT]})
        [monitor] = [r for r in by_type(mocks, "docker:index/container:Container") if r.name == "monitor-container"]
        return monitor.inputs["command"]

    pulumi.runtime.set_all_config({"hyperfleet:dashboardToken": "t0k3n"}, secret_keys=["hyperfleet:dashboardToken"])
    try:
        assert "--dashboard-read-token" not in monitor_command({})  # 127.0.0.1: this machine only
        assert "--dashboard-read-token" in monitor_command({"publishHost": "0.0.0.0"})
        assert "--dashboard-read-token" in monitor_command({"publishHost": "192.0.2.7"})
        assert "--dashboard-read-token" not in monitor_command({"publishHost": "0.0.0.0", "readToken": False})
        assert "--dashboard-read-token" in monitor_command({"readToken": True})
        assert all("t0k3n" not in arg for arg in monitor_command({"readToken": True}))
    finally:
        pulumi.runtime.set_all_config({})


def test_the_stacks_notify_goes_to_every_experiment_without_its_own():
    import json

    hook = {"webhooks": [{"url": "https://hooks.example/x"}], "stalled_after_minutes": 10}
    own = {**EXPERIMENT, "name": "own", "notify": {"webhooks": [{"url": "https://other.example/y", "format": "json"}]}}
    mocks, _ = deploy({"notify": hook, "experiments": [EXPERIMENT, own]})
    drivers = {r.name: json.loads(r.inputs["uploads"][0]["content"])
               for r in by_type(mocks, "docker:index/container:Container") if r.name.endswith("-driver")}
    assert drivers["experiment-demo-driver"]["notify"]["webhooks"][0]["url"] == "https://hooks.example/x"
    assert drivers["experiment-own-driver"]["notify"]["webhooks"][0]["url"] == "https://other.example/y"


def test_ssh_and_tls_hosts_get_their_access_and_the_monitor_watches_them_with_secret_keys(tmp_path):
    for name in ("ca.pem", "cert.pem"):
        (tmp_path / name).write_text(f"PUBLIC {name}")
    (tmp_path / "key.pem").write_text("TLS-PRIVATE-KEY")
    (tmp_path / "id").write_text("SSH-PRIVATE-KEY")
    (tmp_path / "known_hosts").write_text("gpu-1 ssh-ed25519 AAAA\n")
    hosts = ["unix:///var/run/docker.sock", "ssh://ops@gpu-1", "tcp://gpu-2:2376"]
    raw = {"images": {"build": False}, "workers": {"replicas": 3, "hosts": hosts},
           "mongo": {"publishPort": 27017, "publishHost": "0.0.0.0", "advertiseHost": "10.0.0.5"},
           "docker": {"tls": {"certPath": str(tmp_path)},
                      "ssh": {"identityFile": str(tmp_path / "id"), "knownHostsFile": str(tmp_path / "known_hosts")}}}
    mocks, _ = deploy(raw)
    providers = {r.inputs["host"]: r.inputs for r in by_type(mocks, "pulumi:providers:docker")}
    assert "sshOpts" not in providers[hosts[0]] and "certPath" not in providers[hosts[0]]
    assert json.loads(providers[hosts[1]]["sshOpts"]) == [
        "-i", str(tmp_path / "id"), "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes"]
    assert providers[hosts[2]]["certPath"] == str(tmp_path)
    monitor = next(r for r in by_type(mocks, "docker:index/container:Container") if label_map(r)["hyperfleet.role"] == "monitor")
    command = monitor.inputs["command"]
    assert command[command.index("--docker-engine-id") + 1] == hosts[0]
    assert [command[i + 1] for i, a in enumerate(command) if a == "--docker-engine"] == hosts[1:]
    assert command[command.index("--docker-cert-path") + 1] == "/etc/hyperfleet/docker-tls"
    # the keys make the uploads a secret (Pulumi marks the whole list): encrypted in the state, hidden in output
    assert isinstance(monitor.inputs["uploads"], dict) and SECRET_SIG in monitor.inputs["uploads"]
    uploads = {u["file"]: u["content"] for u in monitor.inputs["uploads"]["value"]}
    assert uploads["/root/.ssh/hyperfleet_id"] == "SSH-PRIVATE-KEY"
    assert uploads["/etc/hyperfleet/docker-tls/key.pem"] == "TLS-PRIVATE-KEY"
    assert uploads["/root/.ssh/known_hosts"] == "gpu-1 ssh-ed25519 AAAA\n"
    assert uploads["/root/.ssh/config"] == "Host *\n  IdentityFile /root/.ssh/hyperfleet_id\n"
    assert uploads["/etc/hyperfleet/docker-tls/ca.pem"] == "PUBLIC ca.pem"


def test_without_a_key_the_monitor_leaves_ssh_hosts_to_heartbeats():
    raw = {"images": {"build": False}, "workers": {"hosts": ["unix:///var/run/docker.sock", "ssh://ops@gpu-1"]},
           "mongo": {"publishPort": 27017, "publishHost": "0.0.0.0", "advertiseHost": "10.0.0.5"}}
    mocks, _ = deploy(raw)
    monitor = next(r for r in by_type(mocks, "docker:index/container:Container") if label_map(r)["hyperfleet.role"] == "monitor")
    assert "--docker-engine" not in monitor.inputs["command"]
    assert [u["file"] for u in monitor.inputs["uploads"]] == [MONGO_TLS_CA_FILE]  # no key: only Mongo's CA


# -- Mongo over TLS ---------------------------------------------------------------------------------------

SEVERAL_HOSTS = {"images": {"build": False}, "experiments": [EXPERIMENT],
                 "mongo": {"publishPort": 27017, "publishHost": "0.0.0.0", "advertiseHost": "10.0.0.5"},
                 "workers": {"replicas": 3, "hosts": ["unix:///var/run/docker.sock", "ssh://ops@gpu-1"]}}
CONTAINER = "docker:index/container:Container"


def uploads_of(resource) -> tuple[dict, bool]:
    """A container's uploads {file: (content, permissions)}, and whether they reach the engine as a secret."""
    uploads = resource.inputs.get("uploads") or []
    secret = isinstance(uploads, dict) and SECRET_SIG in uploads
    return {u["file"]: (u["content"], u.get("permissions")) for u in (uploads["value"] if secret else uploads)}, secret


def certificates_of(mocks):
    [certificates] = [r for r in by_type(mocks, "pulumi-python:dynamic:Resource") if "names" in r.inputs]
    return certificates


def test_mongo_published_beyond_loopback_requires_tls_and_every_client_verifies_its_certificate():
    from cryptography import x509

    mocks, outputs = deploy(SEVERAL_HOSTS)
    containers = {r.inputs["name"]: r for r in by_type(mocks, CONTAINER)}
    mongo = containers["hyperfleet-t-mongo"]
    assert mongo.inputs["command"] == ["--tlsMode", "requireTLS", "--tlsCertificateKeyFile", "/etc/hyperfleet/mongo-server.pem"]
    uploads, secret = uploads_of(mongo)
    assert secret and list(uploads) == ["/etc/hyperfleet/mongo-server.pem"]
    server_pem = uploads["/etc/hyperfleet/mongo-server.pem"][0]
    ca_pem = resolved(outputs["mongo_ca_cert"])
    # the server's certificate names what clients reach it by, and the stack's CA signed it
    server, ca = x509.load_pem_x509_certificate(server_pem.encode()), x509.load_pem_x509_certificate(ca_pem.encode())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["hyperfleet-t-mongo"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    server.verify_directly_issued_by(ca)
    assert certificates_of(mocks).inputs["names"] == ["hyperfleet-t-mongo", "10.0.0.5"]
    assert server_pem.count("BEGIN CERTIFICATE") == 1
    server_key = server_pem[:server_pem.index("-----BEGIN CERTIFICATE")]
    assert server_key.startswith("-----BEGIN PRIVATE KEY")
    # every client: a URL with tls=true and the CA's path, the CA (and no key) uploaded at that path
    clients = {n: r for n, r in containers.items() if n != "hyperfleet-t-mongo"}
    assert sorted(clients) == ["hyperfleet-t-driver-demo", "hyperfleet-t-monitor", "hyperfleet-t-worker-0",
                               "hyperfleet-t-worker-1", "hyperfleet-t-worker-2"]
    for name, client in clients.items():
        url = next(v for k, v in env_of(client).items() if k in ("MONGO_URL", "HYPERFLEET_RUN_MONGO"))
        assert url.endswith(f"?authSource=admin&tls=true&tlsCAFile={MONGO_TLS_CA_FILE}"), (name, url)
        uploads, _ = uploads_of(client)
        assert uploads[MONGO_TLS_CA_FILE] == (ca_pem, "0444"), name
    assert "@10.0.0.5:27017/" in env_of(clients["hyperfleet-t-worker-1"])["MONGO_URL"]
    assert "@hyperfleet-t-mongo:27017/" in env_of(clients["hyperfleet-t-worker-0"])["MONGO_URL"]
    # the server's key: in the Mongo container's (secret) uploads only; in no output, no other input
    elsewhere = [r.name for r in mocks.created if r is not mongo and server_key.strip() in repr(r.inputs)]
    assert elsewhere == []
    assert server_key.strip() not in repr(resolved(pulumi.Output.all(*outputs.values())))
    from pulumi.runtime.sync_await import _sync_await

    assert _sync_await(outputs["mongo_url"].is_secret()) and not _sync_await(outputs["mongo_ca_cert"].is_secret())


def test_a_single_host_publishing_on_its_own_address_gets_a_certificate_for_that_address():
    from cryptography import x509

    mocks, _ = deploy({"images": {"build": False}, "mongo": {"publishPort": 27017, "publishHost": "192.168.1.10"}})
    certificates = certificates_of(mocks)
    assert certificates.inputs["names"] == ["hyperfleet-t-mongo", "192.168.1.10"]
    mongo = next(r for r in by_type(mocks, CONTAINER) if r.inputs["name"] == "hyperfleet-t-mongo")
    pem = uploads_of(mongo)[0]["/etc/hyperfleet/mongo-server.pem"][0]
    names = x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)] == ["192.168.1.10"]


def plain(mocks, outputs) -> None:
    """No TLS anywhere: no certificates, Mongo started as the image says, URLs and containers without a CA."""
    assert [r for r in by_type(mocks, "pulumi-python:dynamic:Resource") if "names" in r.inputs] == []
    assert "mongo_ca_cert" not in outputs
    for container in by_type(mocks, CONTAINER):
        assert not container.inputs.get("command") or container.inputs["command"][0] != "--tlsMode"
        assert MONGO_TLS_CA_FILE not in uploads_of(container)[0]
        for value in env_of(container).values():
            assert "tls" not in value


def test_mongo_on_a_single_host_or_published_on_loopback_only_stays_plain():
    plain(*deploy({"images": {"build": False}, "experiments": [EXPERIMENT]}))
    plain(*deploy({"images": {"build": False}, "experiments": [EXPERIMENT], "mongo": {"publishPort": 27017}}))


def test_allow_plaintext_turns_tls_off_for_several_hosts():
    plain(*deploy({**SEVERAL_HOSTS, "mongo": {**SEVERAL_HOSTS["mongo"], "allowPlaintext": True}}))
