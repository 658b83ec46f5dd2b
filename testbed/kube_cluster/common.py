"""What the parts of the tests' single-node cluster share: names, ports, directories, the binaries'
lookup, and the base every part builds on (starting, waiting for and recording host processes)."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

from testbed.processes import CACHE_DIR, PidFile, ServerNotFound, run

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


class ClusterBase:
    """The state every part of the cluster uses: the PKI and run directories, the pid file, kubectl,
    and how a component's host process is started and waited for."""

    def __init__(self):
        self.pki = RUN_DIR / "pki"
        self.pids_file = RUN_DIR / "pids.json"
        self.kubeconfig = str(KUBECONFIG)
        self.context = CONTEXT
        self.ip = ""  # the node's address, known at up
        self._procs: dict[str, subprocess.Popen] = {}  # what this process started

    # --- state ----------------------------------------------------------------------------------

    def _pids(self) -> dict[str, int]:
        return PidFile(self.pids_file).read()

    def _save_pid(self, name: str, pid: int) -> None:
        PidFile(self.pids_file).save(name, pid)

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


def dns_answers(server: str, name: str) -> bool:
    """An A query for ``name`` to ``server`` gets an answer with at least one record."""
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


