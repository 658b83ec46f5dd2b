"""The hyperfleet Pulumi program: read the stack config, deploy the chosen target, export outputs.

Pulumi runs this folder as a script, with the folder first on ``sys.path``: there ``docker/`` and
``kubernetes/`` would stand for the Docker and Kubernetes client libraries the runtime imports. So the
program is imported as the package ``infra``, from the repository root, and this folder leaves the path.
"""

import sys
from pathlib import Path

INFRA = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != INFRA]
sys.path.insert(0, str(INFRA.parent))

import pulumi  # noqa: E402

from infra import config as stack_config  # noqa: E402


def main() -> None:
    try:
        config = stack_config.load()
        stack_config.check_dashboard_token(config, stack_config.dashboard_token())
    except stack_config.ConfigError as err:
        raise pulumi.RunError(str(err)) from None
    stack = pulumi.get_stack()
    if config.target == "docker":
        from infra.docker import target

        target.check_engines(config)
    else:
        from infra.kubernetes import target
    outputs = target.deploy(config, stack)
    for key, value in outputs.items():
        pulumi.export(key, value)


main()
