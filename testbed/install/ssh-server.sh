#!/usr/bin/env bash
# The several-Docker-hosts test (testbed/docker_hosts) reaches one engine the way users reach a remote one,
# over ssh: Debian's openssh-server (only its sshd binary is used: the test starts its own on the
# test host's address, with keys it makes). Installs it when missing (root and apt-get); the package's
# own service is not started. Without root it only says what is missing.
set -euo pipefail
# shellcheck source=testbed/lib.sh
source "$(dirname "$0")/../lib.sh"

if [[ -x /usr/sbin/sshd ]] && command -v ssh >/dev/null; then
  echo "ssh server: $(/usr/sbin/sshd -V 2>&1 | head -n 1 || true)"
  exit 0
fi
is_root || die "openssh-server is missing and this is not root to install it"
# policy-rc.d: no service started by the package (there may be no init system, and none is wanted)
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt_install openssh-server openssh-client
echo "ssh server: $(/usr/sbin/sshd -V 2>&1 | head -n 1 || true)"
