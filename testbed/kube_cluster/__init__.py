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

import os
import shutil
import signal
import time
from pathlib import Path

from testbed.kube_server import find_binary
from testbed.processes import ServerNotFound, alive, pids_matching, run, terminate

from .addons import Addons
from .certificates import make_pki
from .common import (
    BRIDGE,
    CNI_BIN_DIR,
    COMPONENTS,
    CONTAINERD_SOCKET,
    CONTEXT,
    INSTALL_HINT,
    KEDA_CRDS,
    KUBECONFIG,
    PAUSE_IMAGE,
    RUN_DIR,
    node_ip,
    tool,
)
from .control_plane import ControlPlane
from .node import Node, remove_iptables_chains, unmount_under

__all__ = ["CONTEXT", "KUBECONFIG", "PAUSE_IMAGE", "LocalCluster"]


class LocalCluster(ControlPlane, Node, Addons):
    """The single-node cluster: :meth:`up`, :meth:`down`, :meth:`running`, :meth:`load_images`."""

    def running(self) -> bool:
        """Every component's process is there and the API server answers."""
        pids = self._pids()
        return (set(COMPONENTS) <= set(pids) and all(alive(p) for p in pids.values())
                and self._kubectl_ok("get", "--raw", "/readyz"))

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
        make_pki(self.pki, self.ip)
        self._start_control_plane(binaries, deadline)
        self._start_containerd(deadline)
        self._load_pause_image(binaries["pause"])
        self._start_node(binaries, deadline)
        self._start_dns(binaries["coredns"], deadline)
        self._start_provisioner(binaries["local-path-provisioner"], deadline)
        self._start_keda(binaries, deadline)
        return self

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
        for pid in pids_matching(str(CONTAINERD_SOCKET.parent)):
            terminate(pid, sig=signal.SIGKILL)
        try:
            run(find_binary("kube-proxy"), "--cleanup", check=False)
        except ServerNotFound:
            pass  # never installed, so never started
        remove_iptables_chains(("KUBE-", "CNI-"))
        run("ip", "link", "delete", BRIDGE, check=False)
        unmount_under(RUN_DIR)
        unmount_under(CONTAINERD_SOCKET.parent)
        for netns in Path("/run/netns").glob("cni-*"):  # the CRI plugin's pod network namespaces
            run("umount", "-l", str(netns), check=False)
            netns.unlink(missing_ok=True)
        self._restore_sysctls()
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        shutil.rmtree(CONTAINERD_SOCKET.parent, ignore_errors=True)
        KUBECONFIG.unlink(missing_ok=True)
        if not quiet:
            print("local cluster stopped")

