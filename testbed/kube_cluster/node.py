"""The node of the tests' cluster: its own containerd (images loaded from the local Docker engine, as
``kind load`` does), the pause image, the kubelet and kube-proxy, and what they change on the host
(sysctls, iptables chains, mounts) undone at ``down``."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

from testbed import replacing_image
from testbed.processes import run

from .common import (
    BRIDGE,
    CNI_BIN_DIR,
    CNI_NETWORK,
    CONTAINERD_SOCKET,
    NODE_NAME,
    PAUSE_IMAGE,
    POD_CIDR,
    RUN_DIR,
    STATE_DIR,
    SYSCTLS,
    ClusterBase,
)


class Node(ClusterBase):
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

        def make() -> None:
            tar = subprocess.Popen(["tar", "-C", str(context), "-c", "pause"], stdout=subprocess.PIPE)
            run("docker", "import", "--change", 'ENTRYPOINT ["/pause"]', "-", PAUSE_IMAGE, stdin=tar.stdout)
            tar.wait()
        replacing_image(PAUSE_IMAGE, make)
        self.load_images([PAUSE_IMAGE])

    def _has_image(self, image: str) -> bool:
        return full_name(image) in self._ctr("images", "ls", "-q").stdout.split()

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
            # never evict or garbage-collect what the tests loaded: there is no registry to pull it again.
            # "0%" turns a disk threshold off (as kind does): under disk pressure the kubelet deletes every
            # image no running container uses, the sandbox's pause image among them, and no pod starts after
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "0%", "imagefs.available": "0%",
                             "nodefs.inodesFree": "0%"},
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


def full_name(image: str) -> str:
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


def remove_iptables_chains(prefixes: tuple[str, ...]) -> None:
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


def unmount_under(path: Path) -> None:
    """Unmount everything mounted below ``path`` (deepest first): volumes, netns, rootfs."""
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True):
        run("umount", "-l", point, check=False)

