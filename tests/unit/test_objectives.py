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
                   contract.OUT_ENV: "/hyperfleet/out", contract.TRIAL_ID_ENV: "7", contract.EXP_KEY_ENV: "search"}
    assert set(env) - {"EPOCHS"} == set(contract.TRIAL_ENV)


def test_the_example_objective_reads_the_contracts_names_and_paths():
    # the example runs in a user's image without hyperfleet, so it spells the names out
    source = (REPO / "examples/container-objective/objective.py").read_text()
    strings = {node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Constant)}
    for name, path in ((contract.PARAMS_ENV, contract.PARAMS_PATH), (contract.LOSS_ENV, contract.LOSS_PATH),
                       (contract.OUT_ENV, contract.OUT_PATH)):
        assert f'os.environ.get("{name}", "{path}")' in source, name
    assert contract.TRIAL_ID_ENV in strings


def test_the_collect_step_of_a_trial_pod_runs_as_a_module_without_warnings():
    # a trial pod's second container runs python3 -m hyperfleet.objectives.kubernetes: the package
    # must not import that module first (Python warns, in the log the worker reads)
    from hyperfleet.objectives import kubernetes

    run = subprocess.run([sys.executable, "-W", "error", *kubernetes.COLLECT_COMMAND[1:-1]],
                         capture_output=True, text=True, env=worker_env(PYTHONPATH=f"{REPO / 'runtime'}:{REPO}"),
                         timeout=60)
    assert run.returncode == 2 and run.stderr == f"usage: {' '.join(kubernetes.COLLECT_COMMAND)}\n", run.stderr
