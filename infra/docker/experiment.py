"""Experiment: one driver container per experiment, `hyperfleet run` on the spec from the stack config.

The driver runs to completion and stays exited (restarted only on failure); as `hyperfleet run` resumes
by exp_key, a replaced or restarted driver continues the same experiment.
"""

from __future__ import annotations

import dataclasses
import json

import pulumi
import pulumi_docker as docker

from hyperfleet.contract import DRIVER_SPEC_PATH, EXP_KEY_LABEL, ROLE_DRIVER, STACK_CONNECT_TIMEOUT_SECONDS, command_env

from .common import DockerPlacement, child_opts, labels, mongo_ca_uploads, secret_env


@dataclasses.dataclass
class ExperimentArgs:
    stack: str
    spec: dict  # the experiment spec as written in the stack config (already validated)
    exp_key: str
    image: pulumi.Input[str]
    placement: DockerPlacement
    mongo_url: pulumi.Input[str]
    #: the CA of Mongo's TLS certificate, when Mongo requires TLS (Mongo.ca_cert)
    mongo_ca_cert: pulumi.Input[str] | None = None


class Experiment(pulumi.ComponentResource):
    container_name: pulumi.Output[str]

    def __init__(self, name: str, args: ExperimentArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("hyperfleet:index:Experiment", name, None, opts)
        envs = secret_env(args.mongo_url, lambda url: [f"{command_env('run', 'mongo')}={url}"])
        container = docker.Container(
            f"{name}-driver",
            name=f"hyperfleet-{args.stack}-driver-{args.exp_key}",
            image=args.image,
            command=["run", DRIVER_SPEC_PATH, "--no-progress", "--connect-timeout-seconds", str(STACK_CONNECT_TIMEOUT_SECONDS)],
            envs=envs,
            uploads=[docker.ContainerUploadArgs(file=DRIVER_SPEC_PATH, content=json.dumps(args.spec, indent=2, sort_keys=True)),
                     *mongo_ca_uploads(args.mongo_ca_cert)],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.placement.network.name)],
            restart="on-failure",
            max_retry_count=20,
            must_run=False,  # it finishes; an exited driver is a finished experiment, not drift
            wait=False,
            labels=labels(args.stack, ROLE_DRIVER, **{EXP_KEY_LABEL: args.exp_key}),
            opts=child_opts(self, args.placement),
        )
        self.container_name = container.name
        self.register_outputs({"container_name": self.container_name})
