"""WorkerPool: `hyperfleet worker` containers spread round-robin over the stack's Docker hosts, and on a
host that lists GPUs one per GPU slot, each pinned to its GPU.

A GPU worker gets its GPU as a Docker device request (``docker run --gpus device=N``: the provider's
``gpus``), which the NVIDIA Container Toolkit serves on every engine it is installed on, no daemon.json
runtime needed; the engine then sets NVIDIA_VISIBLE_DEVICES=N in the container. The worker also gets
``--gpu N``: it records the GPU with each trial and gives its trial containers the same device request
(docs/gpus.md says why device requests rather than the nvidia runtime).
"""

from __future__ import annotations

import dataclasses

import pulumi
import pulumi_docker as docker

from hyperfleet.contract import (
    ALIVE_FILE,
    CONTAINER_NAME_ENV,
    DOCKER_ENGINE_ENV,
    DOCKER_HOST_LABEL,
    GPU_LABEL,
    MONGO_URL_ENV,
    ROLE_WORKER,
    STACK_CONNECT_TIMEOUT_SECONDS,
)

from ..config import WorkersConfig

from .common import DockerPlacement, child_opts, labels, limits, mongo_ca_uploads, secret_env

DOCKER_SOCKET = "/var/run/docker.sock"


@dataclasses.dataclass(frozen=True)
class WorkerSlot:
    """One worker container: its resource and container names' suffix, its host, its GPU (or None)."""

    suffix: str
    host: int
    gpu: str | None = None


def worker_slots(config: WorkersConfig) -> list[WorkerSlot]:
    """The workers of the pool: ``replicas`` round-robin over the hosts without GPUs (named 0, 1, … as
    before GPUs existed, so a stack's workers stay in place), then trialsPerGpu per GPU of each host with GPUs."""
    plain = [i for i, gpus in enumerate(config.host_gpus) if not gpus]
    slots = [WorkerSlot(str(index), plain[index % len(plain)]) for index in range(config.replicas if plain else 0)]
    for host, gpus in enumerate(config.host_gpus):
        for gpu in gpus:
            for slot in range(config.trials_per_gpu):
                slots.append(WorkerSlot(f"h{host}-gpu{gpu.replace('/', '-')}-{slot}", host, gpu))
    return slots


@dataclasses.dataclass
class WorkerPoolArgs:
    stack: str
    config: WorkersConfig
    image: pulumi.Input[str]
    placements: list[DockerPlacement]
    #: the Mongo address per placement (the first host's network address, or the advertised one)
    mongo_urls: list[pulumi.Input[str]]
    #: mount the engine's socket so container objectives can start their trial containers
    docker_socket: bool = False
    #: the CA of Mongo's TLS certificate, when Mongo requires TLS (Mongo.ca_cert)
    mongo_ca_cert: pulumi.Input[str] | None = None


class WorkerPool(pulumi.ComponentResource):
    container_names: pulumi.Output[list[str]]

    def __init__(self, name: str, args: WorkerPoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hyperfleet:index:WorkerPool", name, None, opts)
        cfg = args.config
        names = []
        for slot in worker_slots(cfg):
            placement, mongo_url = args.placements[slot.host], args.mongo_urls[slot.host]
            container_name = f"hyperfleet-{args.stack}-worker-{slot.suffix}"
            command = ["worker", "--connect-timeout-seconds", str(STACK_CONNECT_TIMEOUT_SECONDS),
                       "--heartbeat-seconds", str(cfg.heartbeat_seconds),
                       "--poll-interval", str(cfg.poll_interval_seconds),
                       "--subprocesses" if cfg.subprocesses else "--no-subprocesses", "--alive-file", ALIVE_FILE]
            extra_labels, gpu = {}, {}
            if slot.gpu is not None:
                command += ["--gpu", slot.gpu]
                extra_labels[GPU_LABEL] = slot.gpu
                gpu["gpus"] = f"device={slot.gpu}"  # Docker's device request (docker run --gpus device=N)
            settings = {CONTAINER_NAME_ENV: container_name, DOCKER_ENGINE_ENV: placement.host,
                        **cfg.env}
            envs = secret_env(mongo_url,
                              lambda url, s=settings: [f"{MONGO_URL_ENV}={url}"] + [f"{k}={v}" for k, v in sorted(s.items())])
            volumes, user = [], None
            if args.docker_socket:
                volumes.append(docker.ContainerVolumeArgs(host_path=DOCKER_SOCKET, container_path=DOCKER_SOCKET))
                user = "0"  # the engine's socket is root's; a worker that starts containers is root-equivalent anyway
            container = docker.Container(
                f"{name}-{slot.suffix}",
                name=container_name,
                image=args.image,
                command=command,
                envs=envs,
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=placement.network.name)],
                volumes=volumes,
                user=user,
                uploads=mongo_ca_uploads(args.mongo_ca_cert) or None,
                # `docker ps` says unhealthy when the worker's loop is stuck (as the chart's liveness probe)
                healthcheck=docker.ContainerHealthcheckArgs(tests=["CMD", "hyperfleet", "alive", ALIVE_FILE],
                                                            interval="30s", timeout="10s", retries=3),
                restart="unless-stopped",
                stop_timeout=15,  # the worker hands its trial back within its shutdown deadline (10 s)
                labels=labels(args.stack, ROLE_WORKER, **{DOCKER_HOST_LABEL: placement.host}, **extra_labels),
                **limits(cfg.resources),
                **gpu,
                opts=child_opts(self, placement),
            )
            names.append(container.name)
        self.container_names = pulumi.Output.all(*names) if names else pulumi.Output.from_input([])
        self.register_outputs({"container_names": self.container_names})
