#!/usr/bin/env bash
# Installs what the tests' single-node cluster (testbed/kube_cluster, `make cluster-up`) runs besides the
# Kubernetes binaries of testbed/install/kube-apiserver.sh, for machines where kind's node image can't
# be pulled. Idempotent; root is needed only for the Debian packages.
#  1. Debian packages: containerd and runc (the container runtime; the tests run their own instance of
#     containerd, beside the Docker engine's), containernetworking-plugins (bridge, host-local, loopback,
#     portmap, firewall), iptables and conntrack (kube-proxy);
#  2. built from the Go module proxy into ${HYPERFLEET_CACHE:-$HOME/.cache/hyperfleet}/cluster-tools/bin:
#     CoreDNS (the cluster's DNS, a host process with its kubernetes plugin), rancher's
#     local-path-provisioner (PersistentVolumes in host directories anyone can write: the controller
#     manager's own host-path provisioner makes them root-only, which a non-root database can't use) and
#     crictl (tears pod sandboxes down through the runtime, so that the CNI plugins undo their work);
#  3. the pause binary of every pod sandbox: a static C program that waits for a signal, made with gcc.
set -euo pipefail

# shellcheck source=testbed/lib.sh
source "$(dirname "$0")/../lib.sh"
BIN_DIR="$CACHE_DIR/cluster-tools/bin"
t0=$(date +%s)

# --- Debian packages --------------------------------------------------------------------------------
missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/firewall ]] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || missing+=(iptables)
command -v conntrack >/dev/null || missing+=(conntrack)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
if ((${#missing[@]})); then
  apt_install --no-install-recommends "${missing[@]}"
fi
log "containerd: $(containerd --version | cut -d' ' -f3), runc: $(runc --version | head -1 | cut -d' ' -f3)"

# --- Go builds ------------------------------------------------------------------------------------
mkdir -p "$BIN_DIR"
# go_install NAME MODULE VERSION [PACKAGE]: `go install`, into BIN_DIR, once per version
go_install() {
  local name=$1 module=$2 version=$3 package=${4:-$2} stamp="$BIN_DIR/$1.version"
  if [[ -x "$BIN_DIR/$name" && -f $stamp && "$(cat "$stamp")" == "$module@$version" ]]; then
    log "$name $version already built"
    return
  fi
  command -v go >/dev/null || die "Go is needed to build $name"
  local t
  t=$(date +%s)
  log "building $name $version from the Go module proxy ..."
  GOBIN="$BIN_DIR" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$package@$version" ||
    die "building $package@$version failed (log above)"
  echo "$module@$version" >"$stamp"
  log "$name built in $(($(date +%s) - t)) s"
}
go_install coredns github.com/coredns/coredns "$COREDNS_VERSION"
go_install local-path-provisioner github.com/rancher/local-path-provisioner "$LOCAL_PATH_PROVISIONER_VERSION"
go_install crictl sigs.k8s.io/cri-tools "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl

# --- pause ----------------------------------------------------------------------------------------
if [[ ! -x "$BIN_DIR/pause" ]]; then
  src=$(mktemp --suffix=.c)
  trap 'rm -f "$src"' EXIT
  # PID 1 of every pod sandbox: holds the namespaces until the runtime stops it (SIGTERM/SIGINT)
  cat >"$src" <<'C'
#include <signal.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
int main(void) {
  signal(SIGTERM, stop);
  signal(SIGINT, stop);
  for (;;) pause();
}
C
  gcc -static -O2 -o "$BIN_DIR/pause" "$src"
  log "pause built"
fi
log "ready in $(($(date +%s) - t0)) s: $BIN_DIR"
