"""Mongo: the database of the trials, in a container with a named volume and auth on; with TLS required when
it is published beyond loopback (unless mongo.allowPlaintext), on a certificate the stack makes.

The server is started with mongod's own options (``--tlsMode requireTLS --tlsCertificateKeyFile FILE``, FILE
holding the key and the certificate), which the official image passes to mongod; a stand-in image must take
the same (testbed/images/test-mongo does).
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

import pulumi
import pulumi_docker as docker

from hyperfleet.contract import MONGO_PORT, MONGO_TLS_CA_FILE, ROLE_MONGO, STACK_LABEL

from ..certificates import GeneratedCertificates
from ..config import MongoConfig

from .common import DockerPlacement, child_opts, labels, limits, secret_env

#: the server's key and certificate in the Mongo container (and nowhere else)
SERVER_KEY_FILE = "/etc/hyperfleet/mongo-server.pem"


@dataclasses.dataclass
class MongoArgs:
    stack: str
    config: MongoConfig
    placement: DockerPlacement
    password: pulumi.Input[str]
    #: require TLS, on certificates made for it (StackConfig.mongo_tls)
    tls: bool = False


class Mongo(pulumi.ComponentResource):
    #: the address for containers on the stack's network (secret: it holds the password)
    url: pulumi.Output[str]
    #: the address for workers on other Docker hosts (advertiseHost and the published port), if any
    advertised_url: pulumi.Output[str] | None
    container_name: pulumi.Output[str]
    #: with TLS: the CA (PEM, public) clients verify the server with, at MONGO_TLS_CA_FILE in their containers
    ca_cert: pulumi.Output[str] | None

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
        command, uploads, self.ca_cert = None, [], None
        if args.tls:
            certificates = GeneratedCertificates(f"{name}-tls", common_name=f"hyperfleet {args.stack} mongo",
                                                 names=cfg.tls_names(container_name), opts=pulumi.ResourceOptions(parent=self))
            self.ca_cert = certificates.ca_cert
            command = ["--tlsMode", "requireTLS", "--tlsCertificateKeyFile", SERVER_KEY_FILE]
            # owned by root (an upload can't say otherwise) and read by the server's own user: readable in this
            # container, where every process is the database's; a secret in the state and in pulumi's output
            uploads.append(docker.ContainerUploadArgs(
                file=SERVER_KEY_FILE, permissions="0444",
                content=pulumi.Output.secret(pulumi.Output.all(certificates.server_key, certificates.server_cert)
                                             .apply(lambda pems: "".join(pems)))))
        container = docker.Container(
            f"{name}-container",
            name=container_name,
            image=cfg.image,
            command=command,
            envs=env,
            uploads=uploads or None,
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
        self.url = _url(cfg, args.password, container.name, MONGO_PORT, args.tls)
        self.advertised_url = (_url(cfg, args.password, pulumi.Output.from_input(cfg.advertise_host), cfg.publish_port,
                                    args.tls)
                               if cfg.advertise_host and cfg.publish_port else None)
        self.register_outputs({"url": self.url, "container_name": self.container_name, "ca_cert": self.ca_cert})


def _url(cfg: MongoConfig, password: pulumi.Input[str], host: pulumi.Input[str], port: int,
         tls: bool) -> pulumi.Output[str]:
    query = "authSource=admin" + (f"&authMechanism={cfg.auth_mechanism}" if cfg.auth_mechanism else "")
    if tls:
        query += f"&tls=true&tlsCAFile={MONGO_TLS_CA_FILE}"
    return pulumi.Output.secret(pulumi.Output.all(password, host).apply(
        lambda a: f"mongodb://{quote(cfg.username, safe='')}:{quote(a[0], safe='')}@{a[1]}:{port}/{cfg.database}?{query}"))
