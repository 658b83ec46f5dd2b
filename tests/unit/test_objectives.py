"""Container objectives (runtime/hyperfleet/objectives): what a trial container sees is written once,
in objectives/contract.py; the Docker and the Kubernetes backend both use it."""

import ast
import subprocess
import sys

import pytest

from hyperfleet.objectives import ContainerObjective, contract
from tests.helpers import REPO, worker_env


def test_loss_json_rules():
    assert contract.parse_loss(b'{"loss": 1.5}', "c", "") == {"loss": 1.5, "status": "ok"}
    assert contract.parse_loss(b"2", "c", "") == {"loss": 2, "status": "ok"}
    assert contract.parse_loss(b'{"status": "fail"}', "c", "")["status"] == "fail"
    for raw, message in ((b"not json", "not JSON"), (b'{"loss": "x"}', "finite number"),
                         (b'{"loss": 1, "status": "meh"}', "status"), (b"[1]", "must hold an object")):
        with pytest.raises(contract.ContainerTrialError, match="(?s)" + message):
            contract.parse_loss(raw, "c", "")


def test_a_trial_container_gets_the_experiments_env_then_the_contracts():
    objective = ContainerObjective(image="me/trainer:1", env=(("EPOCHS", "5"), (contract.TRIAL_ID_ENV, "mine")))
    env = contract.trial_environment(objective, "search", 7)
    assert env == {"EPOCHS": "5", contract.PARAMS_ENV: "/hyperfleet/params.json", contract.LOSS_ENV: "/hyperfleet/loss.json",
                   contract.OUT_ENV: "/hyperfleet/out", contract.TRIAL_ID_ENV: "7", contract.EXP_KEY_ENV: "search",
                   contract.PROGRESS_ENV: contract.PROGRESS_MARK}
    assert set(env) - {"EPOCHS"} == set(contract.TRIAL_ENV)


def test_the_example_objective_reads_the_contracts_names_and_paths():
    # the example runs in a user's image without hyperfleet, so it spells the names out
    source = (REPO / "examples/container-objective/objective.py").read_text()
    strings = {node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Constant)}
    for name, path in ((contract.PARAMS_ENV, contract.PARAMS_PATH), (contract.LOSS_ENV, contract.LOSS_PATH),
                       (contract.OUT_ENV, contract.OUT_PATH)):
        assert f'os.environ.get("{name}", "{path}")' in source, name
    assert f'os.environ.get("{contract.PROGRESS_ENV}", "{contract.PROGRESS_MARK}")' in source
    assert contract.TRIAL_ID_ENV in strings


def test_progress_lines_are_read_as_the_log_comes_in_chunks():
    """The mark and a JSON object; lines split across chunks, other lines, and malformed marks skipped."""
    chunks = [b"epoch 1\nhyperfleet-progress: {\"st", b"ep\": 0, \"loss\": 2.5}\nhyperfleet-progress: {\"step\": 1}\n",
              b"hyperfleet-progress: not json\n", b"hyperfleet-progress:{\"step\": 2, \"loss\": 1}"]
    follower = contract.ProgressFollower(lambda: iter(chunks), "t")
    follower.start()
    follower.join(10)
    assert follower.drain() == [(0, 2.5), (2, 1)]
    assert follower.drain() == []
    assert follower.log == b"".join(chunks)
    assert contract.progress_value("  hyperfleet-progress: {\"step\": 3, \"loss\": 0.5}\r") == (3, 0.5)
    assert contract.progress_value("loss 0.5") is None


def test_the_collect_step_of_a_trial_pod_runs_as_a_module_without_warnings():
    # a trial pod's second container runs python3 -m hyperfleet.objectives.kubernetes: the package
    # must not import that module first (Python warns, in the log the worker reads)
    from hyperfleet.objectives import kubernetes

    run = subprocess.run([sys.executable, "-W", "error", *kubernetes.COLLECT_COMMAND[1:-1]],
                         capture_output=True, text=True, env=worker_env(PYTHONPATH=f"{REPO / 'runtime'}:{REPO}"),
                         timeout=60)
    assert run.returncode == 2 and run.stderr == f"usage: {' '.join(kubernetes.COLLECT_COMMAND)}\n", run.stderr


def test_removing_owned_containers_logs_an_engine_that_does_not_answer_and_not_one_that_is_absent(monkeypatch, caplog):
    import logging
    import socket

    from hyperfleet.objectives import docker as docker_objective

    monkeypatch.setattr(docker_objective, "REMOVE_TIMEOUT_SECONDS", 0.5)
    with socket.socket() as silent:  # accepts (the backlog) and never answers: a stalled engine
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{silent.getsockname()[1]}")
        with caplog.at_level(logging.WARNING, logger="hyperfleet"):
            assert docker_objective.remove_owned_containers("host:1") == 0
    assert "could not list the trial containers of host:1" in caplog.text
    caplog.clear()
    with socket.socket() as closed:  # nothing listens: no engine, so no container either
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{closed.getsockname()[1]}")
        with caplog.at_level(logging.WARNING, logger="hyperfleet"):
            assert docker_objective.remove_owned_containers("host:1") == 0
    assert caplog.text == ""
