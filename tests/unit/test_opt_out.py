"""A missing component fails the tests that need it; only an explicit HYPERFLEET_TESTS_WITHOUT skips them."""

import pytest

from tests.components import OPT_OUT, component_missing, needs


def test_a_missing_component_fails_with_how_to_get_it(monkeypatch):
    monkeypatch.delenv(OPT_OUT, raising=False)
    with pytest.raises(pytest.fail.Exception, match=f"no Docker engine .*set {OPT_OUT}=docker"):
        component_missing("docker", "no Docker engine")


def test_an_explicit_opt_out_skips_and_only_for_that_component(monkeypatch):
    monkeypatch.setenv(OPT_OUT, "helm, docker")
    with pytest.raises(pytest.skip.Exception, match="needs docker"):
        component_missing("docker", "no Docker engine")
    with pytest.raises(pytest.fail.Exception):
        component_missing("pulumi", "no pulumi engine")


def test_an_unknown_component_in_the_opt_out_is_an_error(monkeypatch):
    monkeypatch.setenv(OPT_OUT, "dokcer")
    with pytest.raises(pytest.fail.Exception, match="unknown component.*dokcer"):
        component_missing("docker", "no Docker engine")


def test_needs_skips_an_opted_out_component_before_anything_is_looked_for(monkeypatch):
    """Fixtures call needs() first: an opted-out component present on the machine is not started."""
    monkeypatch.setenv(OPT_OUT, "docker")
    with pytest.raises(pytest.skip.Exception, match="needs docker"):
        needs("docker")
    assert needs("kubernetes") is None
    monkeypatch.delenv(OPT_OUT)
    assert needs("docker") is None
