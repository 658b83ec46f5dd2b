"""Running the real Pulumi engine of ``make toolchain`` from tests: its environment and a runner."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from testbed.processes import CACHE_DIR
from tests.components import component_missing, needs
from tests.helpers import REPO

#: runs a command with a private TMPDIR, removed when it ends (the Makefile's PULUMI_ENV uses it too):
#: where the kubernetes provider's copies of the kubeconfig go (docs/security.md)
PRIVATE_TMPDIR = REPO / "scripts" / "private-tmpdir.sh"


def engine_env(state_dir, passphrase: str) -> dict:
    """The engine and Python language host of ``make toolchain`` on PATH, its PULUMI_HOME (where it
    installed the plugins), a file backend in ``state_dir``, no update check and no plugin downloads;
    none of the caller's hyperfleet, Mongo or kubeconfig settings leak into the program."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPERFLEET_", "MONGO_", "KUBECONFIG"))}
    env["PATH"] = os.pathsep.join([str(CACHE_DIR / "toolchain" / "bin"), env.get("PATH", "")])
    env["PULUMI_HOME"] = str(CACHE_DIR / "pulumi" / "home")
    env.update(PULUMI_BACKEND_URL=f"file://{state_dir}", PULUMI_CONFIG_PASSPHRASE=passphrase,
               PULUMI_SKIP_UPDATE_CHECK="true", PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true")
    return env


def pulumi_runner(cwd: Path, stack: str, env: dict, timeout_seconds: float = 600):
    """``run(*args, check=True)``: ``pulumi ARGS --stack STACK --non-interactive`` in ``cwd``, through
    PRIVATE_TMPDIR (each run's temp files, the provider's kubeconfig copies among them, go when it ends);
    with check, a failure fails the test showing the end of the engine's output. Fails when no engine is
    installed."""
    needs("pulumi")
    if shutil.which("pulumi", path=env["PATH"]) is None:
        component_missing("pulumi", "no pulumi engine: run make toolchain")
    Path(env["PULUMI_BACKEND_URL"].removeprefix("file://")).mkdir(parents=True, exist_ok=True)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(PRIVATE_TMPDIR), "pulumi", *args, "--stack", stack, "--non-interactive"], cwd=cwd, env=env,
                                capture_output=True, text=True, timeout=timeout_seconds)
        if check:
            assert result.returncode == 0, \
                f"pulumi {' '.join(args)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        return result
    return run


def kube_stack(cwd: Path, stack: str, passphrase: str, state_dir, kubeconfig: str):
    """A Kubernetes stack's runner, selected (created if new) on the cluster of ``kubeconfig``; yields
    it, then destroys whatever a failed test left."""
    env = engine_env(state_dir, passphrase)
    env["KUBECONFIG"] = kubeconfig
    run = pulumi_runner(cwd, stack, env)
    run("stack", "select", "--create")
    try:
        yield run
    finally:
        run("destroy", "--yes", check=False)


def program_stack(directory: Path, stack: str, config: dict, passphrase: str, state_dir, kubeconfig: str,
                  **env_overrides: str):
    """The repository's program and chart as a project of its own in ``directory`` (so a test's stack,
    namespace and Pulumi.<stack>.yaml collide with no committed stack), stack ``stack`` with ``config``,
    on the cluster of ``kubeconfig``; yields its runner, then destroys whatever a failed test left."""
    import os

    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    project["main"] = os.path.relpath(REPO / "infra", directory)
    project["runtime"]["options"]["virtualenv"] = str(REPO / ".venv")
    (directory / "Pulumi.yaml").write_text(yaml.safe_dump(project))
    env = engine_env(state_dir, passphrase)
    env.update(KUBECONFIG=kubeconfig, **env_overrides)
    run = pulumi_runner(directory, stack, env)
    run("stack", "init")
    stack_file = directory / f"Pulumi.{stack}.yaml"
    written = (yaml.safe_load(stack_file.read_text()) if stack_file.exists() else None) or {}
    stack_file.write_text(yaml.safe_dump({**written, "config": config}))
    try:
        yield run
    finally:
        run("destroy", "--yes", check=False)
