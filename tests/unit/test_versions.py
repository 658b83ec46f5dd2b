"""One version: runtime/pyproject.toml's. Every other place that names it must agree. The same for the
base images: images/versions.env."""

import re
import subprocess
from importlib.metadata import version

import yaml

import hyperfleet
from tests.helpers import REPO, versions_env

VERSION = version("hyperfleet")


def test_the_package_chart_and_stacks_name_one_version():
    assert hyperfleet.__version__ == VERSION
    chart = yaml.safe_load((REPO / "charts" / "hyperfleet" / "Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION
    for stack in ("dev", "kind"):
        config = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
        assert config["hyperfleet:images"]["runtime"] == f"hyperfleet/runtime:{VERSION}", stack


def test_the_test_server_and_its_image_load_the_same_extensions_and_drop_the_same_jobs():
    from testbed.mongo import PRELOAD, TEMPLATE_SQL

    entrypoint = (REPO / "testbed" / "images" / "test-mongo" / "entrypoint.sh").read_text()
    assert f"shared_preload_libraries = '{PRELOAD}'" in entrypoint
    assert f'-c "{TEMPLATE_SQL}"' in entrypoint


def test_versions_env_is_plain_key_value_lines():
    for line in (REPO / "images/versions.env").read_text().splitlines():
        assert not line or line.startswith("#") or re.fullmatch(r"[A-Z_]+=[^\s'\"$]+", line), line


def test_every_copy_of_the_python_base_image_is_versions_envs():
    base = versions_env()["PYTHON_BASE_IMAGE"]
    for dockerfile in ("images/runtime/Dockerfile", "examples/container-objective/Dockerfile"):
        assert f"ARG BASE_IMAGE={base}\n" in (REPO / dockerfile).read_text(), dockerfile
    # documentation and anything else that spells a Python image out (the Makefile, say)
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    copies = []
    for name in tracked:
        path = REPO / name
        if name == "images/versions.env" or not path.is_file() or path.suffix in (".whl", ".png", ".ico", ".gz"):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            copies += [(f"{name}:{number}", image) for image in re.findall(r"\bpython:3\.\d+[\w.-]*", line)]
    wrong = [f"{where}: {image}" for where, image in copies if image != base]
    assert not wrong, f"images/versions.env says {base}: " + "; ".join(wrong)
