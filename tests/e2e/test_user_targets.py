"""The user's targets need only what a laptop has: `make preview`, from a fresh clone as an unprivileged
user, reaches the Pulumi engine with no Go, apt, dpkg, debootstrap or sudo on PATH (each replaced by a
trap that records any call); a missing prerequisite is one line naming it and its fix; and `make up` of
a stack whose Mongo image can't be pulled says to use the offline stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.components import needs
from tests.helpers import REPO
from testbed.processes import CACHE_DIR

FORBIDDEN = ("go", "gofmt", "apt-get", "apt", "dpkg", "debootstrap", "sudo")


@pytest.fixture
def user_tmp():
    """A folder an unprivileged user can reach: one of its own under /tmp, not pytest's tmp_path, whose
    parent another pytest session on the machine (make test runs several) may set back to 0700."""
    folder = Path(tempfile.mkdtemp(prefix="hyperfleet-user-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def restricted_path(folder: Path, drop=()) -> tuple[str, str]:
    """A PATH of one folder: every command of the usual folders but FORBIDDEN (traps that note the call)
    and ``drop`` (absent). Returns the PATH and the file the traps write to. Any user may use both."""
    shared = folder / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    bin_dir, calls = shared / "bin", shared / "forbidden-calls"
    bin_dir.mkdir()
    for folder in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            target = bin_dir / name
            if name in FORBIDDEN or name in drop or target.exists():
                continue
            target.symlink_to(os.path.join(folder, name))
    for name in FORBIDDEN:
        trap = bin_dir / name
        trap.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit 1\n')
        trap.chmod(0o755)
    return str(bin_dir), str(calls)


def user_toolchain(cache) -> None:
    """What `make toolchain` leaves on a user's machine, copied where an unprivileged user may use it: the
    pulumi CLI with its Python host, the docker plugin, and toolchain/bin."""
    (cli,) = sorted((CACHE_DIR / "pulumi").glob("v*/bin"))[-1:]
    (plugin,) = [p for p in sorted((CACHE_DIR / "pulumi" / "home" / "plugins").glob("resource-docker-v*")) if p.is_dir()][-1:]
    shutil.copytree(cli.parent, cache / "pulumi" / cli.parent.name, symlinks=True)
    shutil.copytree(plugin, cache / "pulumi" / "home" / "plugins" / plugin.name)
    (cache / "toolchain" / "bin").mkdir(parents=True)
    for tool in (cache / "pulumi" / cli.parent.name / "bin").iterdir():
        (cache / "toolchain" / "bin" / tool.name).symlink_to(tool)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_make_preview_as_an_unprivileged_user_reaches_the_engine_without_go_apt_or_debootstrap(user_tmp):
    """A fresh clone, user nobody (in the docker group, as on a laptop), go, apt, dpkg, debootstrap and
    sudo replaced by traps: `make preview STACK=dev` makes its venv and reaches the Pulumi engine."""
    needs("docker")
    needs("pulumi")
    path, calls = restricted_path(user_tmp)
    shared = user_tmp / "shared"
    clone, cache = shared / "hyperfleet", shared / "home"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    cache.mkdir()
    user_toolchain(cache)
    subprocess.run(["chown", "-R", "65534:65534", str(clone), str(cache)], check=True)
    docker_group = os.stat("/var/run/docker.sock").st_gid
    env = {"PATH": path, "HOME": str(cache), "HYPERFLEET_CACHE": str(cache)}
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", f"--groups={docker_group}",
                             "make", "-C", str(clone), "preview", "STACK=dev", f"PULUMI_STATE_DIR={shared / 'state'}"],
                            env=env, capture_output=True, text=True, timeout=540)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "+ 15 to create" in output, output[-3000:]
    assert not os.path.exists(calls), open(calls).read()


def test_each_missing_prerequisite_is_one_line_naming_its_fix(user_tmp):
    path, calls = restricted_path(user_tmp, drop=("kind", "kubectl"))
    empty_cache = user_tmp / "shared" / "cache"
    empty_cache.mkdir(mode=0o777)
    env = {"PATH": path, "HOME": str(empty_cache), "HYPERFLEET_CACHE": str(empty_cache),
           "DOCKER_HOST": f"unix://{user_tmp}/no-engine.sock"}
    # an unprivileged user (nobody), as on a laptop without root
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             str(REPO / "scripts" / "check-prerequisites.sh"), "docker", "pulumi", "kind", "kubectl"],
                            env=env, capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert [line.split(":")[1].strip() for line in lines] == \
        ["a Docker engine that answers (docker info", "pulumi", "kind", "kubectl"], lines
    assert "start Docker Desktop or dockerd, or point DOCKER_HOST at an engine" in lines[0]
    assert "install Pulumi" in lines[1] and "make toolchain" in lines[1]
    assert not os.path.exists(calls)


def test_make_up_of_a_stack_whose_mongo_image_cant_be_pulled_points_to_the_offline_stack(tmp_path):
    # the dev stack with a Mongo image no registry has (.invalid is a reserved name), wherever this runs
    needs("docker")
    config = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())
    config["config"]["hyperfleet:mongo"] = {**config["config"].get("hyperfleet:mongo", {}),
                                            "image": "mongo.invalid/mongo:7.0"}
    config_file = tmp_path / "Pulumi.dev.yaml"
    config_file.write_text(json.dumps(config))
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "check-stack-images.py"), "dev", str(config_file)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert ("error: mongo.invalid/mongo:7.0 (hyperfleet:mongo.image of stack dev) can't be pulled here" in result.stderr
            and "use the offline stack: make up STACK=ci" in result.stderr), result.stderr
