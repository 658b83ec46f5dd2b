"""Two more Docker engines on this machine that a stack reaches as remote hosts: one over SSH, one over
TCP with TLS and client certificates. ``python -m testbed.docker_hosts up|down|status`` starts and stops
them by hand; the tests' ``docker_hosts`` fixture uses running ones, or starts them for the session.

Each engine is a machine of its own as far as a client can tell:

* its own network namespace, linked to a bridge made for them (``hf-hosts0``) by a veth pair: the
  home host (this machine's own engine, where Mongo is published) is 10.213.0.1, the SSH host
  10.213.0.2 and the TLS host 10.213.0.3, as on a LAN. The engine has its own docker0, iptables rules
  and container networks there; its containers reach the home host by its address;
* its own filesystem view: dockerd runs in a private mount namespace where ``/run``,
  ``/var/lib/docker`` and ``/etc/docker`` (its key, hence its engine ID) are its own directories.
  So ``/var/run/docker.sock`` is *its* socket there: the ssh session's ``docker system dial-stdio``
  (Docker's own ssh transport) and a worker container that mounts the socket reach this engine, not
  the home one, as on a real remote host;
* its own cgroup parent.

Why not a ``--bridge`` of its own in this machine's network namespace: a dockerd given ``--bridge``
deletes ``docker0``, the home engine's default bridge (seen here).

The SSH host runs Debian's sshd (openssh-server) in the engine's namespace, on port 22 of its address,
with a host key and a client key made for the test (``known_hosts`` and ``id_ed25519`` in
:attr:`DockerHosts.ssh_dir`). The TLS host serves the engine API on port 2376 with ``--tlsverify``:
a CA, a server certificate naming 10.213.0.3, and a client certificate, laid out as Docker's cert path
(``ca.pem``, ``cert.pem``, ``key.pem`` in :attr:`DockerHosts.cert_path`).

Both engines have the stand-in for the NVIDIA Container Toolkit's hook (:data:`NVIDIA_HOOK_STAND_IN`):
this machine has no GPU, and the GPU tests need engines that accept Docker's GPU device requests
(``--gpus device=N``). dockerd registers its own ``nvidia`` device driver when it starts with
``nvidia-container-runtime-hook`` on its PATH: the driver then turns a request into the container's
``NVIDIA_VISIBLE_DEVICES`` and a prestart hook. On a GPU host the toolkit's hook mounts that GPU's device
files into the container; the stand-in does nothing. Only these two test engines get it (never this
machine's own engine, nor anything a user installs).

Kept across down/up (a warm start takes seconds): each engine's data root (its images). Made anew at
each up: keys, certificates, the run directories.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from testbed import image_id, replacing_image
from testbed.processes import CACHE_DIR, ServerNotFound
from testbed.kube_server import issue_certificate, make_ca
from testbed.processes import PidFile, alive, run, terminate

BRIDGE = "hf-hosts0"
HOME_ADDRESS = "10.213.0.1"
SSH_PORT, TLS_PORT = 22, 2376
STATE_DIR = CACHE_DIR / "docker-hosts"
#: a stand-in for the NVIDIA Container Toolkit's prestart hook, on the PATH of the test engines' dockerd (see
#: the module's docstring): a hook that reads the container's state, as runc hands it over, and does nothing
NVIDIA_HOOK_STAND_IN = STATE_DIR / "nvidia-stand-in" / "nvidia-container-runtime-hook"
_HOOK_SCRIPT = """#!/bin/sh
# STAND-IN for the NVIDIA Container Toolkit's hook (testbed/docker_hosts): no GPU here, so nothing to mount.
cat >/dev/null
"""
INSTALL_HINT = "make docker-hosts (Debian's openssh-server)"


@dataclass(frozen=True)
class Engine:
    name: str
    address: str

    @property
    def netns(self) -> str:
        return f"hf-host-{self.name}"

    @property
    def veth(self) -> str:
        """The host's end of the link into the engine's network namespace (on the bridge)."""
        return f"hf-{self.name}-h"

    @property
    def root(self) -> Path:
        return STATE_DIR / self.name

    @property
    def run_dir(self) -> Path:
        """The engine's /run (its docker.sock, containerd, sshd's privilege separation directory)."""
        return self.root / "run"

    @property
    def socket(self) -> str:
        """The engine's socket as seen from this machine (in its namespace: /var/run/docker.sock)."""
        return f"unix://{self.run_dir}/docker.sock"


SSH_ENGINE = Engine("ssh", "10.213.0.2")
TLS_ENGINE = Engine("tls", "10.213.0.3")
ENGINES = (SSH_ENGINE, TLS_ENGINE)


class DockerHosts:
    """The SSH and TLS engines: :meth:`up`, :meth:`down`, :meth:`running`, :meth:`load_images`, and the
    addresses and credentials a stack config names."""

    ssh_host = f"ssh://root@{SSH_ENGINE.address}"
    tls_host = f"tcp://{TLS_ENGINE.address}:{TLS_PORT}"
    home_address = HOME_ADDRESS

    def __init__(self):
        self.credentials = STATE_DIR / "credentials"
        self.ssh_dir = self.credentials / "ssh"
        self.cert_path = self.credentials / "docker-tls"
        self.identity_file = self.ssh_dir / "id_ed25519"
        self.known_hosts_file = self.ssh_dir / "known_hosts"
        self.pids = PidFile(STATE_DIR / "pids.json")

    def running(self) -> bool:
        pids = self.pids.read()
        wanted = [f"dockerd-{e.name}" for e in ENGINES] + ["sshd"]
        # engines started before the GPU stand-in existed count as not running: up() starts them again with it
        return all(name in pids and alive(pids[name]) for name in wanted) and self.have_gpu_stand_in() and all(
            run("docker", "-H", e.socket, "version", check=False).returncode == 0 for e in ENGINES)

    def have_gpu_stand_in(self) -> bool:
        """Both engines started with the hook's stand-in on their PATH (ones started before it existed did not)."""
        pids = self.pids.read()
        return all(_has_hook_stand_in(pids.get(f"dockerd-{e.name}", 0)) for e in ENGINES)

    # --- up / down ------------------------------------------------------------------------------

    def up(self, timeout_seconds: float = 90) -> DockerHosts:
        if os.geteuid() != 0:
            raise ServerNotFound("the test's Docker hosts need root (network namespaces, dockerd, sshd)")
        for binary in ("dockerd", "docker", "nsenter", "unshare", "ssh-keygen", "openssl", "ip"):
            if shutil.which(binary) is None:
                raise ServerNotFound(f"{binary} is missing; run `{INSTALL_HINT}`")
        if not Path("/usr/sbin/sshd").is_file():
            raise ServerNotFound(f"/usr/sbin/sshd is missing; run `{INSTALL_HINT}`")
        if self.running():
            return self
        self.down()
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self._network()
        self._credentials()
        deadline = time.monotonic() + timeout_seconds
        for engine in ENGINES:
            self._start_engine(engine)
        for engine in ENGINES:
            while run("docker", "-H", engine.socket, "version", check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dockerd of the {engine.name} host did not start: see {engine.root}/dockerd.log")
                time.sleep(0.3)
        self._start_sshd()
        return self

    def down(self) -> None:
        pids = self.pids.read()
        for name in ["sshd"] + [f"dockerd-{e.name}" for e in ENGINES]:
            if pids.get(name):
                terminate(pids[name])
        self.pids.path.unlink(missing_ok=True)
        for engine in ENGINES:
            # what outlives its dockerd there (containerd's shims and their containers) keeps the namespace,
            # and with it the veth pair, after its name is deleted: the next up() would find the veth's name taken
            for pid in run("ip", "netns", "pids", engine.netns, check=False).stdout.split():
                terminate(int(pid), signal.SIGKILL, timeout_seconds=5)
            run("ip", "netns", "del", engine.netns, check=False)
            run("ip", "link", "del", engine.veth, check=False)  # the pair goes, whoever still holds the namespace
            shutil.rmtree(engine.run_dir, ignore_errors=True)
        run("ip", "link", "del", BRIDGE, check=False)

    def _network(self) -> None:
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{HOME_ADDRESS}/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        for engine in ENGINES:
            ns = engine.netns
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", engine.veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "link", "set", engine.veth, "master", BRIDGE, "up")
            run("ip", "-n", ns, "addr", "add", f"{engine.address}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "route", "add", "default", "via", HOME_ADDRESS)

    def _credentials(self) -> None:
        shutil.rmtree(self.credentials, ignore_errors=True)
        self.ssh_dir.mkdir(parents=True)
        self.cert_path.mkdir(parents=True)
        sshd_dir = SSH_ENGINE.root / "sshd"
        shutil.rmtree(sshd_dir, ignore_errors=True)
        sshd_dir.mkdir(parents=True)
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hyperfleet-test", "-f", str(self.identity_file))
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(sshd_dir / "host_key"))
        shutil.copy(self.identity_file.with_suffix(".pub"), sshd_dir / "authorized_keys")
        host_key = (sshd_dir / "host_key.pub").read_text().split()[:2]
        self.known_hosts_file.write_text(f"{SSH_ENGINE.address} {' '.join(host_key)}\n")
        pki = str(self.credentials / "pki")
        os.makedirs(pki)
        make_ca(pki)
        issue_certificate(pki, "server", f"/CN={TLS_ENGINE.address}", "serverAuth", san=f"IP:{TLS_ENGINE.address}")
        issue_certificate(pki, "client", "/CN=hyperfleet-test-client", "clientAuth")
        for source, target in (("ca.crt", "ca.pem"), ("client.crt", "cert.pem"), ("client.key", "key.pem")):
            shutil.copy(os.path.join(pki, source), self.cert_path / target)

    def _start_engine(self, engine: Engine) -> None:
        NVIDIA_HOOK_STAND_IN.parent.mkdir(parents=True, exist_ok=True)
        NVIDIA_HOOK_STAND_IN.write_text(_HOOK_SCRIPT)
        NVIDIA_HOOK_STAND_IN.chmod(0o755)
        lib = engine.root / "lib"  # kept: the images loaded into this engine
        lib.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(engine.run_dir, ignore_errors=True)
        engine.run_dir.mkdir(parents=True)
        (engine.run_dir / "sshd").mkdir(mode=0o755)
        config = engine.root / "daemon.json"
        config.write_text("{}")
        args = ["dockerd", "--config-file", str(config), "-H", "unix:///var/run/docker.sock",
                "--cgroup-parent", f"hyperfleet-host-{engine.name}"]
        if engine is TLS_ENGINE:
            pki = self.credentials / "pki"
            args += ["-H", f"tcp://{engine.address}:{TLS_PORT}", "--tlsverify", f"--tlscacert={pki}/ca.crt",
                     f"--tlscert={pki}/server.crt", f"--tlskey={pki}/server.key"]
        etc = engine.root / "etc-docker"  # its own key.json, hence its own engine ID
        etc.mkdir(exist_ok=True)
        Path("/etc/docker").mkdir(exist_ok=True)
        # in its network namespace and a mount namespace of its own: its own /run, /var/lib/docker and
        # /etc/docker (not `ip netns exec`: its fresh /sys hides the cgroup mounts dockerd needs)
        script = (f"mount --bind {engine.run_dir} /run && mount --bind {lib} /var/lib/docker && "
                  f"mount --bind {etc} /etc/docker && exec {' '.join(args)}")
        with open(engine.root / "dockerd.log", "wb") as log:
            env = {**os.environ, "PATH": f"{NVIDIA_HOOK_STAND_IN.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
            proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{engine.netns}", "--", "unshare", "--mount",
                                     "--propagation", "private", "--", "sh", "-c", script],
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.pids.save(f"dockerd-{engine.name}", proc.pid)

    def _start_sshd(self) -> None:
        sshd_dir = SSH_ENGINE.root / "sshd"
        config = sshd_dir / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {SSH_ENGINE.address}:{SSH_PORT}", f"HostKey {sshd_dir}/host_key",
            f"AuthorizedKeysFile {sshd_dir}/authorized_keys", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            f"PidFile {sshd_dir}/sshd.pid", "LogLevel ERROR", ""]))
        dockerd = self.pids.read()[f"dockerd-{SSH_ENGINE.name}"]
        with open(SSH_ENGINE.root / "sshd.log", "wb") as log:
            proc = subprocess.Popen(["nsenter", f"--target={dockerd}", "--mount", "--net", "--", "/usr/sbin/sshd", "-D", "-e",
                                     "-f", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids.save("sshd", proc.pid)
        deadline = time.monotonic() + 20
        while self.ssh("true", check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd of the ssh host did not answer: see {SSH_ENGINE.root}/sshd.log")
            time.sleep(0.2)

    # --- use ------------------------------------------------------------------------------------

    def ssh_options(self) -> list[str]:
        return ["-i", str(self.identity_file), "-o", f"UserKnownHostsFile={self.known_hosts_file}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]

    def ssh(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return run("ssh", *self.ssh_options(), "-p", str(SSH_PORT), f"root@{SSH_ENGINE.address}", "--", *command,
                   check=check)

    def load_images(self, images: list[str]) -> None:
        """Copy images from this machine's engine into each host (what a registry does for real hosts);
        an image whose ID is there already is skipped."""
        for image in images:
            here = image_id(image)
            if here is None:
                raise RuntimeError(f"no image {image} on this machine's engine to copy")
            for engine in ENGINES:
                if image_id(image, engine.socket) != here:
                    replacing_image(image, partial(self._copy_image, image, engine), host=engine.socket)

    @staticmethod
    def _copy_image(image: str, engine: Engine) -> None:
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        run("docker", "-H", engine.socket, "load", stdin=save.stdout)
        if save.wait() != 0:
            raise RuntimeError(f"docker save {image} failed")


def _has_hook_stand_in(pid: int) -> bool:
    """The engine ``pid`` started with the hook's stand-in on its PATH (engines started before it existed did not)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    path = next((e[5:].decode() for e in environ if e.startswith(b"PATH=")), "")
    return str(NVIDIA_HOOK_STAND_IN.parent) in path.split(os.pathsep)
