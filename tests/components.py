"""The components a test may need (Docker, the Pulumi engine, helm, Kubernetes, root, a browser): a test
(or the fixture that starts the component) calls ``needs(component)`` first, so that one the user opted
out of is neither installed nor started, and ``component_missing`` when it is not there."""

from __future__ import annotations

import os


#: the components a test may need; HYPERFLEET_TESTS_WITHOUT=docker,helm (say) opts out of them
COMPONENTS = ("docker", "pulumi", "helm", "kubernetes", "root", "browser")
OPT_OUT = "HYPERFLEET_TESTS_WITHOUT"


def needs(component: str) -> None:
    """Skip the test when the user opted out of ``component`` (``HYPERFLEET_TESTS_WITHOUT``), before
    anything of it is looked for or started; an unknown name in the opt-out fails."""
    import pytest

    assert component in COMPONENTS, component
    opted_out = {c.strip() for c in os.environ.get(OPT_OUT, "").split(",") if c.strip()}
    unknown = opted_out - set(COMPONENTS)
    if unknown:
        pytest.fail(f"{OPT_OUT}: unknown component(s) {', '.join(sorted(unknown))}; known: {', '.join(COMPONENTS)}")
    if component in opted_out:
        pytest.skip(f"needs {component} ({OPT_OUT} opts out of it)")


def component_missing(component: str, problem: str):
    """A test that needs ``component`` fails when it is missing, saying how to get it, unless the user
    opted out of it explicitly: then, and only then, it is skipped."""
    import pytest

    needs(component)
    pytest.fail(f"{problem} (or set {OPT_OUT}={component} to skip the tests that need it)")
