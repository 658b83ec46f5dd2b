"""charts/hyperfleet: helm lint, what helm template renders, values the schema rejects (by key), the
rendered objects accepted by a real API server's schemas (server-side apply, dry run), and a real
helm install/upgrade on the test API server."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from tests.helpers import REPO

CHART = REPO / "charts" / "hyperfleet"
EXPERIMENT = {"name": "branin_1", "objective": "hyperfleet.demo:branin", "algo": "tpe", "max_evals": 20,
              "space": {"x": {"uniform": [-5, 10]}, "y": {"uniform": [0, 15]}}}
#: every optional part switched on, so that the schema check below covers it
FULL = {
    "experiments": [EXPERIMENT, {**EXPERIMENT, "name": "second", "exp_key": "second-key"},
                    {**EXPERIMENT, "name": "in-pods", "objective": {"image": "me/objective:1"}}],
    "workers": {"replicas": 3, "nodeSelector": {"cloud.google.com/gke-spot": "true"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "extraEnv": [{"name": "OMP_NUM_THREADS", "value": "1"}],
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": 1}}},
    "mongo": {"persistence": {"storageClass": "standard", "size": "20Gi"}, "auth": {"mechanism": "SCRAM-SHA-1"}},
    "networkPolicy": {"extraIngressFrom": [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}]},
    "imagePullSecrets": ["registry-credentials"],
    "workloadAnnotations": {"pulumi.com/skipAwait": "true"},
    "driver": {"jobAnnotations": {"example.com/owner": "ml"}},
    "commonLabels": {"team": "ml"},
    "dashboard": {"enabled": True, "existingSecret": "dashboard-token"},
}


def values_file(tmp_path, values: dict) -> str:
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    return str(path)


def render(helm, tmp_path, values: dict | None = None, namespace="ml") -> list[dict]:
    return render_file(helm, values_file(tmp_path, values or {}), namespace)


def render_file(helm, path, namespace="ml") -> list[dict]:
    out = helm("template", "exp", str(CHART), "--namespace", namespace, "-f", str(path)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(objects, kind):
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects):
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]


def test_lint_is_clean(helm, tmp_path):
    helm("lint", "--strict", str(CHART))
    helm("lint", "--strict", str(CHART), "-f", values_file(tmp_path, FULL))


def test_defaults_render_every_part(helm, tmp_path):
    objects = render(helm, tmp_path)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Deployment", "Deployment", "NetworkPolicy", "Role", "RoleBinding", "Secret", "Service",
                     "Service", "ServiceAccount", "StatefulSet"]
    assert all(o["metadata"]["namespace"] == "ml" for o in objects)
    mongo = by_kind(objects, "StatefulSet")["exp-hyperfleet-mongo"]
    assert mongo["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert by_kind(objects, "Service")["exp-hyperfleet-mongo"]["spec"]["clusterIP"] == "None"
    secret = by_kind(objects, "Secret")["exp-hyperfleet-mongo"]
    assert len(base64.b64decode(secret["data"]["password"])) == 24  # generated


def test_every_pod_runs_as_non_root_with_probes(helm, tmp_path):
    objects = render(helm, tmp_path, FULL)
    specs = dict(pod_specs(objects))
    assert len(specs) == 6  # mongo, workers, monitor, three drivers
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"], name
            if not name.startswith("exp-hyperfleet-driver-"):  # a Job runs to its end; nothing to probe
                assert "livenessProbe" in c, name
        mounts = {m["mountPath"] for c in spec["containers"] for m in c["volumeMounts"]}
        assert "/tmp" in mounts, name  # the root filesystem is read-only


def test_the_runtimes_pods_run_as_its_user_wait_for_mongo_alike_and_the_driver_finds_its_spec(helm, tmp_path):
    from hyperfleet.contract import DRIVER_SPEC_PATH, RUNTIME_UID, STACK_CONNECT_TIMEOUT_SECONDS

    objects = render(helm, tmp_path, FULL)
    for name, spec in pod_specs(objects):
        if name == "exp-hyperfleet-mongo":
            continue
        assert {spec["securityContext"][k] for k in ("runAsUser", "runAsGroup", "fsGroup")} == {RUNTIME_UID}, name
        (container,) = spec["containers"]
        assert f"--connect-timeout-seconds={STACK_CONNECT_TIMEOUT_SECONDS}" in container["args"], name
    directory, _, file = DRIVER_SPEC_PATH.rpartition("/")
    for name, spec in pod_specs(objects):
        if name.startswith("exp-hyperfleet-driver-"):
            (driver,) = spec["containers"]
            assert driver["args"][:2] == ["run", DRIVER_SPEC_PATH], name
            assert {"name": "spec", "mountPath": directory, "readOnly": True} in driver["volumeMounts"], name
    assert all(list(m["data"]) == [file] for m in by_kind(objects, "ConfigMap").values())


def test_monitor_may_only_read_pods_of_its_namespace(helm, tmp_path):
    objects = render(helm, tmp_path)
    role = by_kind(objects, "Role")["exp-hyperfleet-monitor"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    monitor = by_kind(objects, "Deployment")["exp-hyperfleet-monitor"]["spec"]["template"]["spec"]
    assert monitor["serviceAccountName"] == "exp-hyperfleet-monitor"
    args = monitor["containers"][0]["args"]
    assert "--liveness=kubernetes" in args
    assert "--label-selector=app.kubernetes.io/instance=exp,app.kubernetes.io/component=worker" in args
    for name, spec in pod_specs(objects):
        if name != "exp-hyperfleet-monitor":
            assert spec["automountServiceAccountToken"] is False, name


def test_an_unquoted_y_key_fails_the_render_saying_to_quote_it(helm, tmp_path):
    """Helm parses values as YAML 1.1: an unquoted `y:` is the boolean true, and would reach the driver as
    a parameter named "true" (every trial then fails with KeyError: 'y')."""
    space = "experiments:\n  - name: branin\n    objective: hyperfleet.demo:branin\n    max_evals: 5\n    space:\n" \
            "      x: {uniform: [-5, 10]}\n      %s: {uniform: [0, 15]}\n"
    unquoted, quoted = tmp_path / "unquoted.yaml", tmp_path / "quoted.yaml"
    unquoted.write_text(space % "y")
    quoted.write_text(space % '"y"')
    result = helm("template", "exp", str(CHART), "-f", str(unquoted), check=False)
    assert result.returncode != 0
    assert 'values.experiments[0].space: a key became "true"' in result.stderr
    assert 'quote the key ("y": ...)' in result.stderr
    (job_spec,) = by_kind(render_file(helm, quoted), "ConfigMap").values()
    assert json.loads(job_spec["data"]["experiment.json"])["space"]["y"] == {"uniform": [0, 15]}


def test_job_annotations_go_on_the_driver_jobs_only(helm, tmp_path):
    objects = render(helm, tmp_path, {"experiments": [EXPERIMENT], "workloadAnnotations": {"team": "ml"},
                                      "driver": {"jobAnnotations": {"pulumi.com/skipAwait": "true"}}})
    (job,) = by_kind(objects, "Job").values()
    assert job["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true", "team": "ml"}
    for name, deployment in by_kind(objects, "Deployment").items():
        assert deployment["metadata"]["annotations"] == {"team": "ml"}, name


def test_workers_get_the_mongo_url_from_the_secret_and_their_pod_name(helm, tmp_path):
    objects = render(helm, tmp_path, FULL)
    worker = by_kind(objects, "Deployment")["exp-hyperfleet-worker"]
    spec = worker["spec"]["template"]["spec"]
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["MONGO_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "exp-hyperfleet-mongo", "key": "password"}
    assert env["MONGO_URL"]["value"] == ("mongodb://$(MONGO_USERNAME):$(MONGO_PASSWORD)@exp-hyperfleet-mongo.ml.svc:"
                                         "27017/hyperfleet?authSource=admin&authMechanism=SCRAM-SHA-1")
    assert env["HYPERFLEET_WORKER_MONGO"]["value"] == "$(MONGO_URL)"
    assert env["HYPERFLEET_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["HYPERFLEET_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"  # where trials ran
    assert env["OMP_NUM_THREADS"]["value"] == "1"
    assert worker["spec"]["replicas"] == 3
    assert spec["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert worker["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}


def test_existing_secret_replaces_the_chart_made_one(helm, tmp_path):
    objects = render(helm, tmp_path, {"mongo": {"auth": {"existingSecret": "my-mongo", "passwordKey": "pw"}}})
    assert not by_kind(objects, "Secret")
    env = {e["name"]: e for e in by_kind(objects, "StatefulSet")["exp-hyperfleet-mongo"]
           ["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MONGO_INITDB_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "my-mongo", "key": "pw"}


def test_one_driver_job_per_experiment_with_its_spec(helm, tmp_path):
    objects = render(helm, tmp_path, FULL)
    jobs, maps = by_kind(objects, "Job"), by_kind(objects, "ConfigMap")
    assert len(jobs) == 3 and set(jobs) == set(maps)
    first = next(n for n in jobs if n.startswith("exp-hyperfleet-driver-branin-1-"))
    assert json.loads(maps[first]["data"]["experiment.json"]) == EXPERIMENT
    assert jobs[first]["spec"]["template"]["metadata"]["labels"]["hyperfleet.io/exp-key"] == "branin_1"
    second = next(n for n in jobs if n.startswith("exp-hyperfleet-driver-second-key-"))
    assert jobs[second]["metadata"]["labels"]["hyperfleet.io/exp-key"] == "second-key"
    # a changed spec is a new Job (Jobs are immutable); `hyperfleet run` resumes the exp_key
    changed = render(helm, tmp_path, {"experiments": [{**EXPERIMENT, "max_evals": 40}]})
    assert first not in by_kind(changed, "Job")


def test_network_policy_admits_only_this_release_and_labelled_clients(helm, tmp_path):
    policy = by_kind(render(helm, tmp_path, FULL), "NetworkPolicy")["exp-hyperfleet-mongo"]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "mongo"
    peers = policy["spec"]["ingress"][0]["from"]
    assert peers[0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "hyperfleet",
                                                      "app.kubernetes.io/instance": "exp"}
    assert peers[1]["podSelector"]["matchLabels"] == {"hyperfleet.io/mongo-client": "true"}
    assert peers[2] == {"namespaceSelector": {"matchLabels": {"team": "ml"}}}
    assert not by_kind(render(helm, tmp_path, {"networkPolicy": {"enabled": False}}), "NetworkPolicy")


def test_the_dashboard_is_off_by_default_and_when_on_a_clusterip_service_reaches_the_monitor(helm, tmp_path):
    """(NOTES.txt's port-forward line: test_helm_install_then_upgrade_keeps_the_generated_password.)"""
    assert "Service" not in {o["kind"] for o in render(helm, tmp_path) if "dashboard" in o["metadata"]["name"]}
    objects = render(helm, tmp_path, {"dashboard": {"enabled": True, "port": 9000, "existingSecret": "dash"}})
    service = by_kind(objects, "Service")["exp-hyperfleet-dashboard"]
    monitor = by_kind(objects, "Deployment")["exp-hyperfleet-monitor"]
    pod = monitor["spec"]["template"]
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"] == [
        {"name": "dashboard", "port": 9000, "targetPort": "dashboard"}]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    assert "--dashboard-port=9000" in container["args"]
    assert {"name": "dashboard", "containerPort": 9000} in container["ports"]
    [token] = [e for e in container["env"] if e["name"] == "HYPERFLEET_MONITOR_DASHBOARD_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "dash", "key": "token"}


@pytest.mark.parametrize("dashboard,on", [
    ({}, False),
    ({"serviceType": "NodePort"}, True),
    ({"serviceType": "LoadBalancer"}, True),
    ({"serviceType": "LoadBalancer", "readToken": False}, False),
    ({"readToken": True}, True),
    ({"readToken": None}, False),
])
def test_the_dashboards_reads_need_the_token_when_its_service_publishes_it_beyond_the_cluster(helm, tmp_path, dashboard, on):
    """The same rule as the stack config's (infra/config.py DashboardConfig.reads_need_token; tests/infra/test_config.py)."""
    from infra.config import DashboardConfig

    board = {"enabled": True, "existingSecret": "dash", **dashboard}
    objects = render(helm, tmp_path, {"dashboard": board})
    args = by_kind(objects, "Deployment")["exp-hyperfleet-monitor"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert ("--dashboard-read-token" in args) is on
    assert by_kind(objects, "Service")["exp-hyperfleet-dashboard"]["spec"]["type"] == dashboard.get("serviceType", "ClusterIP")
    stack = DashboardConfig.model_validate({k: v for k, v in dashboard.items() if v is not None})
    assert stack.reads_need_token("kubernetes") is on
    result = helm("template", str(CHART), "-f", values_file(tmp_path, {"dashboard": {**board, "existingSecret": ""}}),
                  check=False)
    assert (result.returncode != 0) is on, result.stderr  # on without a token: refused, naming the key
    if on:
        assert "dashboard.readToken: the dashboard's reads need its token" in result.stderr


@pytest.mark.parametrize("values,key", [
    ({"workers": {"replicas": -1}}, "/workers/replicas"),
    ({"workers": {"replicas": "three"}}, "/workers/replicas"),
    ({"workers": {"heartbeatSeconds": 0}}, "/workers/heartbeatSeconds"),
    ({"workers": {"tolerations": [{"key": "gpu", "effect": "Sometimes"}]}}, "/workers/tolerations/0/effect"),
    ({"workers": {"extraEnv": [{"name": "1BAD", "value": "x"}]}}, "/workers/extraEnv/0/name"),
    ({"workers": {"resources": {"requests": {"memory": "lots"}}}}, "/workers/resources/requests/memory"),
    ({"monitor": {"policy": "ignore"}}, "/monitor/policy"),
    ({"mongo": {"auth": {"password": "p@ss/word"}}}, "/mongo/auth/password"),
    ({"mongo": {"auth": {"mechanism": "MONGODB-X509"}}}, "/mongo/auth/mechanism"),
    ({"mongo": {"persistence": {"size": "ten gigs"}}}, "/mongo/persistence/size"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"experiments": [{"name": "no spaces", "objective": "m:f", "space": {"x": 1}}]}, "/experiments/0/name"),
    ({"experiments": [{"name": "e", "objective": "m:f"}]}, "/experiments/0"),
    ({"wrokers": {"replicas": 2}}, "'wrokers' not allowed"),
    ({"dashboard": {"port": 0}}, "/dashboard/port"),
    ({"dashboard": {"serviceType": "Ingress"}}, "/dashboard/serviceType"),
    ({"dashboard": {"readToken": "yes"}}, "/dashboard/readToken"),
    ({"workers": {"autoscaling": {"mode": "hpa"}}}, "/workers/autoscaling/mode"),
    ({"workers": {"autoscaling": {"maxReplicas": 0}}}, "/workers/autoscaling/maxReplicas"),
    ({"workers": {"autoscaling": {"trialsPerWorker": 0}}}, "/workers/autoscaling/trialsPerWorker"),
    ({"workers": {"autoscaling": {"fallbackReplicas": 0}}}, "/workers/autoscaling/fallbackReplicas"),
    ({"workers": {"autoscaling": {"fallbackReplicas": "all"}}}, "/workers/autoscaling/fallbackReplicas"),
    ({"workers": {"autoscaling": {"fallbackFailureThreshold": -1}}}, "/workers/autoscaling/fallbackFailureThreshold"),
    # a container objective's trial pod resources (the spec's objective.resources: gpu, extended, requests, limits)
    ({"experiments": [{"name": "e", "objective": {"image": "x", "resources": {"gpu": -1}}, "space": {"x": 1}}]},
     "/experiments/0/objective/resources/gpu"),
    ({"experiments": [{"name": "e", "objective": {"image": "x", "resources": {"gpus": 1}}, "space": {"x": 1}}]},
     "/experiments/0/objective/resources"),
    ({"experiments": [{"name": "e", "objective": {"image": "x", "resources": {"extended": {"fpga": 1}}},
                       "space": {"x": 1}}]}, "'fpga' does not match pattern"),  # helm names the key, not its path
    ({"experiments": [{"name": "e", "objective": {"image": "x", "resources": {"limits": {"nvidia.com/gpu": "one"}}},
                       "space": {"x": 1}}]}, "/experiments/0/objective/resources/limits/nvidia.com~1gpu"),
    ({"workers": {"resources": {"limits": {"nvidia.com/gpu": "one"}}}}, "/workers/resources/limits/nvidia.com~1gpu"),
])
def test_bad_values_are_rejected_naming_the_key(helm, tmp_path, values, key):
    for command in ("lint", "template"):
        result = helm(command, str(CHART), "-f", values_file(tmp_path, values), check=False)
        assert result.returncode != 0, command
        assert key in result.stdout + result.stderr, (command, result.stdout + result.stderr)


@pytest.mark.parametrize("values,message", [
    ({"workers": {"autoscaling": {"mode": "keda", "minReplicas": 3, "maxReplicas": 2}}},
     "workers.autoscaling.minReplicas (3) is above workers.autoscaling.maxReplicas (2)"),
    ({"workers": {"autoscaling": {"mode": "keda", "maxReplicas": 4, "fallbackReplicas": 5}}},
     "workers.autoscaling.fallbackReplicas (5) is above workers.autoscaling.maxReplicas (4)"),
    ({"workers": {"autoscaling": {"mode": "keda"}}, "monitor": {"enabled": False}}, "it needs monitor.enabled"),
    ({"workers": {"autoscaling": {"mode": "cpu"}}}, "workers.autoscaling.minReplicas: a CPU HorizontalPodAutoscaler"),
])
def test_values_the_schema_cant_judge_fail_the_render_naming_the_key(helm, tmp_path, values, message):
    result = helm("template", str(CHART), "-f", values_file(tmp_path, values), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_keda_scales_the_workers_on_the_monitors_open_trials_gauge(helm, tmp_path):
    from hyperfleet.contract import HEALTH_PORT, OPEN_TRIALS_METRIC

    scaling = {"mode": "keda", "minReplicas": 0, "maxReplicas": 4, "trialsPerWorker": 2, "cooldownSeconds": 15,
               "pollingSeconds": 2}
    objects = render(helm, tmp_path, {"workers": {"autoscaling": scaling}})
    deployment = by_kind(objects, "Deployment")["exp-hyperfleet-worker"]
    assert "replicas" not in deployment["spec"]  # KEDA's to set; an upgrade must not reset it
    spec = by_kind(objects, "ScaledObject")["exp-hyperfleet-worker"]["spec"]
    assert spec["scaleTargetRef"] == {"name": "exp-hyperfleet-worker"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"], spec["pollingInterval"]) == \
        (0, 4, 15, 2)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "metrics-api" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"] == {"url": f"http://exp-hyperfleet-monitor.ml.svc:{HEALTH_PORT}/metrics",
                                   "format": "prometheus", "valueLocation": OPEN_TRIALS_METRIC,
                                   "targetValue": "2", "activationTargetValue": "0"}
    service = by_kind(objects, "Service")["exp-hyperfleet-monitor"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": HEALTH_PORT, "targetPort": "health"}]
    monitor = by_kind(objects, "Deployment")["exp-hyperfleet-monitor"]["spec"]["template"]
    assert service["spec"]["selector"].items() <= monitor["metadata"]["labels"].items()
    # a scaled-down worker hands its trial back within its grace period (the worker's shutdown deadline)
    from hyperfleet.settings import WorkerSettings

    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > WorkerSettings.shutdown_deadline_seconds
    assert "HorizontalPodAutoscaler" not in {o["kind"] for o in objects}


def test_keda_keeps_the_pool_when_the_monitors_gauge_cant_be_read(helm, tmp_path):
    """KEDA's fallback: after fallbackFailureThreshold failed reads, fallbackReplicas workers (default
    maxReplicas) or the current count if higher. KEDA applies it to an AverageValue trigger only (a Value
    one is divided by the Ready workers, 0 when parked), so the trigger must stay AverageValue."""
    def scaled(**scaling):
        objects = render(helm, tmp_path, {"workers": {"autoscaling": {"mode": "keda", "maxReplicas": 6, **scaling}}})
        return by_kind(objects, "ScaledObject")["exp-hyperfleet-worker"]["spec"]

    spec = scaled()
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 6, "behavior": "currentReplicasIfHigher"}
    assert [t["metricType"] for t in spec["triggers"]] == ["AverageValue"]
    assert scaled(fallbackReplicas=2, fallbackFailureThreshold=5)["fallback"] == {
        "failureThreshold": 5, "replicas": 2, "behavior": "currentReplicasIfHigher"}
    assert scaled(fallbackReplicas=None)["fallback"]["replicas"] == 6


def test_fixed_and_cpu_modes(helm, tmp_path):
    objects = render(helm, tmp_path)
    assert by_kind(objects, "Deployment")["exp-hyperfleet-worker"]["spec"]["replicas"] == 2
    assert not {"ScaledObject", "HorizontalPodAutoscaler"} & {o["kind"] for o in objects}
    objects = render(helm, tmp_path, {"workers": {"autoscaling": {"mode": "cpu", "minReplicas": 1, "maxReplicas": 6,
                                                                  "cpuUtilization": 70}}})
    hpa = by_kind(objects, "HorizontalPodAutoscaler")["exp-hyperfleet-worker"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "exp-hyperfleet-worker"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 6)
    assert hpa["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert "replicas" not in by_kind(objects, "Deployment")["exp-hyperfleet-worker"]["spec"]


def test_a_container_objective_gives_the_workers_exactly_the_rights_trial_pods_need(helm, tmp_path):
    from hyperfleet.objectives.kubernetes import PERMISSIONS

    objects = render(helm, tmp_path, {"experiments": FULL["experiments"]})
    (role,) = [r for name, r in by_kind(objects, "Role").items() if name == "exp-hyperfleet-worker"]
    granted = {(resource, verb) for rule in role["rules"] for resource in rule["resources"] for verb in rule["verbs"]}
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    assert granted == {(resource, verb) for resource, verbs in PERMISSIONS.items() for verb in verbs}
    binding = by_kind(objects, "RoleBinding")["exp-hyperfleet-worker"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "exp-hyperfleet-worker", "namespace": "ml"}]
    spec = by_kind(objects, "Deployment")["exp-hyperfleet-worker"]["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "exp-hyperfleet-worker" and spec["automountServiceAccountToken"] is True
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["HYPERFLEET_POD_UID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"
    assert env["HYPERFLEET_RUNTIME_IMAGE"]["value"] == spec["containers"][0]["image"]


def test_without_container_objectives_workers_get_no_kubernetes_rights(helm, tmp_path):
    objects = render(helm, tmp_path, {"experiments": [EXPERIMENT]})
    assert "exp-hyperfleet-worker" not in by_kind(objects, "Role")
    assert "exp-hyperfleet-worker" not in by_kind(objects, "ServiceAccount")
    spec = by_kind(objects, "Deployment")["exp-hyperfleet-worker"]["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    # asked for explicitly (a driver outside the chart submits container objectives)
    objects = render(helm, tmp_path, {"workers": {"trialPods": True}})
    assert "exp-hyperfleet-worker" in by_kind(objects, "Role")


# -- against the real API server ---------------------------------------------------------------------

def test_rendered_objects_pass_the_api_servers_schemas(helm, tmp_path, kube_api, namespace):
    """Server-side apply, dry run: the API server checks every field against its OpenAPI schema
    (an unknown or misplaced field is an error) and runs admission, without storing anything."""
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import DynamicApiError

    dynamic = DynamicClient(kube_api)

    def dry_apply(obj):
        api = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        return api.server_side_apply(body=obj, name=obj["metadata"]["name"], namespace=namespace,
                                     field_manager="hyperfleet-test", dry_run="All")

    objects = render(helm, tmp_path, FULL, namespace=namespace)
    assert len(objects) == 20  # 14, a third driver (ConfigMap, Job), the workers' RBAC for trial pods, the dashboard
    for obj in objects:
        applied = dry_apply(obj)
        assert applied.metadata.name == obj["metadata"]["name"]
    # the CPU autoscaler (KEDA's ScaledObject is applied on the cluster where KEDA runs:
    # tests/e2e/test_kube_autoscaling.py)
    scaling = {"mode": "cpu", "minReplicas": 1, "maxReplicas": 5}
    for obj in render(helm, tmp_path, {"workers": {"autoscaling": scaling}}, namespace=namespace):
        if obj["kind"] in ("HorizontalPodAutoscaler", "Deployment"):
            assert dry_apply(obj).metadata.name == obj["metadata"]["name"]
    # the check can fail: a field in the wrong place is refused
    worker = by_kind(objects, "Deployment")["exp-hyperfleet-worker"]
    worker["spec"]["template"]["spec"]["containers"][0]["probes"] = {}
    with pytest.raises(DynamicApiError, match="probes: field not declared in schema"):
        dry_apply(worker)


def test_helm_install_then_upgrade_keeps_the_generated_password(helm, kube_server, kube_api, namespace, tmp_path):
    from kubernetes import client

    common = ["--kubeconfig", kube_server.kubeconfig, "--kube-context", kube_server.context, "-n", namespace]
    values = values_file(tmp_path, {"workloadAnnotations": {"note": "no kubelet here"}, "experiments": [EXPERIMENT],
                                    "dashboard": {"enabled": True}})
    install = helm("install", "exp", str(CHART), "-f", values, *common)
    assert "port-forward svc/exp-hyperfleet-mongo 27017:27017" in install.stdout  # NOTES.txt
    assert "port-forward svc/exp-hyperfleet-dashboard 8090:8090" in install.stdout
    assert "Its actions are off: no token" in install.stdout
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    first = core.read_namespaced_secret("exp-hyperfleet-mongo", namespace).data["password"]
    assert apps.read_namespaced_deployment("exp-hyperfleet-worker", namespace).spec.replicas == 2
    helm("upgrade", "exp", str(CHART), "-f", values, "--set", "workers.replicas=4", *common)
    assert core.read_namespaced_secret("exp-hyperfleet-mongo", namespace).data["password"] == first
    assert apps.read_namespaced_deployment("exp-hyperfleet-worker", namespace).spec.replicas == 4
    helm("uninstall", "exp", "--wait", *common)
    assert not core.list_namespaced_secret(namespace, label_selector="app.kubernetes.io/instance=exp").items
