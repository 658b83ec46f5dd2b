"""Docker engines by address: ``unix://`` (this machine), ``ssh://user@host[:port]`` (Docker's own ssh
transport: ``docker system dial-stdio`` on the far side) and ``tcp://host:port`` (TLS with client
certificates from a Docker cert path: ``ca.pem``, ``cert.pem``, ``key.pem``).

One place that knows how to reach each kind: the Pulumi program's check that every host answers before
anything is created (:func:`ping`), and the monitor's container liveness on every host (:func:`client`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path

KINDS = ("unix", "ssh", "tcp")
#: the files of a Docker cert path (``docker --tlsverify``, ``DOCKER_CERT_PATH``)
CERT_KEY_FILE = "key.pem"  # the client's private key: the one secret of the three
CERT_FILES = ("ca.pem", "cert.pem", CERT_KEY_FILE)


#: the API version spoken to a remote engine (what listing and pinging need; every engine since 1.12
#: serves it), fixed so no request goes out before the client is set up
API_VERSION = "1.24"


class EngineUnreachable(RuntimeError):
    """An engine did not answer; the message names it and says why."""


def kind(url: str) -> str:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in KINDS:
        raise ValueError(f"a Docker host is a unix://, ssh:// or tcp:// address, not {url!r}")
    return scheme


def is_loopback(url: str) -> bool:
    """A tcp:// or ssh:// address on this machine only (127.0.0.0/8, ::1, localhost); unix:// too."""
    if kind(url) == "unix":
        return True
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class EngineAccess:
    """How to reach one engine: its address, and for tcp:// the cert path (TLS) or none (plain)."""

    url: str
    #: tcp://: a directory with ca.pem, cert.pem and key.pem; None: plain HTTP
    cert_path: str | None = None
    #: ssh://: options of the ssh command (identity file, known hosts), as the user's ssh takes them
    ssh_options: tuple[str, ...] = ()

    def tls(self):
        """docker-py's TLSConfig for a tcp:// engine with a cert path (the server's certificate is checked)."""
        if kind(self.url) != "tcp" or not self.cert_path:
            return None
        from docker.tls import TLSConfig

        ca, cert, key = (str(Path(self.cert_path) / name) for name in CERT_FILES)
        return TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)

    def base_url(self) -> str:
        """docker-py speaks https:// to a TLS engine; tcp:// means plain HTTP to it."""
        if kind(self.url) == "tcp" and self.cert_path:
            return "https://" + self.url[len("tcp://"):]
        return self.url


def missing_cert_files(cert_path: str) -> list[str]:
    return [name for name in CERT_FILES if not (Path(cert_path) / name).is_file()]


def client(access: EngineAccess, timeout_seconds: float = 30):
    """A docker-py client of the engine. ssh:// goes through paramiko (docker's ``ssh`` extra): the key
    and known hosts come from ``~/.ssh`` (config, known_hosts), an unknown host key is refused."""
    import docker

    c = docker.DockerClient(base_url=access.base_url(), tls=access.tls(), timeout=int(timeout_seconds),
                            use_ssh_client=False, version=API_VERSION)
    # the cert path's CA, not REQUESTS_CA_BUNDLE & co. (which requests would put first): an engine's
    # CA is its own; nor an HTTP proxy from the environment between us and the engine
    c.api.trust_env = False
    return c


def ping(access: EngineAccess, timeout_seconds: float = 15) -> None:
    """Raise EngineUnreachable unless the engine answers ``/_ping``. ssh:// is tried with the ssh
    command and ``ssh_options``, as Docker's CLI and the Pulumi provider reach it."""
    if kind(access.url) == "ssh" and shutil.which("ssh"):
        return _ping_over_ssh_command(access, timeout_seconds)
    try:
        c = client(access, timeout_seconds)
        try:
            c.ping()
        finally:
            c.close()
    except Exception as err:  # noqa: BLE001 - any failure to answer is the user's to read, named
        raise EngineUnreachable(f"{access.url}: {_reason(err)}") from None


def ssh_command(url: str, options: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The ssh command that opens the engine's API on an ssh:// host (what Docker's ssh transport runs)."""
    parts = urllib.parse.urlsplit(url)
    target = f"{parts.username}@{parts.hostname}" if parts.username else str(parts.hostname)
    port = ["-p", str(parts.port)] if parts.port else []
    return ["ssh", *options, *port, "--", target, "docker", "system", "dial-stdio"]


def _ping_over_ssh_command(access: EngineAccess, timeout_seconds: float) -> None:
    argv = ssh_command(access.url, ("-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(timeout_seconds)}",
                                    *access.ssh_options))
    try:
        result = subprocess.run(argv, input=b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n", capture_output=True,
                                timeout=timeout_seconds + 5, env=dict(os.environ, LC_ALL="C"))
    except subprocess.TimeoutExpired:
        raise EngineUnreachable(f"{access.url}: no answer over ssh in {timeout_seconds:g} s") from None
    status = result.stdout.split(b"\r\n", 1)[0]
    if result.returncode == 0 and status.split()[1:2] == [b"200"]:
        return
    detail = result.stderr.decode(errors="replace").strip().splitlines()
    raise EngineUnreachable(f"{access.url}: {detail[-1] if detail else 'no Docker engine answered over ssh'}")


def _reason(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]
