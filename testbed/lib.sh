# shellcheck shell=bash
# shellcheck disable=SC2034  # read by the scripts that source this file
# Sourced by testbed/install/*.sh: where the repository and the cache are, the version pins, logging,
# and installing Debian packages.
TESTBED="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$TESTBED")"
CACHE_DIR="${HYPERFLEET_CACHE:-$HOME/.cache/hyperfleet}"
# shellcheck source=testbed/versions.sh
source "$TESTBED/versions.sh"
LOG_NAME="${LOG_NAME:-$(basename "$0" .sh)}"

log() { echo "[$LOG_NAME] $*"; }
die() { echo "[$LOG_NAME] error: $*" >&2; exit 1; }
is_root() { [[ $(id -u) -eq 0 ]]; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

# apt_install [APT-OPTION...] PACKAGE...: install Debian packages, or fail naming them when this is not
# root or has no apt-get. Waits for another apt to finish rather than failing on its lock.
apt_install() {
  local names=()
  local arg
  for arg in "$@"; do [[ $arg == -* ]] || names+=("$arg"); done
  if ! is_root || ! command -v apt-get >/dev/null; then
    die "missing Debian packages: ${names[*]}; install them as root (apt-get install ${names[*]})"
  fi
  log "installing ${names[*]} ..."
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
}
