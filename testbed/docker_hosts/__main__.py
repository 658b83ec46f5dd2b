"""python -m testbed.docker_hosts up|down|status: the test's SSH and TLS Docker hosts (testbed/docker_hosts)."""

import sys

from testbed.docker_hosts import ENGINES, DockerHosts

if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    hosts = DockerHosts()
    if command == "up":
        hosts.up()
        print(f"{hosts.ssh_host} (key {hosts.identity_file}), {hosts.tls_host} (certs {hosts.cert_path}); "
              f"home address {hosts.home_address}")
    elif command == "down":
        hosts.down()
    elif command == "status":
        print("running" if hosts.running() else "stopped")
        sys.exit(0 if hosts.running() else 1)
    else:
        sys.exit(f"usage: python -m testbed.docker_hosts up|down|status ({', '.join(e.name for e in ENGINES)} hosts)")
