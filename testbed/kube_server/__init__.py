"""A real Kubernetes API server for tests, started and stopped by them: etcd, kube-apiserver and
(optionally) kube-controller-manager on loopback, with throwaway certificates and data.

``testbed/install/kube-apiserver.sh`` builds the Kubernetes binaries into
``$HYPERFLEET_CACHE/kubernetes/<version>/bin`` and installs Debian's etcd; binaries on PATH are used
when the cache has none. There is no kubelet and no scheduler: Pods stay Pending unless a test patches
their status, the way a kubelet would.

Choices made here, and why:

* Clients authenticate with an admin client certificate (group ``system:masters``) written into the
  kubeconfig; authorization is RBAC as in real clusters, so RBAC objects a test creates take effect.
* ServiceAccount admission (which sets ``serviceAccountName: default`` and the token volume on Pods)
  needs the ``default`` ServiceAccount of a namespace, which kube-controller-manager creates. It stays
  on when the controller manager runs (Pods look as they do in a real cluster; the account appears
  within milliseconds of a namespace, and :meth:`KubeServer.wait_for_service_account` waits for it
  where a test must be sure), and is switched off when it does not, or no Pod could be created in a
  new namespace.
* kube-controller-manager runs by default: without its namespace controller a deleted namespace stays
  Terminating for ever, and without its garbage collector owner references do nothing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from testbed import pins
from testbed.processes import CACHE_DIR, ManagedServer, ServerNotFound, alive, free_port, stop_process, terminate

KUBE_VERSION = pins()["KUBE_VERSION"]
INSTALL_SCRIPT = "testbed/install/kube-apiserver.sh"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the first address of the range: the `kubernetes` Service


def find_binary(name: str) -> str:
    """``name`` from the cache (the wanted version first, then any other), else from PATH."""
    kube_dir = CACHE_DIR / "kubernetes"
    candidates = [kube_dir / KUBE_VERSION / "bin" / name]
    if kube_dir.is_dir():
        candidates += sorted(kube_dir.glob(f"*/bin/{name}"), reverse=True)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise ServerNotFound(f"{name} not found in {kube_dir}/*/bin nor on PATH; run `{INSTALL_SCRIPT}`")


def _openssl(*args: str, cwd: str) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def _b64(path: str) -> str:
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


# --- certificates and kubeconfigs of the tests' clusters (this API server and testbed/kube_cluster) ---

_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def make_ca(pki: str, days: int = 7) -> None:
    """``ca.crt``/``ca.key`` in ``pki``: the one CA of a test cluster."""
    _openssl("req", "-x509", *_EC_KEY, "-keyout", "ca.key", "-out", "ca.crt", "-days", str(days),
             "-subj", "/CN=hyperfleet-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", cwd=pki)


def issue_certificate(pki: str, name: str, subject: str, usage: str, san: str | None = None, days: int = 7) -> None:
    """``NAME.crt``/``NAME.key`` signed by the CA in ``pki``; ``usage``: serverAuth and/or clientAuth."""
    _openssl("req", "-new", *_EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=pki)
    ext = f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
    if san:
        ext += f"subjectAltName={san}\n"
    with open(os.path.join(pki, f"{name}.ext"), "w") as f:
        f.write(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", str(days), "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=pki)


def apiserver_names(addresses: list[str]) -> str:
    """The subjectAltName of an API server reached at ``addresses`` and through the `kubernetes` Service."""
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local"]
    return ",".join([f"DNS:{d}" for d in dns] + [f"IP:{a}" for a in [*addresses, KUBERNETES_SERVICE_IP]])


def make_service_account_keys(pki: str) -> None:
    """``sa.key``/``sa.pub``: what signs and checks service-account tokens."""
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key", cwd=pki)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: str, context: str, server: str, ca_file: str, cert_file: str, key_file: str,
                     user: str = "admin") -> None:
    """A kubeconfig with one context, credentials embedded, readable only by its owner."""
    config = {  # JSON is YAML: every kubeconfig reader takes it
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority-data": _b64(ca_file)}}],
        "users": [{"name": f"{context}-{user}", "user": {
            "client-certificate-data": _b64(cert_file), "client-key-data": _b64(key_file)}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": f"{context}-{user}",
                                                   "namespace": "default"}}],
        "current-context": context,
    }
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    os.chmod(path, 0o600)


class KubeServer(ManagedServer):
    """etcd + kube-apiserver (+ kube-controller-manager) for the length of a test session.

    After :meth:`start`: ``kubeconfig`` (a file with the context ``context``, credentials embedded),
    ``url`` (the API server's address), ``ca_file``, ``client_cert``/``client_key`` (the admin's).
    """

    def __init__(self, context: str = "hyperfleet-test", controller_manager: bool = True, data_dir: str | None = None):
        """``data_dir``: where a server shared by several processes lives (:meth:`up`, :meth:`running`,
        :meth:`down`: one starts it, the others find its port there); by default a private directory."""
        if shutil.which("openssl") is None:
            raise ServerNotFound("openssl is needed to make the test cluster's certificates (apt-get install openssl)")
        self.context = context
        self.controller_manager = controller_manager
        self.etcd_bin = find_binary("etcd")
        self.apiserver_bin = find_binary("kube-apiserver")
        self.controller_manager_bin = find_binary("kube-controller-manager") if controller_manager else None
        if data_dir is None:
            self.data_dir = tempfile.mkdtemp(prefix="hyperfleet-kube-", dir=_tmpfs())
        else:
            self.data_dir = data_dir
        self.port = self._saved_state().get("port") or free_port()
        self.pki_dir = os.path.join(self.data_dir, "pki")
        self.kubeconfig = os.path.join(self.data_dir, "kubeconfig")
        self.ca_file = os.path.join(self.pki_dir, "ca.crt")
        self.client_cert = os.path.join(self.pki_dir, "admin.crt")
        self.client_key = os.path.join(self.pki_dir, "admin.key")
        self.etcd: subprocess.Popen | None = None
        self.apiserver: subprocess.Popen | None = None
        self.kcm: subprocess.Popen | None = None
        self._logs: list = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # --- processes ----------------------------------------------------------------------------

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen:
        log = open(os.path.join(self.data_dir, f"{name}.log"), "wb")
        self._logs.append(log)
        # a session of its own: a shared server outlives the process that started it (pytest-xdist ends a
        # worker's process group with it)
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)

    def log_tail(self, name: str, size: int = 3000) -> str:
        """The end of a component's log: ``etcd``, ``kube-apiserver`` or ``kube-controller-manager``."""
        try:
            with open(os.path.join(self.data_dir, f"{name}.log"), "rb") as f:
                return f.read()[-size:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout_seconds: float = 120.0) -> KubeServer:
        deadline = time.monotonic() + timeout_seconds
        self._make_pki()
        self._write_kubeconfig(self.kubeconfig, "admin")
        etcd_url = self._start_etcd(deadline)
        self._start_apiserver(etcd_url, deadline)
        if self.controller_manager:
            self._write_kubeconfig(os.path.join(self.data_dir, "kcm.kubeconfig"), "kcm")
            self._start_controller_manager(deadline)
        return self

    def _make_pki(self) -> None:
        """A CA, the API server's serving certificate, client certificates, the service-account key."""
        os.makedirs(self.pki_dir)
        make_ca(self.pki_dir)
        issue_certificate(self.pki_dir, "apiserver", "/CN=kube-apiserver", "serverAuth",
                          apiserver_names(["127.0.0.1"]))
        issue_certificate(self.pki_dir, "admin", "/O=system:masters/CN=hyperfleet-admin", "clientAuth")
        # the controller manager runs every controller with its own identity (no per-controller
        # service-account credentials), so it needs to be able to do anything
        issue_certificate(self.pki_dir, "kcm", "/O=system:masters/CN=system:kube-controller-manager", "clientAuth")
        # the API server's identity towards aggregated API servers (front proxy)
        issue_certificate(self.pki_dir, "front-proxy-client", "/CN=front-proxy-client", "clientAuth")
        make_service_account_keys(self.pki_dir)

    def _write_kubeconfig(self, path: str, user: str) -> None:
        write_kubeconfig(path, self.context, self.url, self.ca_file,
                         os.path.join(self.pki_dir, f"{user}.crt"), os.path.join(self.pki_dir, f"{user}.key"))

    def _start_etcd(self, deadline: float) -> str:
        client_url = f"http://127.0.0.1:{free_port()}"
        peer_url = f"http://127.0.0.1:{free_port()}"
        self.etcd = self._spawn([
            self.etcd_bin, "--name=hyperfleet-test", f"--data-dir={self.data_dir}/etcd",
            f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=hyperfleet-test={peer_url}", "--initial-cluster-state=new",
            "--log-level=warn", "--logger=zap",
        ], "etcd")
        self._wait("etcd", self.etcd, deadline, lambda: self._http_ok(f"{client_url}/health"))
        return client_url

    def _start_apiserver(self, etcd_url: str, deadline: float) -> None:
        pki = self.pki_dir
        disabled = [] if self.controller_manager else ["ServiceAccount"]
        argv = [
            self.apiserver_bin,
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", f"--secure-port={self.port}", "--advertise-address=127.0.0.1",
            f"--cert-dir={pki}", f"--tls-cert-file={pki}/apiserver.crt", f"--tls-private-key-file={pki}/apiserver.key",
            f"--client-ca-file={pki}/ca.crt",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki}/sa.pub", f"--service-account-signing-key-file={pki}/sa.key",
            "--allow-privileged=true",
            # aggregation layer: lets APIService objects (metrics-server & co.) be registered
            f"--requestheader-client-ca-file={pki}/ca.crt", "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki}/front-proxy-client.crt",
            f"--proxy-client-key-file={pki}/front-proxy-client.key",
            "--profiling=false",
        ]
        if disabled:
            argv.append(f"--disable-admission-plugins={','.join(disabled)}")
        self.apiserver = self._spawn(argv, "kube-apiserver")
        self._wait("kube-apiserver", self.apiserver, deadline, lambda: self._api_ok("/readyz"))

    def _start_controller_manager(self, deadline: float) -> None:
        pki = self.pki_dir
        kubeconfig = os.path.join(self.data_dir, "kcm.kubeconfig")
        self.kcm = self._spawn([
            self.controller_manager_bin,
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}", f"--cert-dir={pki}/kcm",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki}/sa.key", f"--root-ca-file={pki}/ca.crt",
            f"--cluster-signing-cert-file={pki}/ca.crt", f"--cluster-signing-key-file={pki}/ca.key",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--use-service-account-credentials=false",
            "--profiling=false",
        ], "kube-controller-manager")
        # ready once its service-account controller has given the `default` namespace its account
        self._wait("kube-controller-manager", self.kcm, deadline,
                   lambda: self._api_ok("/api/v1/namespaces/default/serviceaccounts/default"))

    def _wait(self, name: str, proc: subprocess.Popen, deadline: float, ready) -> None:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} was not ready in time:\n{self.log_tail(name)}")
            time.sleep(0.1)

    # --- a minimal client, for readiness checks ---------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        context.load_cert_chain(self.client_cert, self.client_key)
        return context

    @staticmethod
    def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _api_ok(self, path: str) -> bool:
        return self._http_ok(self.url + path, self._ssl_context())

    def wait_for_service_account(self, namespace: str, name: str = "default", timeout_seconds: float = 30.0) -> None:
        """Wait until ``namespace`` has its ServiceAccount ``name`` (made by the controller manager):
        ServiceAccount admission may refuse Pods there before, as in any cluster."""
        deadline = time.monotonic() + timeout_seconds
        while not self._api_ok(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no ServiceAccount {namespace}/{name} after {timeout_seconds}s")
            time.sleep(0.1)

    def env(self) -> dict:
        """Environment variables pointing kubectl, helm and client libraries at this server."""
        return {"KUBECONFIG": self.kubeconfig}

    # --- stop -----------------------------------------------------------------------------------

    def stop(self) -> None:
        for proc in (self.kcm, self.apiserver, self.etcd):
            stop_process(proc)
        for log in self._logs:
            log.close()
        self._logs.clear()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # --- shared by several processes (tests/shared_run.py): the state file in data_dir ---------------

    @property
    def _state_file(self) -> str:
        return os.path.join(self.data_dir, "state.json")

    def _saved_state(self) -> dict:
        try:
            with open(self._state_file) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {}

    def _saved_pids(self) -> list[int]:
        """The processes the state file names that are still this server's (a pid of a server gone long
        ago may be another process's now): alive, and ``data_dir`` in their command line."""
        pids = []
        for pid in self._saved_state().get("pids", []):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    ours = self.data_dir.encode() in f.read()
            except OSError:
                ours = False
            if ours and alive(pid):
                pids.append(pid)
        return pids

    def running(self) -> bool:
        """Its processes (as the state file names them) are there and the API server answers."""
        state = self._saved_state()
        self.port = state.get("port", self.port)  # another process may have started it since this object was made
        return bool(state) and self._saved_pids() == state["pids"] and self._api_ok("/readyz")

    def up(self) -> KubeServer:
        """Start afresh in ``data_dir`` (what a crashed earlier run left is stopped and removed) and write
        the state file that :meth:`running` and :meth:`down` read in any process."""
        self.down()
        os.makedirs(self.data_dir)
        self.port = free_port()
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        state = {"port": self.port, "pids": [p.pid for p in (self.kcm, self.apiserver, self.etcd) if p]}
        with open(self._state_file, "w") as f:
            json.dump(state, f)
        return self

    def down(self) -> None:
        """Stop the processes the state file names (the controller manager first) and remove ``data_dir``."""
        for pid in self._saved_pids():
            terminate(pid)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _tmpfs() -> str | None:
    """/dev/shm where there is one: etcd syncs every write, and nothing here must survive."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


#: where the server that a test run's processes share lives (tests/conftest.py)
SHARED_DATA_DIR = os.path.join(_tmpfs() or tempfile.gettempdir(), "hyperfleet-test-kube-server")


def find_helm() -> str | None:
    """helm as testbed/install/helm.sh built it (newest first), else from PATH."""
    import glob

    built = sorted(glob.glob(str(CACHE_DIR / "helm" / "*" / "bin" / "helm")), reverse=True)
    return built[0] if built else shutil.which("helm")


def wait_until(predicate, timeout_seconds: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout_seconds}s")
        time.sleep(0.2)


def gone(read) -> bool:
    """True once ``read()`` (a kubernetes client read call) answers 404."""
    from kubernetes.client.rest import ApiException

    try:
        read()
        return False
    except ApiException as e:
        if e.status == 404:
            return True
        raise
