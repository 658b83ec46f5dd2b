"""Local stand-ins for real infrastructure, not part of the product (testbed/README.md): the MongoDB
wire-protocol server that `make demo`, the examples, the benchmarks and the tests start (mongo.py), a
Kubernetes API server (kube_server/), a single-node cluster whose pods run (kube_cluster/), Docker hosts
reached over ssh:// and TLS (docker_hosts/), the test database's image (testbed/images/test-mongo/), their
installers (install/) and version pins (versions.sh)."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

TESTBED = Path(__file__).resolve().parent


def base_image() -> str:
    """The base of the testbed's images: the offline one of `make docker-engine` unless BASE_IMAGE says."""
    return os.environ.get("BASE_IMAGE", "hyperfleet/base:bookworm")


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
