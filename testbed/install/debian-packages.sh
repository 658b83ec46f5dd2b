#!/usr/bin/env bash
# Installs Debian packages that are missing (root and apt-get), or says which are and how to get them.
#   testbed/install/debian-packages.sh PACKAGE...
set -euo pipefail
# shellcheck source=testbed/lib.sh
source "$(dirname "$0")/../lib.sh"

missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
((${#missing[@]} == 0)) || apt_install --no-install-recommends "${missing[@]}"
