"""What a worker records as the holder of its trial (worker.worker_identity): the monitor's liveness
checks judge it by these fields, so each must be there exactly when its deployer said so."""

import os
import socket

from hyperfleet.contract import (CONTAINER_NAME_ENV, DOCKER_ENGINE_ENV, NVIDIA_VISIBLE_DEVICES_ENV, POD_NAME_ENV,
                                 POD_NAMESPACE_ENV)
from hyperfleet.liveness import process_start_ticks
from hyperfleet.worker import worker_identity

ENVS = (CONTAINER_NAME_ENV, DOCKER_ENGINE_ENV, POD_NAME_ENV, POD_NAMESPACE_ENV)


def identity_with(monkeypatch, **env):
    for name in ENVS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return worker_identity()


def test_a_process_on_a_host_is_its_host_pid_and_start_time(monkeypatch):
    assert identity_with(monkeypatch) == {"host": socket.gethostname(), "pid": os.getpid(),
                                          "pid_start": process_start_ticks(os.getpid())}


def test_a_container_is_named_with_its_engine_only_when_the_deployer_gave_both(monkeypatch):
    named = identity_with(monkeypatch, **{CONTAINER_NAME_ENV: "hf-worker-1", DOCKER_ENGINE_ENV: "ssh://gpu-host"})
    assert (named["container"], named["engine"]) == ("hf-worker-1", "ssh://gpu-host")
    alone = identity_with(monkeypatch, **{CONTAINER_NAME_ENV: "hf-worker-1"})
    assert alone["container"] == "hf-worker-1" and "engine" not in alone
    # an engine without a container says nothing the docker check could use
    assert {"container", "engine"}.isdisjoint(identity_with(monkeypatch, **{DOCKER_ENGINE_ENV: "ssh://gpu-host"}))


def test_a_pod_is_named_with_its_namespace(monkeypatch):
    pod = identity_with(monkeypatch, **{POD_NAME_ENV: "hf-worker-7f9", POD_NAMESPACE_ENV: "hf"})
    assert (pod["pod"], pod["namespace"]) == ("hf-worker-7f9", "hf") and "container" not in pod
    assert "namespace" not in identity_with(monkeypatch, **{POD_NAME_ENV: "hf-worker-7f9", POD_NAMESPACE_ENV: ""})


def test_a_worker_given_gpus_by_the_container_toolkit_records_them_unless_they_name_none(monkeypatch):
    """Without --gpu, a worker's GPU is what the NVIDIA Container Toolkit gave its container
    (NVIDIA_VISIBLE_DEVICES, as a pod given GPUs by the device plugin has it); its words for all or no
    device name no GPU of this worker's own."""
    monkeypatch.delenv(NVIDIA_VISIBLE_DEVICES_ENV, raising=False)
    assert "gpu" not in identity_with(monkeypatch)
    for given, recorded in (("1", "1"), ("0,2", "0,2"), ("all", None), ("none", None), ("void", None), ("", None)):
        monkeypatch.setenv(NVIDIA_VISIBLE_DEVICES_ENV, given)
        assert identity_with(monkeypatch).get("gpu") == recorded, given
    monkeypatch.setenv(NVIDIA_VISIBLE_DEVICES_ENV, "1")
    assert worker_identity("3")["gpu"] == "3"  # --gpu wins
