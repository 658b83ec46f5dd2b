"""Local stand-ins for real infrastructure, not part of the product (testbed/README.md): the MongoDB
wire-protocol server that `make demo`, the examples, the benchmarks and the tests start (mongo.py), a
Kubernetes API server (kube_server/), a single-node cluster whose pods run (kube_cluster/), Docker hosts
reached over ssh:// and TLS (docker_hosts/), the test database's image (testbed/images/test-mongo/), their
installers (install/) and version pins (versions.sh)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

TESTBED = Path(__file__).resolve().parent


def base_image() -> str:
    """The base of the testbed's images: the offline one of `make docker-engine` unless BASE_IMAGE says."""
    return os.environ.get("BASE_IMAGE", "hyperfleet/base:bookworm")


def _docker(host: str | None) -> list[str]:
    """The docker command for the engine at ``host`` (the local one by default)."""
    return ["docker", *(["-H", host] if host else [])]


def image_id(image: str, host: str | None = None) -> str | None:
    """The ID of ``image`` in the Docker engine at ``host`` (the local one by default), or None."""
    found = subprocess.run([*_docker(host), "image", "inspect", "--format", "{{.Id}}", image],
                           capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def replacing_image(image: str, make: Callable[[], object], host: str | None = None) -> None:
    """``make()`` (a build or a load that tags ``image``), then remove the image the tag named before,
    when it is another one: each rebuild would otherwise leave an untagged copy of nearly a GB behind,
    and a few dozen of them filled the disk until the test cluster's kubelet, short of space, deleted
    the images it could not pull again. An image still used by a container or another tag stays."""
    before = image_id(image, host)
    make()
    if before and image_id(image, host) != before:
        tags = subprocess.run([*_docker(host), "image", "inspect", "--format", "{{len .RepoTags}}", before],
                              capture_output=True, text=True).stdout.strip()
        if tags == "0":  # untagged now (removing it by ID would also untag what another tag still names)
            subprocess.run([*_docker(host), "image", "rm", before], capture_output=True)


@cache
def pins() -> dict[str, str]:
    """The version pins of versions.sh (the one file that holds them), as the shell sees them: a pin
    written ``VAR="${VAR:-x}"`` takes ``VAR`` from the environment when it is set."""
    values = {}
    for line in (TESTBED / "versions.sh").read_text().splitlines():
        if match := re.fullmatch(r'(\w+)="\$\{(\w+):-([^}]*)\}"', line):
            values[match[1]] = os.environ.get(match[2]) or match[3]
        elif match := re.fullmatch(r"(\w+)=([^\s(\"$]+)", line):
            values[match[1]] = match[2]
    return values
