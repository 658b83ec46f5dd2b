"""Monitor: one `hyperfleet monitor` that recovers the trials of dead workers, with container liveness."""

from __future__ import annotations

import dataclasses

import pulumi
import pulumi_docker as docker

from hyperfleet.contract import (
    DASHBOARD_PORT,
    HEALTH_PORT,
    MONGO_URL_ENV,
    ROLE_MONITOR,
    STACK_CONNECT_TIMEOUT_SECONDS,
    command_env,
)

from ..config import DashboardConfig, MonitorConfig

from .common import DockerPlacement, child_opts, labels, limits, mongo_ca_uploads, secret_env
from .worker_pool import DOCKER_SOCKET


@dataclasses.dataclass
class RemoteEngines:
    """The Docker hosts besides the monitor's own whose worker containers it lists, and the files that
    let it reach them (``secret_files``: keys, uploaded as Pulumi secrets)."""

    #: where the files go in the monitor's container (it runs as root: ~ is /root)
    SSH_KEY = "/root/.ssh/hyperfleet_id"
    SSH_KNOWN_HOSTS = "/root/.ssh/known_hosts"
    SSH_CONFIG = "/root/.ssh/config"
    CERT_PATH = "/etc/hyperfleet/docker-tls"

    urls: list[str] = dataclasses.field(default_factory=list)
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    secret_files: dict[str, str] = dataclasses.field(default_factory=dict)
    cert_path: str | None = None

    def args(self) -> list[str]:
        flags = [a for url in self.urls for a in ("--docker-engine", url)]
        return flags + (["--docker-cert-path", self.cert_path] if self.cert_path else [])

    def uploads(self) -> list[docker.ContainerUploadArgs]:
        plain = [docker.ContainerUploadArgs(file=path, content=text) for path, text in sorted(self.files.items())]
        return plain + [docker.ContainerUploadArgs(file=path, content=pulumi.Output.secret(text), permissions="0600")
                        for path, text in sorted(self.secret_files.items())]


@dataclasses.dataclass
class MonitorArgs:
    stack: str
    config: MonitorConfig
    image: pulumi.Input[str]
    placement: DockerPlacement
    mongo_url: pulumi.Input[str]
    dashboard: DashboardConfig = dataclasses.field(default_factory=DashboardConfig)
    #: the dashboard's token (a secret), or None: its actions are off
    dashboard_token: pulumi.Input[str] | None = None
    #: the other Docker hosts it watches (several hosts)
    remote_engines: RemoteEngines = dataclasses.field(default_factory=RemoteEngines)
    #: the CA of Mongo's TLS certificate, when Mongo requires TLS (Mongo.ca_cert)
    mongo_ca_cert: pulumi.Input[str] | None = None


class Monitor(pulumi.ComponentResource):
    container_name: pulumi.Output[str]
    #: where the dashboard is published, when it is on
    dashboard_url: str | None

    def __init__(self, name: str, args: MonitorArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hyperfleet:index:Monitor", name, None, opts)
        cfg = args.config
        command = ["monitor", "--liveness", "docker", "--docker-engine-id", args.placement.host,
                   "--connect-timeout-seconds", str(STACK_CONNECT_TIMEOUT_SECONDS),
                   "--grace-seconds", str(cfg.grace_seconds), "--interval-seconds", str(cfg.interval_seconds),
                   "--policy", cfg.policy, "--max-retries", str(cfg.max_retries),
                   "--health-port", str(HEALTH_PORT), *args.remote_engines.args()]
        board = args.dashboard
        ports, token_env = [], command_env("monitor", "dashboard_token")
        if board.enabled:
            command += ["--dashboard-port", str(DASHBOARD_PORT)]
            if board.reads_need_token("docker"):  # published beyond this machine, or asked for
                command.append("--dashboard-read-token")
            ports.append(docker.ContainerPortArgs(internal=DASHBOARD_PORT, external=board.port, ip=board.publish_host))
        secrets = pulumi.Output.all(args.mongo_url, args.dashboard_token if board.enabled else None)
        # MONGO_URL is also what `hyperfleet status` reads in the container
        envs = secret_env(secrets, lambda s: [f"{MONGO_URL_ENV}={s[0]}"] + ([f"{token_env}={s[1]}"] if s[1] else []))
        container = docker.Container(
            f"{name}-container",
            name=f"hyperfleet-{args.stack}-monitor",
            image=args.image,
            command=command,
            envs=envs,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.placement.network.name)],
            ports=ports,
            # lists worker containers through the engine; the socket is root's (read-only mount)
            volumes=[docker.ContainerVolumeArgs(host_path=DOCKER_SOCKET, container_path=DOCKER_SOCKET, read_only=True)],
            user="0",
            uploads=args.remote_engines.uploads() + mongo_ca_uploads(args.mongo_ca_cert),
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "python3", "-c",
                       f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{HEALTH_PORT}/healthz')"],
                interval="10s", timeout="3s", retries=3),
            restart="unless-stopped",
            labels=labels(args.stack, ROLE_MONITOR),
            **limits(cfg.resources),
            opts=child_opts(self, args.placement),
        )
        self.container_name = container.name
        self.dashboard_url = f"http://{board.publish_host}:{board.port}/" if board.enabled else None
        self.register_outputs({"container_name": self.container_name, "dashboard_url": self.dashboard_url})
