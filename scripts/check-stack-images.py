"""Before `make up`: can the Docker engine get every image a docker-target stack runs? One line per
image it can't get, naming the config key, and exit 1; nothing is created.

    python scripts/check-stack-images.py STACK [CONFIG_FILE]   (default Pulumi.STACK.yaml; the .venv of make install)

Images the stack builds itself (images.build) are not checked. Kubernetes stacks are not checked
here: their images come from the cluster's own registry access (or `kind load`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infra.config import NAMESPACE, ConfigError, parse_config  # noqa: E402  (the Pulumi program, as a package)


def available(image: str) -> tuple[bool, str]:
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
        return True, ""
    pull = subprocess.run(["docker", "pull", "--quiet", image], capture_output=True, text=True)
    return pull.returncode == 0, (pull.stderr.strip().splitlines() or ["docker pull failed"])[-1]


def main(stack: str, config_file: Path) -> int:
    raw = yaml.safe_load(config_file.read_text()).get("config") or {}
    try:
        config = parse_config({k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith(f"{NAMESPACE}:")})
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    if config.target != "docker":
        return 0
    wanted = {f"{NAMESPACE}:mongo.image": config.mongo.image}
    if not config.images.build:
        wanted[f"{NAMESPACE}:images.runtime"] = config.worker_image
    failed = 0
    for key, image in wanted.items():
        ok, why = available(image)
        if not ok:
            failed = 1
            hint = "; on a machine without registry access, use the offline stack: make up STACK=ci" \
                if stack != "ci" else ""
            print(f"error: {image} ({key} of stack {stack}) can't be pulled here: {why}{hint}", file=sys.stderr)
    return failed


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) == 3 else REPO / f"Pulumi.{sys.argv[1]}.yaml"))
