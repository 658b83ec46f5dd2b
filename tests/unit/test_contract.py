"""hyperfleet.contract is the one place for the names and numbers the runtime, infra/ and the chart
agree on. The chart can't import it, so this test reads the chart; and it fails when a value of the
contract is written out as a literal anywhere else in runtime/hyperfleet or infra/."""

import ast
import re

import pytest
import yaml

from hyperfleet import contract
from hyperfleet.objectives import contract as trial_contract
from tests.helpers import REPO

CHART = REPO / "charts/hyperfleet"
TEMPLATES = {p.name: p.read_text() for p in (CHART / "templates").iterdir()}
#: the role names are everyday words ("worker", "trial"), the stack's connect timeout an everyday number
#: (120): only the names below must not be copied
SHARED = {f"contract.{name}": value for name, value in vars(contract).items()
          if name.isupper() and name not in ("ROLE_WORKER", "ROLE_MONITOR", "ROLE_MONGO", "ROLE_DRIVER", "ROLE_TRIAL",
                                             "COMMAND_ENV_PREFIX", "STACK_CONNECT_TIMEOUT_SECONDS")}
#: what a trial container sees (hyperfleet.objectives.contract): its variables and paths
SHARED.update({f"objectives.contract.{name}": value for name, value in vars(trial_contract).items()
               if name.endswith(("_ENV", "_PATH")) or name == "MOUNT"})
CONTRACTS = [REPO / "runtime/hyperfleet/contract.py", REPO / "runtime/hyperfleet/objectives/contract.py"]


def literals(path) -> list[tuple[int, object]]:
    """The constants of a Python file, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and id(node) not in docstrings and not isinstance(node.value, bool)]


SOURCES = [p for root in ("runtime/hyperfleet", "infra") for p in sorted((REPO / root).rglob("*.py"))
           if p not in CONTRACTS]


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(REPO)) for p in SOURCES])
def test_no_module_spells_out_a_value_of_the_contract(path):
    values = {value: name for name, value in SHARED.items()}
    copies = [f"line {line}: {value!r} is {values[value]}" for line, value in literals(path)
              if value in values]
    assert not copies, f"{path.relative_to(REPO)}: import these from hyperfleet's contract: " + "; ".join(copies)


def test_the_chart_uses_the_contracts_names_and_numbers():
    workers, monitor = TEMPLATES["worker-deployment.yaml"], TEMPLATES["monitor-deployment.yaml"]
    assert f"--alive-file={contract.ALIVE_FILE}" in workers
    assert re.search(rf"command: \[hyperfleet, alive, {re.escape(contract.ALIVE_FILE)},", workers)
    for env in (contract.POD_NAME_ENV, contract.POD_NAMESPACE_ENV, contract.POD_UID_ENV, contract.RUNTIME_IMAGE_ENV,
                contract.NODE_NAME_ENV,
                contract.command_env("worker", "mongo")):
        assert f"- name: {env}\n" in workers, env
    assert f"--health-port={contract.HEALTH_PORT}" in monitor
    assert f"containerPort: {contract.HEALTH_PORT}}}" in monitor
    assert f"port: {contract.HEALTH_PORT}," in TEMPLATES["monitor-service.yaml"]
    scaling = TEMPLATES["worker-autoscaling.yaml"]
    assert f"valueLocation: {contract.OPEN_TRIALS_METRIC}\n" in scaling
    assert f".svc:{contract.HEALTH_PORT}/metrics" in scaling
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["mongo"]["port"] == contract.MONGO_PORT
    assert values["dashboard"]["port"] == contract.DASHBOARD_PORT
    assert f"- name: {contract.command_env('monitor', 'dashboard_token')}\n" in monitor
    for template in ("experiment-jobs.yaml", "NOTES.txt"):
        assert f"{contract.K8S_EXP_KEY_LABEL}:" in TEMPLATES[template] or \
            f"{contract.K8S_EXP_KEY_LABEL}=" in TEMPLATES[template], template


def test_the_charts_helpers_write_the_contracts_facts_once():
    helpers = dict(re.findall(r'{{- define "hyperfleet\.(\w+)" -}}\n([^\n{]*)\n{{- end -}}', TEMPLATES["_helpers.tpl"]))
    assert helpers["runtimeUid"] == str(contract.RUNTIME_UID)
    assert helpers["connectTimeoutSeconds"] == str(contract.STACK_CONNECT_TIMEOUT_SECONDS)
    assert helpers["driverSpecPath"] == contract.DRIVER_SPEC_PATH
    for name, text in TEMPLATES.items():
        if name != "_helpers.tpl":
            for fact in (str(contract.RUNTIME_UID), f"connect-timeout-seconds={contract.STACK_CONNECT_TIMEOUT_SECONDS}",
                         contract.DRIVER_SPEC_PATH):
                assert fact not in text, f"{name} writes {fact} out: include the helper of _helpers.tpl"


def test_the_runtime_image_runs_as_the_contracts_user():
    dockerfile = (REPO / "images/runtime/Dockerfile").read_text()
    assert re.search(r"^ARG RUNTIME_UID=(\d+)$", dockerfile, re.M).group(1) == str(contract.RUNTIME_UID)
    assert "USER ${RUNTIME_UID}:${RUNTIME_UID}" in dockerfile
    assert str(contract.RUNTIME_UID) in (REPO / "images/README.md").read_text()


def test_every_hyperfleet_label_the_chart_writes_is_in_the_contract():
    written = set()
    for text in TEMPLATES.values():
        written |= set(re.findall(r"\b(hyperfleet\.io/[a-z-]+)", text))
    known = {v for v in SHARED.values() if isinstance(v, str)}
    # the NetworkPolicy's client label is the chart's own (no Python code reads or writes it)
    assert written - known <= {"hyperfleet.io/mongo-client"}, written - known


def test_command_env_names_a_commands_variables():
    assert contract.command_env("worker") == "HYPERFLEET_WORKER"
    assert contract.command_env("monitor", "grace_seconds") == "HYPERFLEET_MONITOR_GRACE_SECONDS"
