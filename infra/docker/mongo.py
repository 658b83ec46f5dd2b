"""Mongo: the database of the trials, in a container with a named volume and auth on."""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

import pulumi
import pulumi_docker as docker

from hyperfleet.contract import MONGO_PORT, ROLE_MONGO, STACK_LABEL

from ..config import MongoConfig

from .common import DockerPlacement, child_opts, labels, limits, secret_env


@dataclasses.dataclass
class MongoArgs:
    stack: str
    config: MongoConfig
    placement: DockerPlacement
    password: pulumi.Input[str]


class Mongo(pulumi.ComponentResource):
    #: the address for containers on the stack's network (secret: it holds the password)
    url: pulumi.Output[str]
    #: the address for workers on other Docker hosts (advertiseHost and the published port), if any
    advertised_url: pulumi.Output[str] | None
    container_name: pulumi.Output[str]

    def __init__(self, name: str, args: MongoArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hyperfleet:index:Mongo", name, None, opts)
        cfg = args.config
        container_name = f"hyperfleet-{args.stack}-mongo"
        volume = docker.Volume(f"{name}-data", name=f"hyperfleet-{args.stack}-mongo-data",
                               labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=args.stack)],
                               opts=child_opts(self, args.placement))
        ports = []
        if cfg.publish_port:
            ports.append(docker.ContainerPortArgs(internal=MONGO_PORT, external=cfg.publish_port, ip=cfg.publish_host))
        env = secret_env(args.password,
                         lambda pw: [f"MONGO_INITDB_ROOT_USERNAME={cfg.username}", f"MONGO_INITDB_ROOT_PASSWORD={pw}"])
        container = docker.Container(
            f"{name}-container",
            name=container_name,
            image=cfg.image,
            envs=env,
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path="/data/db")],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.placement.network.name,
                                                                    aliases=["mongo"])],
            ports=ports,
            restart="unless-stopped",
            labels=labels(args.stack, ROLE_MONGO),
            **limits(cfg.resources),
            opts=child_opts(self, args.placement),
        )
        self.container_name = container.name
        self.url = _url(cfg, args.password, container.name, MONGO_PORT)
        self.advertised_url = (_url(cfg, args.password, pulumi.Output.from_input(cfg.advertise_host), cfg.publish_port)
                               if cfg.advertise_host and cfg.publish_port else None)
        self.register_outputs({"url": self.url, "container_name": self.container_name})


def _url(cfg: MongoConfig, password: pulumi.Input[str], host: pulumi.Input[str], port: int) -> pulumi.Output[str]:
    query = "authSource=admin" + (f"&authMechanism={cfg.auth_mechanism}" if cfg.auth_mechanism else "")
    return pulumi.Output.secret(pulumi.Output.all(password, host).apply(
        lambda a: f"mongodb://{quote(cfg.username, safe='')}:{quote(a[0], safe='')}@{a[1]}:{port}/{cfg.database}?{query}"))
