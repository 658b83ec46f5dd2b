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

from tests.kube_server import CACHE_DIR, find_helm

STANDIN_PLUGIN_DIR = Path(__file__).resolve().parent / "standin_plugin"
STANDIN_PLUGIN = STANDIN_PLUGIN_DIR / "pulumi-resource-kubernetes"


def standin_plugin_env(env: dict) -> dict:
    """A copy of ``env`` (for running ``pulumi``) in which the engine finds the stand-in Kubernetes plugin,
    and the plugin finds helm (for ``helm.v3.Chart``) even when HYPERFLEET_CACHE is not passed on."""
    env = dict(env)
    env["PATH"] = os.pathsep.join([str(STANDIN_PLUGIN_DIR)] + [p for p in [env.get("PATH")] if p])
    env.pop("PULUMI_IGNORE_AMBIENT_PLUGINS", None)  # it would hide the stand-in from the engine
    helm = find_helm()
    if helm and "PULUMI_K8S_STANDIN_HELM" not in env:
        env["PULUMI_K8S_STANDIN_HELM"] = helm
    return env


def pulumi_engine_env(state_dir, passphrase: str) -> dict:
    """The environment the tests run ``pulumi`` in: the engine and Python language host of
    ``make toolchain`` on PATH, its PULUMI_HOME, a file backend in ``state_dir``, no plugin downloads,
    and the stand-in Kubernetes plugin."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPERFLEET_", "MONGO_", "KUBECONFIG"))}
    env["PATH"] = os.pathsep.join([str(CACHE_DIR / "toolchain" / "bin"), env.get("PATH", "")])
    env["PULUMI_HOME"] = str(CACHE_DIR / "pulumi" / "home")
    env.update(PULUMI_BACKEND_URL=f"file://{state_dir}", PULUMI_CONFIG_PASSPHRASE=passphrase,
               PULUMI_SKIP_UPDATE_CHECK="true", PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true")
    return standin_plugin_env(env)
