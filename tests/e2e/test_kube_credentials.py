"""Nothing of the cluster's credentials is left in the temp directory by `pulumi preview`, `up` and
`destroy` of a Kubernetes stack (issue 33).

The kubernetes provider writes a copy of its kubeconfig, client key included, to a temp file
(``kubeconfig<digits>``, Go's os.TempDir(), i.e. $TMPDIR or /tmp) each time it is configured with a
kubeconfig, and never removes it: one per pulumi command. Pulumi is run here as the Makefile runs it
(tests/pulumi_engine.py: through scripts/private-tmpdir.sh), with $TMPDIR a directory of this test,
where every file is then searched for the client key. A stack of its own (project in tmp_path,
the repository's program and chart, a namespace of its own) on the tests' cluster.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
import yaml

from tests.helpers import wait_for
from tests.pulumi_engine import program_stack

PASSPHRASE = "hyperfleet-creds-test"  # a throwaway stack in tmp_path


def client_keys(kubeconfig: str) -> list[bytes]:
    """The client keys of ``kubeconfig``, as written there (base64) and decoded (PEM)."""
    users = yaml.safe_load(Path(kubeconfig).read_text())["users"]
    keys = [u["user"]["client-key-data"] for u in users if u["user"].get("client-key-data")]
    assert keys, f"{kubeconfig} has no client-key-data: nothing to look for"
    return [k.encode() for k in keys] + [base64.b64decode(k).strip() for k in keys]


def credential_files(directory: Path, keys: list[bytes]) -> list[str]:
    """Files under ``directory`` named kubeconfig* or holding one of ``keys``."""
    found = []
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if path.name.startswith("kubeconfig") or any(k in data for k in keys):
                found.append(str(path.relative_to(directory)))
    return sorted(found)


@pytest.fixture
def stack(kube_cluster, tmp_path):
    """Stack ``creds`` of the repository's program (its own project, namespace and state) on the tests'
    cluster, pulumi given ``tmp_path/tmp`` as TMPDIR; yields (run, that directory, the namespace)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    namespace = "hyperfleet-creds-" + uuid.uuid4().hex[:6]
    config = {
        "hyperfleet:target": "kubernetes",
        # no kubeconfig key: the provider gets KUBECONFIG's path, as for most users
        "hyperfleet:kubernetes": {"context": kube_cluster.context, "namespace": namespace, "skipAwait": True},
        "hyperfleet:mongo": {"image": "hyperfleet/test-mongo:test", "storage": "1Gi"},
        "hyperfleet:workers": {"replicas": 1, "resources": {"cpu": "100m", "memory": "256Mi"}},
        "hyperfleet:images": {"runtime": "hyperfleet/runtime:test"},
    }
    for run in program_stack(tmp_path / "project", "creds", config, PASSPHRASE, tmp_path / "state",
                             kube_cluster.kubeconfig, TMPDIR=str(temp)):
        yield run, temp, namespace


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_preview_up_destroy_leave_no_credential_file_in_the_temp_directory(stack, kube_cluster, cluster_api):
    from kubernetes import client

    from testbed.kube_server import gone

    run, temp, namespace = stack
    core = client.CoreV1Api(cluster_api)
    keys = client_keys(kube_cluster.kubeconfig)
    left = {}
    for command in (["preview"], ["up", "--yes", "--skip-preview"], ["destroy", "--yes", "--skip-preview"]):
        result = run(*command)
        left[command[0]] = credential_files(temp, keys)
        assert not any(k.decode(errors="replace") in result.stdout + result.stderr for k in keys)
        if command[0] == "up":  # it did deploy: the release's Secret is there
            assert core.read_namespaced_secret("hyperfleet-creds-mongo-auth", namespace).data
    wait_for(lambda: gone(lambda: core.read_namespace(namespace)), timeout=120, step=1)
    print(f"\ncredential files left in TMPDIR after each command: { {c: len(f) for c, f in left.items()} }")
    assert left == {"preview": [], "up": [], "destroy": []}, left
