"""What every Docker resource of a stack shares: labels, names and the provider it is created with."""

from __future__ import annotations

import dataclasses
from typing import Callable

import pulumi
import pulumi_docker as docker
from hyperfleet.contract import MONGO_TLS_CA_FILE, ROLE_LABEL, STACK_LABEL

from ..config import ResourcesConfig


@dataclasses.dataclass(frozen=True)
class DockerPlacement:
    """A Docker host a component's containers go to: its provider and its network there."""

    host: str
    provider: docker.Provider
    network: docker.Network


def labels(stack: str, role: str, **extra: str) -> list[docker.ContainerLabelArgs]:
    values = {STACK_LABEL: stack, ROLE_LABEL: role, **extra}
    return [docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(values.items())]


def child_opts(parent: pulumi.Resource, placement: DockerPlacement, **extra) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, provider=placement.provider, **extra)


def limits(resources: ResourcesConfig) -> dict:
    """Docker's CPU and memory limits from a ResourcesConfig (nothing when unset)."""
    out = {}
    if resources.docker_cpus() is not None:
        out["cpus"] = str(resources.docker_cpus())
    if resources.docker_memory_mb() is not None:
        out["memory"] = resources.docker_memory_mb()
    return out


def secret_env(value: pulumi.Input[str], render: Callable[[str], list[str]]) -> pulumi.Output[list[str]]:
    """A container's environment built from a secret (a password, a URL holding one), kept secret."""
    return pulumi.Output.secret(pulumi.Output.from_input(value).apply(render))


def mongo_ca_uploads(ca_cert: pulumi.Input[str] | None) -> list[docker.ContainerUploadArgs]:
    """What a Mongo client's container gets when Mongo requires TLS: the CA its URL's tlsCAFile names (public:
    readable by the runtime's user); nothing otherwise."""
    if ca_cert is None:
        return []
    return [docker.ContainerUploadArgs(file=MONGO_TLS_CA_FILE, content=ca_cert, permissions="0444")]
