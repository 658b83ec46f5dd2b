"""Running the Pulumi engine against the test API server with the stand-in Kubernetes provider plugin.

The real plugin (``pulumi-resource-kubernetes`` 4.34.2) cannot be had where these tests run (no
internet, the Go module proxy refuses), so tests put ``standin_plugin/`` first on PATH: the engine
(3.255) takes an executable ``pulumi-resource-<name>`` found on PATH as an *ambient* plugin, before any
installed one, and says so in a warning (``using pulumi-resource-kubernetes from $PATH at …``).
Nothing is installed into a PULUMI_HOME, so a real plugin installed there is not shadowed outside tests.
See ``standin_plugin/provider.py`` for what the stand-in does and does not do.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.kube_server import find_helm
from tests.pulumi_engine import engine_env

STANDIN_PLUGIN_DIR = Path(__file__).resolve().parent / "standin_plugin"
STANDIN_PLUGIN = STANDIN_PLUGIN_DIR / "pulumi-resource-kubernetes"


def standin_plugin_env(env: dict) -> dict:
    """A copy of ``env`` (for running ``pulumi``) in which the engine finds the stand-in Kubernetes plugin,
    and the plugin finds the tests' helm (for ``helm.v3.Chart``) in PULUMI_K8S_STANDIN_HELM."""
    env = dict(env)
    env["PATH"] = os.pathsep.join([str(STANDIN_PLUGIN_DIR)] + [p for p in [env.get("PATH")] if p])
    env.pop("PULUMI_IGNORE_AMBIENT_PLUGINS", None)  # it would hide the stand-in from the engine
    helm = find_helm()
    if helm and "PULUMI_K8S_STANDIN_HELM" not in env:
        env["PULUMI_K8S_STANDIN_HELM"] = helm
    return env


def pulumi_engine_env(state_dir, passphrase: str) -> dict:
    """The engine's environment of the tests (tests/pulumi_engine.py) with the stand-in Kubernetes plugin."""
    return standin_plugin_env(engine_env(state_dir, passphrase))
