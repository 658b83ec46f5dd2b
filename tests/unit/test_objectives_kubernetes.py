"""The trial pod a worker asks Kubernetes for (runtime/hyperfleet/objectives/kubernetes.py), from an experiment
spec's container objective; what runs it is tests/e2e/test_kube_trial_pods.py."""

import io
import json
import tarfile

from hyperfleet import contract
from hyperfleet.objectives import from_spec
from hyperfleet.objectives import kubernetes as trial_pods
from hyperfleet.objectives.contract import EXP_KEY_ENV, PARAMS_ENV, PARAMS_PATH, TRIAL_ID_ENV
from hyperfleet.spec import parse_spec

SPEC = {"name": "gpu-search", "algo": "rand", "max_evals": 4, "space": {"x": {"uniform": [0, 1]}},
        "objective": {"image": "me/trainer:3", "command": ["python", "train.py"], "env": {"EPOCHS": "5"},
                      "pull": "always",
                      "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"nvidia.com/gpu": 1}},
                      "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
                      "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}}


def manifest(monkeypatch, owner="hyperfleet-ml-worker-5d9c7b-x2x4q:7"):
    monkeypatch.setenv(trial_pods.POD_NAME_ENV, "hyperfleet-ml-worker-5d9c7b-x2x4q")
    monkeypatch.setenv(trial_pods.POD_UID_ENV, "6f1f2c9e-0000-4000-8000-000000000001")
    monkeypatch.setenv(trial_pods.RUNTIME_IMAGE_ENV, "hyperfleet/runtime:0.1.0")
    spec = parse_spec(SPEC)
    objective = from_spec(spec.objective.model_dump(exclude_none=True))
    return trial_pods.pod_manifest(objective, {"x": 0.25}, spec.key, 3, owner)


def test_the_spec_reaches_the_trial_pod(monkeypatch):
    pod = manifest(monkeypatch)
    spec = pod["spec"]
    (trial,) = spec["initContainers"]
    assert trial["image"] == "me/trainer:3" and trial["args"] == ["python", "train.py"]
    assert trial["imagePullPolicy"] == "Always"
    assert trial["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"nvidia.com/gpu": "1"}}
    env = {e["name"]: e["value"] for e in trial["env"]}
    assert env["EPOCHS"] == "5" and env[TRIAL_ID_ENV] == "3" and env[EXP_KEY_ENV] == "gpu-search"
    assert env[PARAMS_ENV] == PARAMS_PATH
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert json.loads(pod["metadata"]["annotations"][contract.K8S_PARAMS_ANNOTATION]) == {"x": 0.25}
    (collect,) = spec["containers"]
    assert collect["image"] == "hyperfleet/runtime:0.1.0"
    assert collect["command"][1:3] == ["-m", trial_pods.__name__]


def test_a_trial_pod_is_owned_by_its_workers_pod_and_labelled_with_its_owner(monkeypatch):
    metadata = manifest(monkeypatch)["metadata"]
    assert metadata["ownerReferences"] == [{"apiVersion": "v1", "kind": "Pod",
                                            "name": "hyperfleet-ml-worker-5d9c7b-x2x4q",
                                            "uid": "6f1f2c9e-0000-4000-8000-000000000001"}]
    assert metadata["labels"][contract.K8S_OWNER_LABEL] == "hyperfleet-ml-worker-5d9c7b-x2x4q_7"
    assert metadata["labels"]["app.kubernetes.io/component"] == "trial"
    assert len(metadata["name"]) <= 63 and metadata["name"].startswith("hyperfleet-trial-gpu-search-3-")


def test_a_long_owner_still_makes_a_valid_distinct_label():
    a, b = (trial_pods.owner_label("w" * 80 + f":{pid}") for pid in (1, 2))
    assert a != b and len(a) <= 63 and len(b) <= 63


def test_collect_prints_loss_and_out_in_one_line(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "curve.txt").write_text("1 2 3\n")
    (tmp_path / "loss.json").write_text('{"loss": 0.5}')
    files = trial_pods._collected(trial_pods.collect(str(tmp_path)).encode(), "pod")
    assert json.loads(files["loss"]) == {"loss": 0.5}
    with tarfile.open(fileobj=io.BytesIO(files["out"])) as tar:
        assert tar.extractfile("out/curve.txt").read() == b"1 2 3\n"
    (tmp_path / "loss.json").unlink()
    assert trial_pods._collected(trial_pods.collect(str(tmp_path)).encode(), "pod")["loss"] is None


def test_gpu_and_extended_resources_go_into_the_trial_pods_limits(monkeypatch):
    monkeypatch.setenv(trial_pods.POD_NAME_ENV, "w")
    monkeypatch.setenv(trial_pods.POD_UID_ENV, "6f1f2c9e-0000-4000-8000-000000000001")
    monkeypatch.setenv(trial_pods.RUNTIME_IMAGE_ENV, "hyperfleet/runtime:0.1.0")
    spec = parse_spec({**SPEC, "objective": {"image": "me/trainer:3", "resources": {
        "gpu": 2, "extended": {"example.com/fpga": 1}, "requests": {"cpu": "1", "example.com/fpga": 1}}}})
    objective = from_spec(spec.objective.model_dump(exclude_none=True))
    (trial,) = trial_pods.pod_manifest(objective, {"x": 0.5}, spec.key, 1, "w:1")["spec"]["initContainers"]
    assert trial["resources"] == {"requests": {"cpu": "1", "example.com/fpga": "1"},  # strings: the client's models
                                  "limits": {contract.K8S_GPU_RESOURCE: "2", "example.com/fpga": "1"}}
