"""Deployed stacks keep their resources when the program's layout changes: every resource of the old layouts
still answers to its old URN, through the aliases the program sends the engine (Pulumi's mocks; the real
check is a stack deployed with the old code, previewed with this one: infra/README.md).

The URNs here are those of the layouts deployed before: the Docker target's components at the top level
(before DockerTarget), the Kubernetes objects at the top level (before Release) and under Release (whose
type KubernetesTarget keeps). An alias the engine would not resolve fails here as a missing old URN.
"""

import pulumi
import pytest
from pulumi.runtime import mocks as pulumi_mocks

from infra.config import parse_config
from tests.infra.test_docker_wiring import EXPERIMENT, Mocks, resolved
from tests.infra.test_kubernetes_wiring import Mocks as KubeMocks
from tests.infra.test_kubernetes_wiring import write_kubeconfig

STACK_TYPE = "pulumi:pulumi:Stack"


@pytest.fixture
def registrations(monkeypatch):
    """What each registration tells the engine: its type, name, parent and aliases, by the mock's URN."""
    seen = {}
    register = pulumi_mocks.MockMonitor.RegisterResource

    def recording(self, request):
        response = register(self, request)
        seen[response.urn] = request
        return response

    monkeypatch.setattr(pulumi_mocks.MockMonitor, "RegisterResource", recording)
    return seen


def answers_to(registrations) -> dict[str, set[str]]:
    """``type chain::name`` of each resource → every one it answers to, as the engine resolves aliases:
    its own, each alias of its own (a former parent, or none), and its parent's under each of those."""
    memo: dict[str, set[str]] = {}

    def chains(urn: str) -> set[str]:
        if urn not in memo:
            request = registrations[urn]
            parent = registrations.get(request.parent)
            under = chains(request.parent) if parent is not None and parent.type != STACK_TYPE else {""}
            found = {f"{p}${request.type}" if p else request.type for p in under}
            for alias in request.aliases:
                spec = alias.spec
                if spec.noParent:
                    found.add(spec.type or request.type)
                elif spec.parentUrn:
                    found |= {f"{p}${spec.type or request.type}" for p in chains(spec.parentUrn)}
            memo[urn] = found
        return memo[urn]

    return {f"{sorted(chains(u), key=len)[-1]}::{r.name}": {f"{c}::{r.name}" for c in chains(u)}
            for u, r in registrations.items() if r.type != STACK_TYPE}


def old_urns_kept(registrations, old: list[str]) -> list[str]:
    """The old URNs no resource answers to (none, when every old resource is kept)."""
    kept = set().union(*answers_to(registrations).values())
    return [urn for urn in old if urn not in kept]


def test_the_docker_targets_resources_answer_to_their_urns_from_before_docker_target(registrations):
    from infra.docker import target

    pulumi.runtime.set_mocks(Mocks(), project="hyperfleet", stack="t", preview=False)
    outputs = target.deploy(parse_config({"images": {"build": True}, "experiments": [EXPERIMENT]}), "t")
    resolved(pulumi.Output.all(*outputs.values()))
    before = ["pulumi:providers:docker::docker-0", "docker:index/network:Network::network-0",
              "docker:index/image:Image::runtime-image", "pulumi-python:dynamic:Resource::mongo-password",
              "hyperfleet:index:Mongo::mongo", "hyperfleet:index:Mongo$docker:index/volume:Volume::mongo-data",
              "hyperfleet:index:Mongo$docker:index/container:Container::mongo-container",
              "hyperfleet:index:WorkerPool::workers", "hyperfleet:index:WorkerPool$docker:index/container:Container::workers-0",
              "hyperfleet:index:WorkerPool$docker:index/container:Container::workers-1",
              "hyperfleet:index:Monitor::monitor", "hyperfleet:index:Monitor$docker:index/container:Container::monitor-container",
              "hyperfleet:index:Experiment::experiment-demo",
              "hyperfleet:index:Experiment$docker:index/container:Container::experiment-demo-driver"]
    assert old_urns_kept(registrations, before) == []
    now = answers_to(registrations)
    assert "hyperfleet:index:DockerTarget$hyperfleet:index:Mongo$docker:index/container:Container::mongo-container" in now
    # the one new resource is the component itself (state only: it creates nothing on a Docker host)
    assert [urn for urn, old in now.items() if not old & set(before)] == ["hyperfleet:index:DockerTarget::hyperfleet-t"]


def test_the_kubernetes_targets_objects_answer_to_their_urns_from_before_release_and_release_layout(
        registrations, tmp_path):
    from infra.kubernetes import target

    pulumi.runtime.set_mocks(KubeMocks(), project="hyperfleet", stack="t", preview=False)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "kind-a", current="kind-a")
    outputs = target.deploy(parse_config({"target": "kubernetes", "kubernetes": {"kubeconfig": kubeconfig}}), "t")
    resolved(pulumi.Output.all(*outputs.values()))
    objects = ["kubernetes:core/v1:Namespace::namespace", "pulumi-python:dynamic:Resource::mongo-password",
               "kubernetes:core/v1:Secret::mongo-auth", "kubernetes:helm.sh/v3:Chart::hyperfleet-t"]
    release_layout = ["pulumi:providers:kubernetes::kubernetes", "hyperfleet:index:Release::hyperfleet-t",
                     *(f"hyperfleet:index:Release${urn}" for urn in objects)]
    assert old_urns_kept(registrations, objects) == []  # before Release
    assert old_urns_kept(registrations, release_layout) == []
    # and under Release is where they are: the same URNs, nothing new
    assert sorted(answers_to(registrations)) == sorted(release_layout)
