"""The hyperfleet Pulumi program: read the stack config, deploy the chosen target, export outputs."""

import pulumi

import config as stack_config


def main() -> None:
    try:
        config = stack_config.load()
    except stack_config.ConfigError as err:
        raise pulumi.RunError(str(err)) from None
    stack = pulumi.get_stack()
    if config.target == "docker":
        from targets import docker as target

        target.check_engines(config)
    else:
        from targets import kubernetes as target
    outputs = target.deploy(config, stack)
    for key, value in outputs.items():
        pulumi.export(key, value)


main()
