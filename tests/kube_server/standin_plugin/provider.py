"""A stand-in for the Pulumi Kubernetes resource provider plugin, for tests only.

What it is: a Python program that speaks Pulumi's gRPC ``ResourceProvider`` protocol as the plugin
``kubernetes`` (GetPluginInfo: version 4.34.2, the version of the ``pulumi_kubernetes`` SDK in the
virtualenv), so that the real Pulumi engine can run ``pulumi preview`` / ``up`` / ``refresh`` /
``destroy`` of programs written with ``pulumi_kubernetes`` against the real kube-apiserver the tests
start (``tests/kube_server``). API calls go through the ``kubernetes`` Python client
(``kubernetes.dynamic.DynamicClient``).

Why it exists: the real plugin (``pulumi-resource-kubernetes`` v4.34.2, a Go binary) cannot be had
where these tests were written: there is no internet, and the Go module proxy answers 403, so it can
neither be downloaded nor built. Users never run this: they use the real plugin
(``pulumi plugin install resource kubernetes 4.34.2``, or let the engine fetch it). Only tests put
this directory on PATH, where the engine takes ``pulumi-resource-kubernetes`` as an ambient plugin and
says so in a warning (``tests/kube_server/pulumi.py``); it is never installed into a PULUMI_HOME.

What it implements, the subset the SDK needs for typed objects, an explicit ``Provider``,
``helm.v3.Chart`` and ``yaml.ConfigFile``/``ConfigGroup``:

* the provider resource ``pulumi:providers:kubernetes``: CheckConfig, DiffConfig (never replaces),
  Configure, from the provider's arguments or from ``kubernetes:config:*`` variables (a default
  provider): ``kubeconfig`` (a file path, a list of them as in $KUBECONFIG, or the kubeconfig's
  YAML/JSON text; unset: $KUBECONFIG, then ~/.kube/config), ``context`` (one the kubeconfig lacks fails CheckConfig, naming it),
  ``namespace`` (unset: the context's, then ``default``), ``enablePatchForce``,
  ``upsertExistingObjects``; ``cluster`` and the other options are accepted and ignored;
* object resources of any kind, ``kubernetes:<group>/<version>:<Kind>`` (``core`` being the empty
  group), custom resources included:

  - Check: inputs pass through; a namespaced kind without ``metadata.namespace`` gets the provider's
    namespace; no ``metadata.name``: ``<resource name>-<8 random characters>`` and the annotation
    ``pulumi.com/autonamed``, kept on later updates, as the real provider does.
  - Diff: old inputs against new inputs. A change of ``metadata.name``/``namespace``, ``apiVersion``
    or ``kind`` replaces; so does a change the API server refuses as immutable in a server-side-apply
    dry run (a Job's template, a StatefulSet's volumeClaimTemplates…): delete first when the name
    stays the same.
  - Create: fails if the object exists (unless upsertExistingObjects), then server-side apply
    (field manager ``pulumi-kubernetes``). Apply rather than POST so that fields later removed from
    the program are removed from the object; the existence check and the apply are two requests.
  - Update: server-side apply, forced with ``pulumi.com/patchForce: "true"`` or enablePatchForce.
  - Read (refresh, ``.get``): GET by id (``namespace/name`` or ``name``); not found: empty id.
  - Delete: propagation ``Foreground`` (or the annotation ``pulumi.com/deletionPropagationPolicy``),
    then waits until the object is gone, at most the operation's custom timeout or 5 minutes.

  Outputs are the live object without ``metadata.managedFields``. In a preview (``preview=true``)
  Create/Update do not touch the cluster: they return the inputs, with what the server fills in
  (``status``, ``metadata.uid`` …) unknown. Unknown values (the engine's sentinel) pass through
  Check, Diff and previews.
* the invokes ``kubernetes:helm:template`` (``helm template`` with the values in a temporary file,
  ``--namespace``, ``--include-crds`` unless skip_crd_rendering, ``--skip-tests`` unless
  include_test_hook_resources, the cluster's version and API versions when it can be reached; helm
  is $PULUMI_K8S_STANDIN_HELM, which the tests set, else the one on PATH) and ``kubernetes:yaml:decode``; both give namespaced objects without a
  namespace the default one.

It never awaits readiness: an object counts as ready once the API server has accepted it, as if every
object carried the real provider's ``pulumi.com/skipAwait: "true"``. Secrets: Configure answers
acceptSecrets=true; secret inputs are unwrapped before they reach the API server, and an output is
marked secret where the input at the same place was secret (the SDK's Secret class itself asks for
``data``/``stringData`` to be secret, and this marks them too). Handshake is not implemented (the
engine falls back to Configure). Not implemented: await logic, ``helm.v4``/``helm.v3.Release``,
kustomize, the list/watch/podLogs invokes, client-side apply, ``renderYamlToDirectory``, ``generateName``,
``Construct``/``Call``, GetSchema, and anything else not listed above.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

VERSION = "4.34.2"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
FIELD_MANAGER = "pulumi-kubernetes"
DEFAULT_DELETE_TIMEOUT = 300.0
CONFIG_PREFIX = "kubernetes:config:"

# cluster-scoped kinds of the built-in API, for when discovery cannot answer (preview without a cluster)
CLUSTER_SCOPED_KINDS = {
    "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "APIService", "CSIDriver", "CSINode",
    "VolumeAttachment", "RuntimeClass", "IngressClass", "CertificateSigningRequest", "ComponentStatus",
    "FlowSchema", "PriorityLevelConfiguration", "ClusterTrustBundle", "IPAddress", "ServiceCIDR",
}


def log(message: str) -> None:
    print(f"[kubernetes stand-in] {message}", file=sys.stderr, flush=True)


class ProviderError(Exception):
    """Reported to the engine as the failed call's error."""


# --- property values --------------------------------------------------------------------------------
# Values travel as google.protobuf.Struct; unknowns are a sentinel string, secrets an object with a
# signature key. Struct numbers are doubles: integral ones become ints again before they go to the API.

def from_struct(struct: struct_pb2.Struct | None) -> dict:
    return json_format.MessageToDict(struct) if struct is not None else {}


def to_struct(value: dict) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def is_secret(value) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def make_secret(value) -> dict:
    return value if is_secret(value) else {SIG_KEY: SECRET_SIG, "value": value}


def plain(value):
    """``value`` without secret markers, with integral numbers as ints."""
    if is_secret(value):
        return plain(value.get("value"))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def contains_secret(value) -> bool:
    if is_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False


def contains_unknown(value) -> bool:
    if value == UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    return False


def annotate_secrets(outs, ins):
    """Mark ``outs`` secret wherever ``ins`` holds a secret at the same place (objects are followed key
    by key; anything else containing a secret makes the whole output value secret)."""
    if is_secret(ins):
        return make_secret(outs)
    if isinstance(outs, dict) and isinstance(ins, dict):
        return {k: annotate_secrets(v, ins[k]) if k in ins else v for k, v in outs.items()}
    if contains_secret(ins):
        return make_secret(outs)
    return outs


def live_outputs(live: dict, inputs: dict) -> dict:
    """The outputs for a live object: the object without server-side apply's bookkeeping
    (``metadata.managedFields``), secret where its inputs were, and a Secret's data always."""
    live = dict(live)
    if isinstance(live.get("metadata"), dict):
        live["metadata"] = {k: v for k, v in live["metadata"].items() if k != "managedFields"}
    outs = annotate_secrets(live, inputs)
    if live.get("kind") == "Secret" and live.get("apiVersion") == "v1":
        for key in ("data", "stringData"):
            if key in outs:
                outs[key] = make_secret(outs[key])
    return outs


def preview_outputs(inputs: dict, old_outputs: dict) -> dict:
    """Outputs for a preview: the inputs, with what the API server fills in unknown (or, for an update,
    what it keeps: uid and creationTimestamp)."""
    outs = dict(inputs)
    metadata = outs.get("metadata")
    if isinstance(metadata, dict) and not is_secret(metadata):
        metadata = outs["metadata"] = dict(metadata)
        for key in ("uid", "creationTimestamp", "resourceVersion", "generation"):
            old = get_path(old_outputs, "metadata", key) if key in ("uid", "creationTimestamp") else None
            metadata.setdefault(key, old if old is not None else UNKNOWN)
    outs.setdefault("status", UNKNOWN)
    return outs


def get_path(obj, *keys):
    for key in keys:
        if is_secret(obj):
            obj = obj.get("value")
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


# --- resource identity --------------------------------------------------------------------------------

def type_of(urn: str, type_field: str = "") -> str:
    if type_field:
        return type_field
    # urn:pulumi:<stack>::<project>::<parent types $ type>::<name>
    parts = urn.split("::")
    return parts[2].split("$")[-1] if len(parts) >= 4 else ""


def name_of(urn: str) -> str:
    return urn.split("::")[-1]


def gvk_of_token(token: str) -> tuple[str, str]:
    """``kubernetes:apps/v1:Deployment`` -> (``apps/v1``, ``Deployment``); core is the empty group."""
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes" or "/" not in parts[1]:
        raise ProviderError(f"unsupported resource type {token!r}")
    group, version = parts[1].rsplit("/", 1)
    return (version if group == "core" else f"{group}/{version}"), parts[2]


def describe(obj: dict) -> str:
    ns, name = get_path(obj, "metadata", "namespace"), get_path(obj, "metadata", "name")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{name}"


# --- kubeconfig -------------------------------------------------------------------------------------

def _read_kubeconfig_files(paths: str) -> dict | None:
    """The kubeconfig files of a path list (``a:b`` as in $KUBECONFIG) merged as the ``kubernetes``
    client merges them (the first entry of a name wins; current-context from the last file setting it);
    None if none of them exists."""
    merged = None
    for path in (os.path.expanduser(p) for p in paths.split(os.pathsep) if p):
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            config = yaml.safe_load(f) or {}
        if merged is None:
            merged = {**config, "clusters": [], "contexts": [], "users": []}
        for item in ("clusters", "contexts", "users"):
            names = {entry.get("name") for entry in merged[item]}
            merged[item] += [entry for entry in config.get(item) or [] if entry.get("name") not in names]
        if config.get("current-context"):
            merged["current-context"] = config["current-context"]
    return merged


def load_kubeconfig(value: str | None) -> tuple[dict, str | None]:
    """The kubeconfig as a dict, and the file (or path list) it came from (None: given as text)."""
    if not value:
        for paths in (os.environ.get("KUBECONFIG"), "~/.kube/config"):
            merged = _read_kubeconfig_files(paths) if paths else None
            if merged is not None:
                return merged, paths
        raise ProviderError("no kubeconfig: neither the provider's kubeconfig nor $KUBECONFIG nor ~/.kube/config")
    if "\n" not in value:
        merged = _read_kubeconfig_files(value)
        if merged is not None:
            return merged, value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ProviderError(f"kubeconfig is neither an existing file nor valid YAML/JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise ProviderError(f"kubeconfig {value[:80]!r} is neither an existing file nor a kubeconfig document")
    return parsed, None


def select_context(kubeconfig: dict, context: str | None) -> dict:
    """The named context (else the current one) as {"name", "cluster", "user", "namespace"}."""
    contexts = {c.get("name"): c.get("context") or {} for c in kubeconfig.get("contexts") or []}
    name = context or kubeconfig.get("current-context")
    if not name:
        raise ProviderError("the kubeconfig has no current-context and the provider names no context")
    if name not in contexts:
        known = ", ".join(sorted(str(c) for c in contexts)) or "none"
        raise ProviderError(f'context "{name}" does not exist in the kubeconfig (its contexts: {known})')
    return {"name": name, **contexts[name]}


class Cluster:
    """A configured connection: the API client, its dynamic client (discovery made lazily)."""

    def __init__(self, kubeconfig: dict, source_file: str | None, context: str):
        from kubernetes import config as kconfig

        if source_file:
            self.api_client = kconfig.new_client_from_config(config_file=source_file, context=context,
                                                             persist_config=False)
        else:
            self.api_client = kconfig.new_client_from_config_dict(kubeconfig, context=context, persist_config=False)
        self._dynamic = None
        self._lock = threading.RLock()
        self._version_set: tuple[str, list[str]] | None = None

    @property
    def dynamic(self):
        from kubernetes.dynamic import DynamicClient
        from kubernetes.dynamic.discovery import LazyDiscoverer

        class InMemoryDiscoverer(LazyDiscoverer):
            """Discovery kept in memory: the library's default cache file in /tmp is shared by every
            process, and the engine kills plugins without giving them a chance to clean up."""

            def _write_cache(self):
                pass

        with self._lock:
            if self._dynamic is None:
                self._dynamic = DynamicClient(self.api_client, cache_file=os.path.join(os.devnull, "no-cache"),
                                              discoverer=InMemoryDiscoverer)
            return self._dynamic

    def resource(self, api_version: str, kind: str, wait_seconds: float = 0.0):
        """The API resource of a kind; waits up to ``wait_seconds`` for it to be served (a CRD just made)."""
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                with self._lock:
                    return self.dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                if time.monotonic() >= deadline:
                    raise ProviderError(f"the cluster serves no kind {kind} in {api_version}") from None
            time.sleep(1.0)

    def namespaced(self, api_version: str, kind: str) -> bool | None:
        try:
            return bool(self.resource(api_version, kind).namespaced)
        except ProviderError:
            return None

    def version_set(self) -> tuple[str, list[str]]:
        """The server's version and API versions (``group/version`` and ``group/version/Kind``), for helm."""
        from kubernetes import client

        with self._lock:
            if self._version_set is None:
                git_version = client.VersionApi(self.api_client).get_code().git_version
                versions = set()
                for resource in self.dynamic.resources.search():
                    if getattr(resource, "group_version", None) and getattr(resource, "kind", None):
                        versions.add(resource.group_version)
                        if not resource.kind.endswith("List"):
                            versions.add(f"{resource.group_version}/{resource.kind}")
                self._version_set = (git_version, sorted(versions))
            return self._version_set

    def close(self) -> None:
        self.api_client.close()


# --- helm ---------------------------------------------------------------------------------------------

def find_helm() -> str:
    """The helm the tests found (tests/kube_server.find_helm, passed on by standin_plugin_env), else PATH's."""
    found = os.environ.get("PULUMI_K8S_STANDIN_HELM") or shutil.which("helm")
    if not found:
        raise ProviderError("helm not found: neither PULUMI_K8S_STANDIN_HELM nor PATH has one (scripts/install-helm.sh)")
    return found


def decode_yaml(text: str, default_namespace: str | None, namespaced) -> list[dict]:
    """Every object of a multi-document YAML text; namespaced kinds without a namespace get the default."""
    objects = []
    for doc in yaml.safe_load_all(text):
        if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("apiVersion"):
            continue  # empty documents, as charts often render
        if default_namespace and namespaced(doc["apiVersion"], doc["kind"]):
            metadata = doc.setdefault("metadata", {}) or {}
            doc["metadata"] = metadata
            if not metadata.get("namespace"):
                metadata["namespace"] = default_namespace
        objects.append(doc)
    return objects


def helm_template(opts: dict, cluster: Cluster | None) -> str:
    """``helm template`` of the chart ``opts`` describes (the SDK's ChartOpts/LocalChartOpts as JSON)."""
    helm = find_helm()
    fetch = opts.get("fetch_opts") or {}
    release = opts.get("release_name") or "release"
    namespace = opts.get("namespace") or "default"
    with tempfile.TemporaryDirectory(prefix="pulumi-k8s-standin-helm-") as tmp:
        values_file = os.path.join(tmp, "values.json")
        with open(values_file, "w") as f:
            json.dump(opts.get("values") or {}, f)
        argv = [helm, "template", release]
        if opts.get("path"):
            argv.append(opts["path"])
        else:
            chart, repo_name, repo_url = opts.get("chart") or "", opts.get("repo") or "", fetch.get("repo") or ""
            if repo_name.startswith("http"):
                raise ProviderError("'repo' option specifies the name of the Helm Chart repo, not the URL. "
                                    "Use 'fetchOpts.repo' to specify a URL for a remote Chart")
            if repo_name and not repo_url and not chart.startswith("oci://") and not chart.startswith(repo_name.rstrip("/") + "/"):
                chart = f"{repo_name.rstrip('/')}/{chart}"
            argv.append(chart)
            if repo_url:
                argv += ["--repo", repo_url]
            version = opts.get("version") or fetch.get("version")
            if version:
                argv += ["--version", version]
            elif fetch.get("devel"):
                argv.append("--devel")
            for key, flag in (("ca_file", "--ca-file"), ("cert_file", "--cert-file"), ("key_file", "--key-file"),
                              ("username", "--username"), ("password", "--password"), ("keyring", "--keyring")):
                if fetch.get(key):
                    argv += [flag, fetch[key]]
            if fetch.get("verify"):
                argv.append("--verify")
        argv += ["--namespace", namespace, "--values", values_file]
        if not opts.get("skip_crd_rendering"):
            argv.append("--include-crds")
        if not opts.get("include_test_hook_resources"):
            argv.append("--skip-tests")
        kube_version, api_versions = opts.get("kube_version"), list(opts.get("api_versions") or [])
        if cluster is not None and (not kube_version or not api_versions):
            try:
                server_version, server_api_versions = cluster.version_set()
                kube_version = kube_version or server_version
                api_versions = api_versions or server_api_versions
            except Exception as e:  # as the real provider: render without them, and say so
                log(f"unable to determine cluster's API version: {e}")
        if kube_version:
            argv += ["--kube-version", kube_version]
        for api_version in api_versions:
            argv += ["--api-versions", api_version]
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise ProviderError(f"failed to generate YAML for specified Helm chart: {result.stderr.strip()}")
    return result.stdout


# --- diffs --------------------------------------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def _path(prefix: str, key) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    if _IDENT.match(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


def detailed_diff(old, new, prefix: str = "", out: dict | None = None) -> dict:
    """Property path -> "add" / "delete" / "update", for the engine's display."""
    out = {} if out is None else out
    if isinstance(old, dict) and isinstance(new, dict) and new != UNKNOWN:
        for key in sorted(set(old) | set(new)):
            path = _path(prefix, key)
            if key not in new:
                out[path] = "delete"
            elif key not in old:
                out[path] = "add"
            elif old[key] != new[key]:
                detailed_diff(old[key], new[key], path, out)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (o, n) in enumerate(zip(old, new)):
            if o != n:
                detailed_diff(o, n, _path(prefix, i), out)
    elif old != new:
        out[prefix] = "update"
    return out


IDENTITY_PATHS = (("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"))


# --- the provider -------------------------------------------------------------------------------------

def rpc(method):
    """Turn exceptions into gRPC errors the engine shows, with a line on stderr for the logs."""

    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ProviderError as e:
            context.abort(grpc.StatusCode.UNKNOWN, str(e))
        except Exception as e:  # noqa: BLE001 - anything else is reported, not swallowed
            from kubernetes.client.exceptions import ApiException

            if isinstance(e, ApiException):
                context.abort(grpc.StatusCode.UNKNOWN, api_error_message(e))
            log(f"{method.__name__} failed: {e!r}")
            context.abort(grpc.StatusCode.UNKNOWN, f"{type(e).__name__}: {e}")

    wrapper.__name__ = method.__name__
    return wrapper


def api_error_message(e) -> str:
    body = getattr(e, "body", None)
    try:
        status = json.loads(body) if body else {}
        return status.get("message") or f"{e.status} {e.reason}"
    except (ValueError, TypeError):
        return f"{getattr(e, 'status', '')} {getattr(e, 'reason', '')} {body or ''}".strip()


class KubernetesStandIn(provider_pb2_grpc.ResourceProviderServicer):

    def __init__(self):
        self.cluster: Cluster | None = None
        self.default_namespace = "default"
        self.patch_force = False
        self.upsert = False

    # --- the provider resource ---------------------------------------------------------------------

    @staticmethod
    def _settings(args: dict, variables: dict | None = None) -> dict:
        """kubeconfig/context/namespace/...: from the provider's arguments, else from config variables."""
        settings = {}
        for key in ("kubeconfig", "context", "cluster", "namespace", "enablePatchForce", "upsertExistingObjects"):
            value = args.get(key)
            if value is None and variables:
                value = variables.get(CONFIG_PREFIX + key)
            settings[key] = plain(value)
        return settings

    @staticmethod
    def _flag(value) -> bool:
        return value is True or (isinstance(value, str) and value.strip().lower() == "true")

    @rpc
    def GetPluginInfo(self, request, context):
        return plugin_pb2.PluginInfo(version=VERSION)

    @rpc
    def CheckConfig(self, request, context):
        news = from_struct(request.news)
        settings = self._settings(news)
        failures = []
        if not contains_unknown([settings["kubeconfig"], settings["context"]]):
            try:
                kubeconfig, _ = load_kubeconfig(settings["kubeconfig"])
            except ProviderError as e:
                failures.append(provider_pb2.CheckFailure(property="kubeconfig", reason=str(e)))
            else:
                try:
                    select_context(kubeconfig, settings["context"])
                except ProviderError as e:
                    failures.append(provider_pb2.CheckFailure(property="context", reason=str(e)))
        return provider_pb2.CheckResponse(inputs=request.news, failures=failures)

    @rpc
    def DiffConfig(self, request, context):
        olds = plain(from_struct(request.old_inputs if request.HasField("old_inputs") else request.olds))
        news = plain(from_struct(request.news))
        changed = sorted(k for k in set(olds) | set(news) if olds.get(k) != news.get(k))
        # no replacement: replacing the provider would replace every object it manages
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if changed else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=changed)

    @rpc
    def Configure(self, request, context):
        settings = self._settings(from_struct(request.args), dict(request.variables))
        self.patch_force = self._flag(settings["enablePatchForce"])
        self.upsert = self._flag(settings["upsertExistingObjects"])
        if contains_unknown([settings["kubeconfig"], settings["context"], settings["namespace"]]):
            # only a preview can have unknown configuration: no cluster then, objects stay untouched
            namespace = settings["namespace"]
            self.default_namespace = UNKNOWN if contains_unknown(namespace) or not namespace else namespace
        else:
            kubeconfig, source = load_kubeconfig(settings["kubeconfig"])
            selected = select_context(kubeconfig, settings["context"])
            self.default_namespace = settings["namespace"] or selected.get("namespace") or "default"
            if self.cluster is not None:
                self.cluster.close()
            self.cluster = Cluster(kubeconfig, source, selected["name"])
        return provider_pb2.ConfigureResponse(acceptSecrets=True, supportsPreview=True,
                                              acceptResources=False, acceptOutputs=False)

    @rpc
    def Cancel(self, request, context):
        return empty_pb2.Empty()

    # --- helpers -----------------------------------------------------------------------------------

    def _cluster(self) -> Cluster:
        if self.cluster is None:
            raise ProviderError("the kubernetes provider is not configured with a reachable cluster")
        return self.cluster

    def _namespaced(self, api_version: str, kind: str) -> bool:
        """Whether a kind is namespaced: discovery, else the built-in list (a CRD not made yet: namespaced)."""
        if self.cluster is not None:
            try:
                answer = self.cluster.namespaced(api_version, kind)
            except Exception as e:  # noqa: BLE001 - unreachable: fall back as the real provider does
                log(f"discovery of {api_version} {kind} failed: {e}")
                answer = None
            if answer is not None:
                return answer
        return kind not in CLUSTER_SCOPED_KINDS

    def _api(self, obj: dict, wait_seconds: float = 0.0):
        return self._cluster().resource(obj["apiVersion"], obj["kind"], wait_seconds)

    def _get(self, resource, name: str, namespace: str | None) -> dict | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return self._cluster().dynamic.get(resource, name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def _apply(self, obj: dict, dry_run: bool = False, wait_seconds: float = 0.0) -> dict:
        resource = self._api(obj, wait_seconds)
        annotations = get_path(obj, "metadata", "annotations") or {}
        force = self.patch_force or self._flag(annotations.get("pulumi.com/patchForce"))
        kwargs = {"dry_run": "All"} if dry_run else {}
        namespace = get_path(obj, "metadata", "namespace") if resource.namespaced else None
        return self._cluster().dynamic.server_side_apply(
            resource, body=obj, name=obj["metadata"]["name"], namespace=namespace,
            field_manager=FIELD_MANAGER, force_conflicts=force, **kwargs).to_dict()

    # --- objects -----------------------------------------------------------------------------------

    @rpc
    def Check(self, request, context):
        news = from_struct(request.news)
        olds = from_struct(request.olds)
        failures = []
        api_version, kind = news.get("apiVersion"), news.get("kind")
        if api_version == UNKNOWN or kind == UNKNOWN:
            return provider_pb2.CheckResponse(inputs=request.news)
        if not api_version or not kind:
            token_api_version, token_kind = gvk_of_token(type_of(request.urn, request.type))
            news.setdefault("apiVersion", token_api_version)
            news.setdefault("kind", token_kind)
            api_version, kind = news["apiVersion"], news["kind"]
        metadata = news.get("metadata")
        if metadata is None:
            metadata = news["metadata"] = {}
        if isinstance(metadata, dict) and not is_secret(metadata):
            if not metadata.get("name") and not metadata.get("generateName"):
                old_name = get_path(olds, "metadata", "name")
                old_autonamed = get_path(olds, "metadata", "annotations", "pulumi.com/autonamed") == "true"
                if old_name and old_autonamed:
                    metadata["name"] = old_name
                else:
                    suffix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
                    metadata["name"] = f"{name_of(request.urn)}-{suffix}"
                annotations = metadata.get("annotations")
                if annotations is None:
                    annotations = metadata["annotations"] = {}
                if isinstance(annotations, dict):
                    annotations["pulumi.com/autonamed"] = "true"
            elif metadata.get("generateName") and not metadata.get("name"):
                failures.append(provider_pb2.CheckFailure(
                    property="metadata.generateName", reason="generateName is not supported by this stand-in provider"))
            if not metadata.get("namespace") and self._namespaced(api_version, kind):
                metadata["namespace"] = self.default_namespace
        return provider_pb2.CheckResponse(inputs=to_struct(news), failures=failures)

    @rpc
    def Diff(self, request, context):
        old_raw = from_struct(request.old_inputs if request.HasField("old_inputs") else request.olds)
        new_raw = from_struct(request.news)
        old, new = plain(old_raw), plain(new_raw)
        if old == new:
            return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)
        diffs = detailed_diff(old, new)
        replace_paths = []
        for path in IDENTITY_PATHS:
            o, n = get_path(old, *path), get_path(new, *path)
            if o != n:
                replace_paths.append(".".join(path))
        if not replace_paths and not contains_unknown(new) and self.cluster is not None:
            # the API server knows which fields are immutable: ask it with a dry run
            try:
                self._apply(new, dry_run=True)
            except Exception as e:  # noqa: BLE001
                message = api_error_message(e) if hasattr(e, "status") else str(e)
                if getattr(e, "status", None) == 422 and ("immutable" in message or "Forbidden" in message):
                    log(f"{describe(new)}: the update is refused ({message}): replace")
                    replace_paths = [p for p in diffs if p != "metadata" and not p.startswith("metadata")] or list(diffs)
        detailed = {}
        kinds = provider_pb2.PropertyDiff
        for path, change in diffs.items():
            replaces = any(path == r or path.startswith(r + ".") or r.startswith(path + ".") for r in replace_paths) \
                or path in replace_paths
            kind = {"add": kinds.ADD_REPLACE if replaces else kinds.ADD,
                    "delete": kinds.DELETE_REPLACE if replaces else kinds.DELETE,
                    "update": kinds.UPDATE_REPLACE if replaces else kinds.UPDATE}[change]
            detailed[path] = provider_pb2.PropertyDiff(kind=kind, inputDiff=True)
        for path in replace_paths:
            if path not in detailed:
                detailed[path] = provider_pb2.PropertyDiff(kind=kinds.UPDATE_REPLACE, inputDiff=True)
        same_identity = all(get_path(old, *p) == get_path(new, *p) for p in IDENTITY_PATHS[2:])
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME,
            diffs=sorted({p.split(".")[0].split("[")[0] for p in diffs}),
            replaces=replace_paths,
            # the same name cannot exist twice: the old object has to go first
            deleteBeforeReplace=bool(replace_paths) and same_identity,
            detailedDiff=detailed, hasDetailedDiff=True)

    @rpc
    def Create(self, request, context):
        if request.preview:
            return provider_pb2.CreateResponse(id="", properties=to_struct(preview_outputs(
                from_struct(request.properties), {})))
        inputs_raw = from_struct(request.properties)
        obj = plain(inputs_raw)
        resource = self._api(obj, wait_seconds=60.0)  # a CRD made by the same update may take a moment
        name = obj["metadata"]["name"]
        namespace = get_path(obj, "metadata", "namespace") if resource.namespaced else None
        if not self.upsert and self._get(resource, name, namespace) is not None:
            raise ProviderError(f'resource "{(namespace + "/") if namespace else ""}{name}" was not successfully '
                                f"created by the Kubernetes API server: {obj['kind'].lower()}s \"{name}\" already exists")
        live = self._apply(obj)
        log(f"created {describe(live)}")
        return provider_pb2.CreateResponse(id=self._id(live, resource.namespaced),
                                           properties=to_struct(live_outputs(live, inputs_raw)))

    @staticmethod
    def _id(live: dict, namespaced: bool) -> str:
        name = live["metadata"]["name"]
        return f"{live['metadata']['namespace']}/{name}" if namespaced else name

    @rpc
    def Read(self, request, context):
        props = plain(from_struct(request.properties))
        inputs_raw = from_struct(request.inputs)
        api_version, kind = props.get("apiVersion"), props.get("kind")
        if not api_version or not kind:
            api_version, kind = gvk_of_token(type_of(request.urn, request.type))
        namespace, _, name = request.id.rpartition("/")
        try:
            resource = self._cluster().resource(api_version, kind)
        except ProviderError:  # the kind is not served (its CRD is gone): neither is the object
            return provider_pb2.ReadResponse(id="")
        live = self._get(resource, name, (namespace or self.default_namespace) if resource.namespaced else None)
        if live is None:
            return provider_pb2.ReadResponse(id="")
        return provider_pb2.ReadResponse(id=self._id(live, resource.namespaced),
                                         properties=to_struct(live_outputs(live, inputs_raw)))

    @rpc
    def Update(self, request, context):
        if request.preview:
            return provider_pb2.UpdateResponse(properties=to_struct(preview_outputs(
                from_struct(request.news), from_struct(request.olds))))
        inputs_raw = from_struct(request.news)
        live = self._apply(plain(inputs_raw))
        log(f"updated {describe(live)}")
        return provider_pb2.UpdateResponse(properties=to_struct(live_outputs(live, inputs_raw)))

    @rpc
    def Delete(self, request, context):
        from kubernetes.dynamic.exceptions import NotFoundError

        outs = plain(from_struct(request.properties))
        if not outs.get("apiVersion"):
            outs = plain(from_struct(request.old_inputs))
        name = get_path(outs, "metadata", "name")
        if not name:
            return empty_pb2.Empty()
        cluster = self._cluster()
        try:
            resource = self._api(outs)
        except ProviderError as e:  # the kind is not served (its CRD went first): nor is the object
            log(f"{describe(outs)}: {e}; nothing to delete")
            return empty_pb2.Empty()
        namespace = get_path(outs, "metadata", "namespace") if resource.namespaced else None
        annotations = get_path(outs, "metadata", "annotations") or {}
        policy = {"foreground": "Foreground", "background": "Background", "orphan": "Orphan"}.get(
            str(annotations.get("pulumi.com/deletionPropagationPolicy", "foreground")).lower(), "Foreground")
        try:
            cluster.dynamic.delete(resource, name=name, namespace=namespace,
                                   body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy})
        except NotFoundError:
            return empty_pb2.Empty()
        uid = get_path(outs, "metadata", "uid")
        timeout = request.timeout or DEFAULT_DELETE_TIMEOUT
        deadline = time.monotonic() + timeout
        while True:
            live = self._get(resource, name, namespace)
            if live is None or (uid and get_path(live, "metadata", "uid") != uid):
                log(f"deleted {describe(outs)}")
                return empty_pb2.Empty()
            if time.monotonic() > deadline:
                finalizers = get_path(live, "metadata", "finalizers") or []
                raise ProviderError(f"{describe(outs)} was not deleted within {timeout:.0f}s"
                                    f" (finalizers: {', '.join(finalizers) or 'none'})")
            time.sleep(0.1)

    # --- invokes -----------------------------------------------------------------------------------

    @rpc
    def Invoke(self, request, context):
        args = plain(from_struct(request.args))
        if request.tok == "kubernetes:helm:template":
            opts = json.loads(args.get("jsonOpts") or "{}")
            text = helm_template(opts, self.cluster)
            objects = decode_yaml(text, opts.get("namespace") or "default", self._namespaced)
        elif request.tok == "kubernetes:yaml:decode":
            objects = decode_yaml(args.get("text") or "", args.get("defaultNamespace"), self._namespaced)
        else:
            raise ProviderError(f"unknown function {request.tok} (not implemented by the stand-in kubernetes provider)")
        return provider_pb2.InvokeResponse(**{"return": to_struct({"result": objects})})


def main() -> None:
    from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=_GRPC_CHANNEL_OPTIONS)
    servicer = KubernetesStandIn()
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    # the engine reads the port from the first line of stdout
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(0)
        if servicer.cluster is not None:
            servicer.cluster.close()


if __name__ == "__main__":
    main()
