"""Docker engine addresses: their kind, what is this machine only, the ssh command, the monitor's flags."""

import json

import pytest
from click.testing import CliRunner

from hyperfleet.cli import main
from hyperfleet.engines import EngineAccess, EngineUnreachable, is_loopback, kind, ping, ssh_command


def test_kinds_and_loopback():
    assert [kind(u) for u in ("unix:///var/run/docker.sock", "ssh://me@gpu-1", "tcp://10.0.0.7:2376")] == \
        ["unix", "ssh", "tcp"]
    with pytest.raises(ValueError, match="not 'gpu-1:2375'"):
        kind("gpu-1:2375")
    assert is_loopback("tcp://127.0.0.1:2375") and is_loopback("tcp://localhost:2375") and is_loopback("tcp://[::1]:2375")
    assert not is_loopback("tcp://10.0.0.7:2375") and not is_loopback("tcp://gpu-1:2375")


def test_the_ssh_command_is_dockers_own_transport():
    assert ssh_command("ssh://me@gpu-1:2222", ["-i", "/k"]) == \
        ["ssh", "-i", "/k", "-p", "2222", "--", "me@gpu-1", "docker", "system", "dial-stdio"]
    assert ssh_command("ssh://gpu-1") == ["ssh", "--", "gpu-1", "docker", "system", "dial-stdio"]


def test_an_engine_that_does_not_answer_is_named(tmp_path):
    with pytest.raises(EngineUnreachable, match=f"^unix://{tmp_path}/none.sock: "):
        ping(EngineAccess(f"unix://{tmp_path}/none.sock"), timeout_seconds=2)


def test_the_monitor_takes_more_engines_and_a_cert_path():
    result = CliRunner().invoke(main, ["monitor", "--liveness", "docker", "--docker-engine", "ssh://me@gpu-1",
                                       "--docker-engine", "tcp://gpu-2:2376", "--docker-cert-path", "/certs",
                                       "--print-settings"])
    assert result.exit_code == 0, result.output
    settings = json.loads(result.output)
    assert settings["docker_engines"] == ["ssh://me@gpu-1", "tcp://gpu-2:2376"]
    assert settings["docker_cert_path"] == "/certs"
