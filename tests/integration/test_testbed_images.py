"""The testbed's rebuilds leave no untagged image behind (testbed.replacing_image), on the real dockerd."""

import subprocess
import uuid

import pytest

from testbed import base_image, image_id, replacing_image


def build(tag: str, label: str) -> None:
    """An image of no new layer (a label on the base), so that each label gives another image ID."""
    subprocess.run(["docker", "build", "--quiet", "-t", tag, "-"], input=f"FROM {base_image()}\nLABEL t={label}\n",
                   text=True, check=True, capture_output=True)


@pytest.fixture
def tag(docker_worker_image):
    name = f"hyperfleet/replacing-test:{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["docker", "image", "rm", name, f"{name}-kept"], capture_output=True)


@pytest.mark.timeout(120)
def test_a_rebuild_removes_the_image_it_replaced_and_keeps_one_still_in_use(tag):
    replacing_image(tag, lambda: build(tag, "one"))
    first = image_id(tag)
    replacing_image(tag, lambda: build(tag, "one"))  # the same image again: nothing to remove
    assert image_id(tag) == first

    replacing_image(tag, lambda: build(tag, "two"))
    second = image_id(tag)
    assert second not in (None, first)
    assert image_id(first) is None  # the replaced one is gone, not left untagged

    subprocess.run(["docker", "tag", tag, f"{tag}-kept"], check=True)  # another tag names it
    replacing_image(tag, lambda: build(tag, "three"))
    assert image_id(second) == second and image_id(f"{tag}-kept") == second
    assert image_id(tag) not in (None, second)
