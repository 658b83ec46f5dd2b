"""Every environment variable that `hyperfleet worker --help` lists sets its option: the help text is
the reference, and this table is read from the command itself."""

import json

import click
import pytest
from click.testing import CliRunner

from hyperfleet.cli import worker

# a valid value per option type, and what --print-settings then shows
VALUES = {
    "mongo_url": ("mongodb://env-host:27018/envdb", "mongodb://env-host:27018/envdb"),
    "exp_key": ("env-exp", "env-exp"),
    "workdir": ("/tmp/env-workdir", "/tmp/env-workdir"),
    "alive_file": ("/tmp/env-alive", "/tmp/env-alive"),
    "use_subprocesses": ("true", True),
    "gpu": ("GPU-3a23c669-1f69", "GPU-3a23c669-1f69"),
    "preload": ("scipy.stats, json", ["scipy.stats", "json"]),
}


def env_options():
    for param in worker.params:
        if isinstance(param, click.Option) and param.envvar and param.name not in ("log_level", "log_json"):
            for name in param.envvar:
                yield name, param


def value_for(param):
    if param.name in VALUES:
        return VALUES[param.name]
    if isinstance(param.type, click.IntRange):
        return "7", 7
    if isinstance(param.type, click.FloatRange):
        return "3.5", 3.5
    raise AssertionError(f"no test value for {param.name} ({param.type}): add one to VALUES")


@pytest.mark.parametrize("name,param", list(env_options()), ids=[n for n, _ in env_options()])
def test_every_env_var_in_the_help_sets_its_option(name, param):
    assert name in CliRunner().invoke(worker, ["--help"]).output  # the help is the reference
    text, expected = value_for(param)
    result = CliRunner().invoke(worker, ["--print-settings"], env={name: text}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[param.name] == expected, (name, result.output)


@pytest.mark.parametrize("value,said", [("1bad", "not a module name"), ("scipy..stats", "not a module name"),
                                        ("os.path,-x", "not a module name"), ("json,no_such_module_here.sub", "no such module")])
def test_preload_refuses_what_is_not_an_importable_module_name(value, said):
    result = CliRunner().invoke(worker, ["--preload", value, "--print-settings"])
    assert result.exit_code == 2 and said in result.output, result.output


def test_the_documented_flag_names_work():
    """The runtime README promises HYPERFLEET_WORKER_<OPTION>; these were silently ignored before."""
    names = {name for name, _ in env_options()}
    for flag in ("POLL_INTERVAL", "RESERVE_TIMEOUT", "LAST_JOB_TIMEOUT", "SUBPROCESSES"):
        assert f"HYPERFLEET_WORKER_{flag}" in names


def test_version_is_the_package_version():
    from importlib.metadata import version

    from hyperfleet.cli import main

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip().endswith(version("hyperfleet"))


@pytest.mark.parametrize("command", ["monitor", "run", "status", "report"])
def test_every_env_var_another_command_lists_in_its_help_is_read(command, monkeypatch):
    """The names --help shows are the ones click reads (the worker's are checked end to end above)."""
    import re

    from hyperfleet.cli import main

    cmd = main.commands[command]
    parent = click.Context(main, info_name="hyperfleet", auto_envvar_prefix="HYPERFLEET")
    ctx = click.Context(cmd, parent=parent, info_name=command, **(cmd.context_settings or {}))
    checked = 0
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        shown = re.search(r"env var: ([^;\]]+)", param.get_help_record(ctx)[1])
        assert shown, f"{command} --help shows no env var for {param.opts[0]}"
        for name in shown.group(1).split(", "):
            monkeypatch.setenv(name, "from-env")
            assert param.resolve_envvar_value(ctx) == "from-env", (command, name)
            monkeypatch.delenv(name)
            checked += 1
    assert checked >= 3
