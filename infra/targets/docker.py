"""The Docker-hosts target: Mongo, monitor and drivers on the first host, workers over all of them."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_docker as docker
from hyperfleet.contract import STACK_LABEL

from components.common import DockerPlacement
from components.experiment import Experiment, ExperimentArgs
from components.mongo import Mongo, MongoArgs
from components.monitor import Monitor, MonitorArgs
from components.password import GeneratedPassword
from components.worker_pool import WorkerPool, WorkerPoolArgs
from config import StackConfig, dashboard_token

REPO = Path(__file__).resolve().parents[2]


def deploy(config: StackConfig, stack: str) -> dict:
    network_name = config.docker.network or f"hyperfleet-{stack}"
    placements = []
    for index, host in enumerate(config.workers.hosts):
        provider = docker.Provider(f"docker-{index}", host=host)
        network = docker.Network(f"network-{index}", name=network_name,
                                 labels=[docker.NetworkLabelArgs(label=STACK_LABEL, value=stack)],
                                 opts=pulumi.ResourceOptions(provider=provider))
        placements.append(DockerPlacement(host=host, provider=provider, network=network))
    home = placements[0]

    image = runtime_image(config, home)
    password = GeneratedPassword("mongo-password")
    mongo = Mongo("mongo", MongoArgs(stack=stack, config=config.mongo, placement=home, password=password.result))
    mongo_urls = [mongo.url] + [mongo.advertised_url] * (len(placements) - 1)
    specs = config.experiment_specs()
    container_objectives = any(not isinstance(s.objective, str) for s in specs)
    workers = WorkerPool("workers", WorkerPoolArgs(
        stack=stack, config=config.workers, image=image, placements=placements, mongo_urls=mongo_urls,
        docker_socket=container_objectives))
    outputs = {}
    if config.monitor.enabled:
        monitor = Monitor("monitor", MonitorArgs(stack=stack, config=config.monitor, image=image, placement=home,
                                                 mongo_url=mongo.url, dashboard=config.dashboard,
                                                 dashboard_token=dashboard_token()))
        if monitor.dashboard_url:
            outputs["dashboard_url"] = monitor.dashboard_url
    for spec, raw in zip(specs, config.experiment_spec_dicts, strict=True):
        Experiment(f"experiment-{spec.key}", ExperimentArgs(stack=stack, spec=raw, exp_key=spec.key, image=image,
                                                             placement=home, mongo_url=mongo.url),
                   opts=pulumi.ResourceOptions(depends_on=[workers]))
    status = f"docker exec hyperfleet-{stack}-monitor hyperfleet status"
    return {"mongo_url": mongo.url, "worker_containers": workers.container_names, "status_command": status,
            "experiments": [s.key for s in specs], **outputs}


def runtime_image(config: StackConfig, home: DockerPlacement) -> pulumi.Input[str]:
    """The runtime image: built from images/runtime on the first host, or the given name as it is."""
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
        opts=pulumi.ResourceOptions(provider=home.provider),
    )
    return config.workers.image or image.image_name
