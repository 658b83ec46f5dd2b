"""A real single-node Kubernetes cluster on this machine, whose pods really run: the stand-in for kind
where kind's node image can't be pulled. ``make cluster-up`` / ``make cluster-down`` (or
``python -m testbed.kube_cluster up|down|status``) start and stop it; the tests' ``kube_cluster``
fixture uses a running one, or starts one for the session.

What runs, all as host processes of root (one such cluster per machine: fixed ports, bridge, DNS):

* etcd, kube-apiserver (on the node's IP, which pods reach), kube-controller-manager, kube-scheduler,
  kubelet and kube-proxy v1.30 (testbed/install/kube-apiserver.sh: 1.30 still runs on cgroup v1);
* containerd from Debian as its own instance (own config, root, state and socket), runc, the pause
  image made locally (testbed/install/local-cluster.sh); images come from the local Docker engine,
  the way ``kind load docker-image`` does it (:meth:`LocalCluster.load_images`);
* pod network: Debian's CNI plugins (bridge + host-local + portmap + firewall: dockerd sets the
  FORWARD policy to DROP, the firewall plugin lets pod traffic through);
* CoreDNS on the node's IP, port 53, with its kubernetes plugin: the kubelet's ``clusterDNS``;
* rancher's local-path-provisioner as the default StorageClass ``local-path``;
* KEDA's operator and its external-metrics adapter (testbed/install/keda.sh), behind the API server's
  aggregation layer (a front-proxy CA, the APIService ``v1beta1.external.metrics.k8s.io`` pointing at
  the adapter on the node's IP): the chart's ``workers.autoscaling.mode keda``. The operator resolves
  Service names through CoreDNS: it runs in a mount namespace of its own whose ``/etc/resolv.conf``
  names the cluster's DNS, as a pod's would.

Traps of this VM, and what is done about them:

* no CAP_SYS_RESOURCE: writing ``oom_score_adj`` fails, and runc fails every sandbox with it. So
  containerd's ``restrict_oom_score_adj``, the kubelet's ``oomScoreAdj: 0``, kube-proxy's
  ``--oom-score-adj=0``;
* the kubelet changes ``vm.overcommit_memory`` and ``kernel.panic*``, and kubelet and kube-proxy leave
  iptables chains behind: :meth:`LocalCluster.down` restores the sysctls and removes the chains;
* without ``--use-service-account-credentials`` the controller manager can't clear the node's
  not-ready taint; without InternalIP first, ``kubectl logs/exec`` fail on a DNS lookup of the node.

Persistent across ``down``/``up`` (so a warm start takes seconds): containerd's image store. Everything
else (etcd, certificates, pods' directories, volumes) is made anew at each ``up``.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from testbed.kube_server import (
    SERVICE_CLUSTER_IP_RANGE,
    apiserver_names,
    find_binary,
    issue_certificate,
    make_ca,
    make_service_account_keys,
    write_kubeconfig,
)
from testbed.processes import CACHE_DIR, ServerNotFound
from testbed import base_image
from testbed.processes import PidFile, alive, run, terminate

CONTEXT = "hyperfleet-local"
NODE_NAME = "hyperfleet-node"
API_PORT = 6443
ETCD_CLIENT_PORT, ETCD_PEER_PORT = 23790, 23800
POD_CIDR = "10.244.0.0/16"
BRIDGE = "hf-cni0"
CNI_NETWORK = "hyperfleet"
CNI_BIN_DIR = "/usr/lib/cni"
INSTALL_HINT = "make kube-server (testbed/install/kube-apiserver.sh, testbed/install/local-cluster.sh, testbed/install/keda.sh)"

#: kept across up/down: containerd's images
STATE_DIR = CACHE_DIR / "cluster"
#: made at each up, removed at down
RUN_DIR = STATE_DIR / "run"
KUBECONFIG = STATE_DIR / "kubeconfig"
CONTAINERD_SOCKET = Path("/run/hyperfleet-containerd/containerd.sock")
TOOLS_DIR = CACHE_DIR / "cluster-tools" / "bin"
PAUSE_IMAGE = "hyperfleet/pause:local"

# what the kubelet and kube-proxy change, restored at down
SYSCTLS = ["vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
           "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.bridge.bridge-nf-call-iptables",
           "net.ipv4.conf.all.route_localnet", "net.ipv4.ip_forward"]
# the start order; down stops them in reverse
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet",
              "kube-proxy", "coredns", "local-path-provisioner", "keda-operator", "keda-adapter"]
#: KEDA's CRDs, next to its binaries (testbed/install/keda.sh)
KEDA_CRDS = CACHE_DIR / "cluster-tools" / "keda-crds"
#: the adapter's HTTPS port on the node's IP (the API server's is 6443); the operator's gRPC, metrics and
#: health ports on loopback (their defaults, 8080/8081, are everyone's)
KEDA_ADAPTER_PORT, KEDA_GRPC_PORT = 6444, 9666
KEDA_OPERATOR_METRICS_PORT, KEDA_OPERATOR_HEALTH_PORT, KEDA_ADAPTER_METRICS_PORT = 18080, 18081, 18082
EXTERNAL_METRICS = "/apis/external.metrics.k8s.io/v1beta1"
KEDA_NAMESPACE, KEDA_ADAPTER_SERVICE = "keda", "keda-metrics-apiserver"


def node_ip() -> str:
    """The address of the default route's interface: pods reach the host (API server, DNS) there."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("203.0.113.1", 9))  # a documentation address: no packet is sent, the kernel picks the source
        return s.getsockname()[0]


def tool(name: str) -> str:
    path = TOOLS_DIR / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise ServerNotFound(f"{name} not found in {TOOLS_DIR} nor on PATH; run `{INSTALL_HINT}`")


class LocalCluster:
    """The single-node cluster: :meth:`up`, :meth:`down`, :meth:`running`, :meth:`load_images`."""

    def __init__(self):
        self.pki = RUN_DIR / "pki"
        self.pids_file = RUN_DIR / "pids.json"
        self.kubeconfig = str(KUBECONFIG)
        self.context = CONTEXT
        self._procs: dict[str, subprocess.Popen] = {}  # what this process started

    # --- state ----------------------------------------------------------------------------------

    def _pids(self) -> dict[str, int]:
        return PidFile(self.pids_file).read()

    def _save_pid(self, name: str, pid: int) -> None:
        PidFile(self.pids_file).save(name, pid)

    def running(self) -> bool:
        """Every component's process is there and the API server answers."""
        pids = self._pids()
        return (set(COMPONENTS) <= set(pids) and all(alive(p) for p in pids.values())
                and self._kubectl_ok("get", "--raw", "/readyz"))

    def log_tail(self, name: str, size: int = 3000) -> str:
        try:
            with open(RUN_DIR / "logs" / f"{name}.log", "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def kubectl(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return run("kubectl", f"--kubeconfig={self.kubeconfig}", f"--context={self.context}", *args,
                   check=check, **kwargs)

    def _kubectl_ok(self, *args: str) -> bool:
        return KUBECONFIG.exists() and self.kubectl(*args, "--request-timeout=3s", check=False).returncode == 0

    # --- up -------------------------------------------------------------------------------------

    def up(self, timeout_seconds: float = 180) -> LocalCluster:
        """Start the cluster (or do nothing when it runs); returns once the node is Ready, DNS answers
        and the default StorageClass exists."""
        if self.running():
            return self
        if os.geteuid() != 0:
            raise PermissionError("the local cluster runs containerd, a kubelet and iptables: it needs root")
        binaries = {name: find_binary(name) for name in
                    ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")}
        binaries |= {name: tool(name) for name in ("coredns", "local-path-provisioner", "crictl", "pause",
                                                   "keda-operator", "keda-adapter")}
        if not any(KEDA_CRDS.glob("*.yaml")):
            raise ServerNotFound(f"no KEDA CRDs in {KEDA_CRDS}; run `{INSTALL_HINT}`")
        for name in ("containerd", "runc", "iptables", "kubectl", "docker"):
            if shutil.which(name) is None:
                raise ServerNotFound(f"{name} is not on PATH; run `{INSTALL_HINT}`")
        if not Path(CNI_BIN_DIR, "bridge").exists():
            raise ServerNotFound(f"no CNI plugins in {CNI_BIN_DIR}; run `{INSTALL_HINT}`")
        self.down(quiet=True)  # what a crashed earlier run left
        deadline = time.monotonic() + timeout_seconds
        self.ip = node_ip()
        for d in (RUN_DIR / "logs", self.pki, RUN_DIR / "kubelet", RUN_DIR / "cni", RUN_DIR / "volumes"):
            d.mkdir(parents=True, exist_ok=True)
        self._save_sysctls()
        self._make_pki()
        self._start_control_plane(binaries, deadline)
        self._start_containerd(deadline)
        self._load_pause_image(binaries["pause"])
        self._start_node(binaries, deadline)
        self._start_dns(binaries["coredns"], deadline)
        self._start_provisioner(binaries["local-path-provisioner"], deadline)
        self._start_keda(binaries, deadline)
        return self

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> None:
        log = open(RUN_DIR / "logs" / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
        log.close()
        self._save_pid(name, proc.pid)
        self._procs[name] = proc

    def _wait(self, name: str, deadline: float, ready) -> None:
        proc = self._procs[name]
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} was not ready in time:\n{self.log_tail(name)}")
            time.sleep(0.2)

    def _make_pki(self) -> None:
        pki = str(self.pki)
        make_ca(pki, days=30)
        issue_certificate(pki, "apiserver", "/CN=kube-apiserver", "serverAuth",
                          apiserver_names([self.ip, "127.0.0.1"]), days=30)
        users = {
            "admin": "/O=system:masters/CN=hyperfleet-admin",
            "kcm": "/CN=system:kube-controller-manager",
            "scheduler": "/CN=system:kube-scheduler",
            "kubelet": f"/O=system:nodes/CN=system:node:{NODE_NAME}",
            "kube-proxy": "/CN=system:kube-proxy",
            # the API server towards kubelets (logs, exec): system:kubelet-api-admin is bound to it below
            "apiserver-kubelet-client": "/CN=kube-apiserver-kubelet-client",
        }
        for name, subject in users.items():
            issue_certificate(pki, name, subject, "clientAuth", days=30)
        issue_certificate(pki, "kubelet-serving", f"/CN={NODE_NAME}", "serverAuth",
                          f"DNS:{NODE_NAME},IP:{self.ip}", days=30)
        make_service_account_keys(pki)
        # the aggregation layer: a CA of its own for the API server's client certificate towards extension
        # API servers (KEDA's adapter), which trust it through the extension-apiserver-authentication map
        front_proxy = self.pki / "front-proxy"
        front_proxy.mkdir(exist_ok=True)
        make_ca(str(front_proxy), days=30)
        issue_certificate(str(front_proxy), "front-proxy-client", "/CN=front-proxy-client", "clientAuth", days=30)
        # KEDA: the operator's gRPC server and the adapter (its client, and the HTTPS server the API server
        # calls) share one certificate; both read ca.crt, tls.crt and tls.key from one directory
        keda = self.pki / "keda"
        keda.mkdir(exist_ok=True)
        make_ca(str(keda), days=30)
        service = f"{KEDA_ADAPTER_SERVICE}.{KEDA_NAMESPACE}.svc"  # the name the API server checks
        issue_certificate(str(keda), "tls", "/CN=keda", "serverAuth,clientAuth",
                          f"DNS:localhost,DNS:{service},DNS:{service}.cluster.local,IP:127.0.0.1,IP:{self.ip}", days=30)
        server = f"https://{self.ip}:{API_PORT}"
        for name in users:
            path = KUBECONFIG if name == "admin" else RUN_DIR / f"{name}.kubeconfig"
            write_kubeconfig(str(path), CONTEXT, server, f"{pki}/ca.crt", f"{pki}/{name}.crt", f"{pki}/{name}.key",
                             user=name)

    def _start_control_plane(self, binaries: dict, deadline: float) -> None:
        pki, etcd_url = self.pki, f"http://127.0.0.1:{ETCD_CLIENT_PORT}"
        self._spawn("etcd", [
            binaries["etcd"], "--name=hyperfleet-local", f"--data-dir={RUN_DIR}/etcd",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
            f"--initial-cluster=hyperfleet-local=http://127.0.0.1:{ETCD_PEER_PORT}", "--initial-cluster-state=new",
            "--log-level=warn", "--logger=zap", "--unsafe-no-fsync",
        ])
        self._wait("etcd", deadline, lambda: _port_open("127.0.0.1", ETCD_CLIENT_PORT))
        self._spawn("kube-apiserver", [
            binaries["kube-apiserver"], f"--etcd-servers={etcd_url}",
            "--bind-address=0.0.0.0", f"--secure-port={API_PORT}", f"--advertise-address={self.ip}",
            f"--cert-dir={pki}", f"--tls-cert-file={pki}/apiserver.crt", f"--tls-private-key-file={pki}/apiserver.key",
            f"--client-ca-file={pki}/ca.crt", "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki}/sa.pub", f"--service-account-signing-key-file={pki}/sa.key",
            "--allow-privileged=true", "--profiling=false",
            # the aggregation layer (KEDA's external metrics), calling the adapter at its endpoint's address
            f"--requestheader-client-ca-file={pki}/front-proxy/ca.crt",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki}/front-proxy/front-proxy-client.crt",
            f"--proxy-client-key-file={pki}/front-proxy/front-proxy-client.key",
            "--enable-aggregator-routing=true",
        ])
        self._wait("kube-apiserver", deadline, lambda: self._kubectl_ok("get", "--raw", "/readyz"))
        # the API server's client identity may use the kubelet API (logs, exec, port-forward)
        self.kubectl("create", "clusterrolebinding", "hyperfleet-apiserver-kubelet-client",
                     "--clusterrole=system:kubelet-api-admin", "--user=kube-apiserver-kubelet-client")
        self._spawn("kube-controller-manager", [
            binaries["kube-controller-manager"], f"--kubeconfig={RUN_DIR}/kcm.kubeconfig",
            f"--authentication-kubeconfig={RUN_DIR}/kcm.kubeconfig",
            f"--authorization-kubeconfig={RUN_DIR}/kcm.kubeconfig",
            "--bind-address=127.0.0.1", "--leader-elect=false",
            f"--service-account-private-key-file={pki}/sa.key", f"--root-ca-file={pki}/ca.crt",
            f"--cluster-signing-cert-file={pki}/ca.crt", f"--cluster-signing-key-file={pki}/ca.key",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--use-service-account-credentials=true", "--profiling=false",
        ])
        self._spawn("kube-scheduler", [
            binaries["kube-scheduler"], f"--kubeconfig={RUN_DIR}/scheduler.kubeconfig",
            f"--authentication-kubeconfig={RUN_DIR}/scheduler.kubeconfig",
            f"--authorization-kubeconfig={RUN_DIR}/scheduler.kubeconfig",
            "--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false",
        ])
        self._wait("kube-controller-manager", deadline,
                   lambda: self._kubectl_ok("get", "serviceaccount", "default", "-n", "default"))

    def _start_containerd(self, deadline: float) -> None:
        root = STATE_DIR / "containerd"
        cni_conf = RUN_DIR / "cni"
        (cni_conf / "10-hyperfleet.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": CNI_NETWORK,
            "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR.replace("0.0/16", "0.0/24")}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(RUN_DIR / "cni-ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "firewall"},
            ],
        }, indent=2))
        config = RUN_DIR / "containerd.toml"
        config.write_text(f"""version = 2
root = "{root}"
state = "{CONTAINERD_SOCKET.parent}"
[grpc]
  address = "{CONTAINERD_SOCKET}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # no CAP_SYS_RESOURCE here: runc must not raise any container's oom_score_adj
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
""")
        self._spawn("containerd", ["containerd", f"--config={config}"])
        self._wait("containerd", deadline, lambda: self._ctr_ok("version"))

    def _ctr(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return run("ctr", f"--address={CONTAINERD_SOCKET}", "--namespace=k8s.io", *args, **kwargs)

    def _ctr_ok(self, *args: str) -> bool:
        return CONTAINERD_SOCKET.exists() and self._ctr(*args, check=False).returncode == 0

    def _load_pause_image(self, pause_binary: str) -> None:
        if self._has_image(PAUSE_IMAGE):
            return
        context = RUN_DIR / "pause-image"
        context.mkdir(exist_ok=True)
        shutil.copy(pause_binary, context / "pause")
        tar = subprocess.Popen(["tar", "-C", str(context), "-c", "pause"], stdout=subprocess.PIPE)
        run("docker", "import", "--change", 'ENTRYPOINT ["/pause"]', "-", PAUSE_IMAGE, stdin=tar.stdout)
        tar.wait()
        self.load_images([PAUSE_IMAGE])

    def _has_image(self, image: str) -> bool:
        return _full_name(image) in self._ctr("images", "ls", "-q").stdout.split()

    def load_images(self, images: list[str]) -> None:
        """Copy images from the local Docker engine into the cluster's containerd (``kind load``);
        an image whose Docker ID was loaded already is skipped."""
        stamps = STATE_DIR / "loaded-images.json"
        try:
            loaded = json.loads(stamps.read_text())
        except (FileNotFoundError, ValueError):
            loaded = {}
        for image in images:
            image_id = run("docker", "image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
            if loaded.get(image) == image_id and self._has_image(image):
                continue
            save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
            self._ctr("images", "import", "-", stdin=save.stdout)
            if save.wait() != 0:
                raise RuntimeError(f"docker save {image} failed")
            loaded[image] = image_id
            stamps.write_text(json.dumps(loaded, indent=2))

    def _start_node(self, binaries: dict, deadline: float) -> None:
        pki = self.pki
        resolv = RUN_DIR / "resolv.conf"  # the pods' upstream: none (nothing outside is reachable)
        resolv.write_text("")
        config = RUN_DIR / "kubelet.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": f"{pki}/ca.crt"}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
            "clusterDNS": [self.ip], "clusterDomain": "cluster.local", "resolvConf": str(resolv),
            "tlsCertFile": f"{pki}/kubelet-serving.crt", "tlsPrivateKeyFile": f"{pki}/kubelet-serving.key",
            "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE
            "failSwapOn": False, "readOnlyPort": 0,
            # never evict or garbage-collect what the tests loaded: there is no registry to pull it again
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "podPidsLimit": -1,
        }))
        self._spawn("kubelet", [
            binaries["kubelet"], f"--config={config}", f"--kubeconfig={RUN_DIR}/kubelet.kubeconfig",
            f"--root-dir={RUN_DIR}/kubelet", f"--hostname-override={NODE_NAME}", f"--node-ip={self.ip}",
            f"--cert-dir={pki}/kubelet",
        ])
        self._spawn("kube-proxy", [
            binaries["kube-proxy"], f"--kubeconfig={RUN_DIR}/kube-proxy.kubeconfig",
            f"--hostname-override={NODE_NAME}", f"--cluster-cidr={POD_CIDR}", "--proxy-mode=iptables",
            "--oom-score-adj=0", "--conntrack-max-per-core=0",
            "--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256",
        ])
        run("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", "net.ipv4.ip_forward=1")
        self._wait("kubelet", deadline, lambda: self._kubectl_ok(
            "wait", "--for=condition=Ready", f"node/{NODE_NAME}", "--timeout=1s"))
        # kubectl wait can see Ready before the controller manager lifts the not-ready taint
        self._wait("kube-controller-manager", deadline, lambda: "not-ready" not in self.kubectl(
            "get", "node", NODE_NAME, "-o", "jsonpath={.spec.taints}").stdout)

    def _start_dns(self, coredns: str, deadline: float) -> None:
        corefile = RUN_DIR / "Corefile"
        corefile.write_text(f""".:53 {{
    bind {self.ip}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {KUBECONFIG} {CONTEXT}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
""")
        self._spawn("coredns", [coredns, "-conf", str(corefile)])
        self._wait("coredns", deadline, lambda: _dns_answers(self.ip, "kubernetes.default.svc.cluster.local"))

    def _start_provisioner(self, provisioner: str, deadline: float) -> None:
        namespace, volumes = "local-path-storage", RUN_DIR / "volumes"
        image = base_image()
        self.load_images([image])
        objects = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "local-path-provisioner", "namespace": namespace}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "local-path-config", "namespace": namespace},
             "data": {
                 "config.json": json.dumps({"nodePathMap": [
                     {"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(volumes)]}]}),
                 # any user may write a volume: the database runs as a non-root user
                 "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                 "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                 "helperPod.yaml": json.dumps({
                     "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "helper-pod"},
                     "spec": {"containers": [{"name": "helper-pod", "image": image,
                                              "imagePullPolicy": "IfNotPresent"}]}}),
             }},
            {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
             "metadata": {"name": "local-path",
                          "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
             "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer",
             "reclaimPolicy": "Delete"},
        ]
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        self._spawn("local-path-provisioner", [
            provisioner, "start", f"--kubeconfig={KUBECONFIG}", f"--namespace={namespace}",
            "--configmap-name=local-path-config", "--service-account-name=local-path-provisioner",
            f"--helper-image={image}", "--provisioner-name=rancher.io/local-path",
        ], env={**os.environ, "KUBECONFIG": str(KUBECONFIG)})
        started = time.monotonic()  # it has no health endpoint: alive after a second is good enough
        self._wait("local-path-provisioner", deadline, lambda: time.monotonic() - started > 1)

    def _start_keda(self, binaries: dict, deadline: float) -> None:
        """KEDA's operator and adapter as host processes with the admin kubeconfig, its CRDs, and the
        APIService that sends external metrics to the adapter."""
        certs, namespace = self.pki / "keda", KEDA_NAMESPACE
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(KEDA_CRDS))  # one is over 256 KiB
        env = {**os.environ, "KUBECONFIG": str(KUBECONFIG), "WATCH_NAMESPACE": "", "POD_NAMESPACE": namespace,
               "KEDA_CLUSTER_OBJECT_NAMESPACE": namespace}
        self.kubectl("create", "namespace", namespace)
        # the scalers dial Service names: a resolv.conf like a pod's, in a mount namespace of its own
        resolv = RUN_DIR / "keda-resolv.conf"
        resolv.write_text(f"nameserver {self.ip}\nsearch svc.cluster.local cluster.local\noptions ndots:5\n")
        operator = shlex.join([
            binaries["keda-operator"], f"--kubeconfig={KUBECONFIG}", "--leader-elect=false",
            f"--cert-dir={certs}", "--enable-cert-rotation=false", "--enable-webhook-patching=false",
            "--enable-apiservice-patching=false", f"--metrics-service-bind-address=127.0.0.1:{KEDA_GRPC_PORT}",
            f"--metrics-bind-address=127.0.0.1:{KEDA_OPERATOR_METRICS_PORT}",
            f"--health-probe-bind-address=127.0.0.1:{KEDA_OPERATOR_HEALTH_PORT}", "--zap-encoder=console",
        ])
        self._spawn("keda-operator", ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                      f"mount --bind {shlex.quote(str(resolv))} /etc/resolv.conf && exec {operator}"],
                    env=env)
        self._spawn("keda-adapter", [
            binaries["keda-adapter"], f"--kubeconfig={KUBECONFIG}", f"--lister-kubeconfig={KUBECONFIG}",
            f"--authentication-kubeconfig={KUBECONFIG}", f"--authorization-kubeconfig={KUBECONFIG}",
            f"--secure-port={KEDA_ADAPTER_PORT}", f"--bind-address={self.ip}", f"--cert-dir={certs}",
            f"--tls-cert-file={certs}/tls.crt", f"--tls-private-key-file={certs}/tls.key",
            f"--metrics-service-address=127.0.0.1:{KEDA_GRPC_PORT}", f"--port={KEDA_ADAPTER_METRICS_PORT}",
        ], env=env)
        self._wait("keda-adapter", deadline, lambda: _port_open(self.ip, KEDA_ADAPTER_PORT))
        # after the adapter listens: an APIService found unavailable is only looked at again later
        ca_bundle = base64.b64encode((certs / "ca.crt").read_bytes()).decode()
        service = KEDA_ADAPTER_SERVICE
        objects = [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": namespace},
             "spec": {"ports": [{"name": "https", "port": 443, "targetPort": KEDA_ADAPTER_PORT}]}},
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": service, "namespace": namespace},
             "subsets": [{"addresses": [{"ip": self.ip}],
                          "ports": [{"name": "https", "port": KEDA_ADAPTER_PORT}]}]},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
             "spec": {"service": {"name": service, "namespace": namespace, "port": 443},
                      "group": "external.metrics.k8s.io", "version": "v1beta1", "caBundle": ca_bundle,
                      "groupPriorityMinimum": 100, "versionPriority": 100}},
        ]
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        self._wait("keda-operator", deadline, lambda: _port_open("127.0.0.1", KEDA_GRPC_PORT))
        self._wait("keda-adapter", deadline, lambda: self._kubectl_ok("get", "--raw", EXTERNAL_METRICS))

    # --- down -----------------------------------------------------------------------------------

    def down(self, quiet: bool = False) -> None:
        """Stop every component, remove every pod's containers and network, the iptables chains the
        node made, the bridge and the run directory; restore the sysctls. Safe to call when down."""
        pids = self._pids()
        if CONTAINERD_SOCKET.exists():
            # pods first, through the runtime: the CNI plugins undo their addresses and rules
            if "kubelet" in pids:
                terminate(pids.pop("kubelet"))
            crictl = [tool("crictl"), f"--runtime-endpoint=unix://{CONTAINERD_SOCKET}", "--timeout=20s"]
            run(*crictl, "rmp", "--all", "--force", check=False)
        for name in reversed(COMPONENTS):
            if name in pids:
                terminate(pids[name])
        # containers the runtime lost track of (a crash): their shims name our socket
        for pid in _pids_matching(str(CONTAINERD_SOCKET.parent)):
            terminate(pid, sig=signal.SIGKILL)
        try:
            run(find_binary("kube-proxy"), "--cleanup", check=False)
        except ServerNotFound:
            pass  # never installed, so never started
        _remove_iptables_chains(("KUBE-", "CNI-"))
        run("ip", "link", "delete", BRIDGE, check=False)
        _unmount_under(RUN_DIR)
        _unmount_under(CONTAINERD_SOCKET.parent)
        for netns in Path("/run/netns").glob("cni-*"):  # the CRI plugin's pod network namespaces
            run("umount", "-l", str(netns), check=False)
            netns.unlink(missing_ok=True)
        self._restore_sysctls()
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        shutil.rmtree(CONTAINERD_SOCKET.parent, ignore_errors=True)
        KUBECONFIG.unlink(missing_ok=True)
        if not quiet:
            print("local cluster stopped")

    def _save_sysctls(self) -> None:
        saved = {}
        for key in SYSCTLS:
            result = run("sysctl", "-n", key, check=False)
            if result.returncode == 0:
                saved[key] = result.stdout.strip()
        (STATE_DIR / "sysctls.json").write_text(json.dumps(saved, indent=2))

    def _restore_sysctls(self) -> None:
        path = STATE_DIR / "sysctls.json"
        try:
            saved = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return
        for key, value in saved.items():
            run("sysctl", "-qw", f"{key}={value}", check=False)
        path.unlink()


def _full_name(image: str) -> str:
    """containerd's name of a Docker image reference (``docker.io/library/…``, ``:latest``)."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        name, tag = image, "latest"
    first = name.split("/")[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return f"{name}:{tag}"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _dns_answers(server: str, name: str) -> bool:
    """An A query for ``name`` to ``server`` gets an answer with at least one record."""
    import struct

    query = struct.pack(">HHHHHH", 0x4846, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        try:
            s.sendto(query, (server, 53))
            answer = s.recv(512)
        except OSError:
            return False
    return len(answer) > 12 and struct.unpack(">H", answer[6:8])[0] > 0


def _pids_matching(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return [p for p in found if p != os.getpid()]


def _remove_iptables_chains(prefixes: tuple[str, ...]) -> None:
    """Every rule that jumps to a chain named with ``prefixes``, then those chains (filter, nat, mangle)."""
    for table in ("filter", "nat", "mangle"):
        dump = run("iptables-save", "-t", table, check=False).stdout.splitlines()
        chains = [line[1:].split()[0] for line in dump if line.startswith(":") and line[1:].startswith(prefixes)]
        for line in dump:
            if line.startswith("-A ") and any(f"-j {c}" in line or f"-g {c}" in line for c in chains):
                chain = line.split()[1]
                if not chain.startswith(prefixes):
                    run("iptables", "-t", table, "-D", chain, *shlex.split(line)[2:], check=False)
        for chain in chains:
            run("iptables", "-t", table, "-F", chain, check=False)
        for chain in chains:
            run("iptables", "-t", table, "-X", chain, check=False)


def _unmount_under(path: Path) -> None:
    """Unmount everything mounted below ``path`` (deepest first): volumes, netns, rootfs."""
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True):
        run("umount", "-l", point, check=False)
