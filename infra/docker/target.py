"""The Docker target: Mongo, monitor and drivers on the first Docker host, workers round-robin over all of them
(or, on a host that lists GPUs, one per GPU slot).

``deploy`` makes one explicit ``docker.Provider`` per host and a DockerTarget: its children are the
stack's network on each host, the runtime image, the generated Mongo password, Mongo, the WorkerPool, the
Monitor and one Experiment per experiment (each in its own module here).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pulumi
import pulumi_docker as docker
from hyperfleet.contract import STACK_LABEL
from hyperfleet.engines import CERT_FILES, CERT_KEY_FILE, EngineAccess, EngineUnreachable, ping
from hyperfleet.engines import kind as engine_kind

from ..config import StackConfig, dashboard_token
from ..password import GeneratedPassword
from .common import DockerPlacement
from .experiment import Experiment, ExperimentArgs
from .mongo import Mongo, MongoArgs
from .monitor import Monitor, MonitorArgs, RemoteEngines
from .worker_pool import WorkerPool, WorkerPoolArgs

REPO = Path(__file__).resolve().parents[2]
#: stacks deployed before DockerTarget existed have its children at the top level: this alias keeps them,
#: and so every container, volume and network under them, in place (no replacement) when they are updated
WAS_TOP_LEVEL = [pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)]


def deploy(config: StackConfig, stack: str) -> dict:
    """The stack's outputs. The providers stay top-level resources: each resource's state names its provider."""
    providers = [docker.Provider(f"docker-{index}", host=host, **provider_access(config.docker.access(host)))
                 for index, host in enumerate(config.workers.engines)]
    return DockerTarget(f"hyperfleet-{stack}", DockerTargetArgs(config=config, stack=stack, providers=providers)).outputs


@dataclasses.dataclass
class DockerTargetArgs:
    config: StackConfig
    stack: str
    #: one per Docker host (config.workers.engines, in order); the first is home to Mongo, monitor and drivers
    providers: list[docker.Provider]


class DockerTarget(pulumi.ComponentResource):
    #: the stack's outputs (mongo_url, worker_containers, status_command, experiments, dashboard_url, mongo_ca_cert)
    outputs: dict

    def __init__(self, name: str, args: DockerTargetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hyperfleet:index:DockerTarget", name, None, opts)
        config, stack = args.config, args.stack

        def child(**extra) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, aliases=WAS_TOP_LEVEL, **extra)

        network_name = config.docker.network or f"hyperfleet-{stack}"
        placements = []
        for index, (host, provider) in enumerate(zip(config.workers.engines, args.providers, strict=True)):
            network = docker.Network(f"network-{index}", name=network_name,
                                     labels=[docker.NetworkLabelArgs(label=STACK_LABEL, value=stack)],
                                     opts=child(provider=provider))
            placements.append(DockerPlacement(host=host, provider=provider, network=network))
        home = placements[0]

        image = runtime_image(config, child(provider=home.provider))
        password = GeneratedPassword("mongo-password", opts=child())
        mongo = Mongo("mongo", MongoArgs(stack=stack, config=config.mongo, placement=home, password=password.result,
                                         tls=config.mongo_tls), opts=child())
        mongo_urls = [mongo.url] + [mongo.advertised_url] * (len(placements) - 1)
        specs = config.experiment_specs()
        container_objectives = any(not isinstance(s.objective, str) for s in specs)
        workers = WorkerPool("workers", WorkerPoolArgs(
            stack=stack, config=config.workers, image=image, placements=placements, mongo_urls=mongo_urls,
            docker_socket=container_objectives, mongo_ca_cert=mongo.ca_cert), opts=child())
        outputs = {}
        if config.monitor.enabled:
            monitor = Monitor("monitor", MonitorArgs(stack=stack, config=config.monitor, image=image, placement=home,
                                                     mongo_url=mongo.url, dashboard=config.dashboard,
                                                     dashboard_token=dashboard_token(),
                                                     remote_engines=remote_engines(config),
                                                     mongo_ca_cert=mongo.ca_cert), opts=child())
            if monitor.dashboard_url:
                outputs["dashboard_url"] = monitor.dashboard_url
        for spec, raw in zip(specs, config.experiment_spec_dicts, strict=True):
            Experiment(f"experiment-{spec.key}", ExperimentArgs(stack=stack, spec=raw, exp_key=spec.key, image=image,
                                                                 placement=home, mongo_url=mongo.url,
                                                                 mongo_ca_cert=mongo.ca_cert),
                       opts=child(depends_on=[workers]))
        self.outputs = {"mongo_url": mongo.url, "worker_containers": workers.container_names,
                        "status_command": f"docker exec hyperfleet-{stack}-monitor hyperfleet status",
                        "experiments": [s.key for s in specs], **outputs}
        if mongo.ca_cert is not None:  # public: what a client outside the stack verifies Mongo with
            self.outputs["mongo_ca_cert"] = mongo.ca_cert
        self.register_outputs(self.outputs)


def check_engines(config: StackConfig, timeout_seconds: float = 15) -> None:
    """Every Docker host answers, through the transport its provider will use; else the preview fails
    naming each host that does not, before anything is created."""
    accesses = [config.docker.access(host) for host in config.workers.engines]

    def problem(access: EngineAccess) -> str | None:
        try:
            ping(access, timeout_seconds)
        except EngineUnreachable as err:
            return str(err)
        return None

    with ThreadPoolExecutor(max_workers=len(accesses)) as pool:
        problems = [p for p in pool.map(problem, accesses) if p]
    if problems:
        raise pulumi.RunError("hyperfleet:workers.hosts: a Docker host does not answer, nothing was created:\n  "
                              + "\n  ".join(problems))


def provider_access(access: EngineAccess) -> dict:
    """The docker provider's arguments that reach ``access`` (ssh options, or a TLS cert path)."""
    if access.ssh_options:
        return {"ssh_opts": list(access.ssh_options)}
    if access.cert_path:
        return {"cert_path": access.cert_path}
    return {}


def remote_engines(config: StackConfig) -> RemoteEngines:
    """The other hosts the monitor watches, and the credentials it gets for them (as secrets): the ssh
    key and known hosts, Docker's TLS cert path. A host it can't be given access to keeps heartbeats."""
    remote = config.workers.engines[1:]
    watched, files, secret_files = [], {}, {}
    ssh_hosts = [h for h in remote if engine_kind(h) == "ssh"]
    if ssh_hosts:
        ssh = config.docker.ssh
        known_hosts = Path(ssh.known_hosts_file or "~/.ssh/known_hosts").expanduser()
        if ssh.identity_file and known_hosts.is_file():
            secret_files[RemoteEngines.SSH_KEY] = Path(ssh.identity_file).expanduser().read_text()
            files[RemoteEngines.SSH_KNOWN_HOSTS] = known_hosts.read_text()
            files[RemoteEngines.SSH_CONFIG] = f"Host *\n  IdentityFile {RemoteEngines.SSH_KEY}\n"
            watched += ssh_hosts
        else:
            pulumi.log.warn(f"the monitor watches the workers on {', '.join(ssh_hosts)} by heartbeat only: "
                            "set hyperfleet:docker.ssh.identityFile (and knownHostsFile) to let it list their containers")
    tcp_hosts = [h for h in remote if engine_kind(h) == "tcp"]
    cert_dir = config.docker.cert_dir()
    if tcp_hosts and cert_dir:
        for name in CERT_FILES:
            (secret_files if name == CERT_KEY_FILE else files)[f"{RemoteEngines.CERT_PATH}/{name}"] = \
                (Path(cert_dir) / name).read_text()
    watched += tcp_hosts
    return RemoteEngines(urls=[h for h in remote if h in watched], files=files, secret_files=secret_files,
                         cert_path=RemoteEngines.CERT_PATH if tcp_hosts and cert_dir else None)


def runtime_image(config: StackConfig, opts: pulumi.ResourceOptions) -> pulumi.Input[str]:
    """The runtime image: built from images/runtime on the first host (``opts`` has its provider), or the
    given name as it is."""
    if not config.images.build:
        return config.worker_image
    image = docker.Image(
        "runtime-image",
        image_name=config.images.runtime,
        build=docker.DockerBuildArgs(
            context=str(REPO),
            dockerfile=str(REPO / "images" / "runtime" / "Dockerfile"),
            args={"BASE_IMAGE": config.images.base_image},
        ),
        skip_push=True,
        opts=opts,
    )
    return config.workers.image or image.image_name
