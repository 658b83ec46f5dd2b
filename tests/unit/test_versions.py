"""One version: runtime/pyproject.toml's. Every other place that names it must agree."""

from importlib.metadata import version

import yaml

import hyperfleet
from tests.helpers import REPO

VERSION = version("hyperfleet")


def test_the_package_chart_and_stacks_name_one_version():
    assert hyperfleet.__version__ == VERSION
    chart = yaml.safe_load((REPO / "charts" / "hyperfleet" / "Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION
    for stack in ("dev", "kind"):
        config = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
        assert config["hyperfleet:images"]["runtime"] == f"hyperfleet/runtime:{VERSION}", stack
    assert f"runtime (hyperfleet/runtime:{VERSION})" in (REPO / "Pulumi.yaml").read_text()


def test_the_test_server_and_its_image_load_the_same_extensions():
    from testbed.mongo import PRELOAD

    entrypoint = (REPO / "testbed" / "images" / "test-mongo" / "entrypoint.sh").read_text()
    assert f"shared_preload_libraries = '{PRELOAD}'" in entrypoint
