#!/usr/bin/env bash
# Installs the Kubernetes binaries of the tests' clusters, for machines where no cluster can be had
# (no kind node image, no release downloads): the API-only server of testbed/kube_server and the
# single-node cluster of testbed/kube_cluster (testbed/install/local-cluster.sh):
#  1. etcd from Debian's `etcd-server` package, when `etcd` is missing (root, apt-get);
#  2. kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy, built from the
#     Go module proxy into a cache outside the repository:
#     ${HYPERFLEET_CACHE:-$HOME/.cache/hyperfleet}/kubernetes/$KUBE_VERSION/bin/.
# Idempotent: binaries that are there and report the wanted version are reused.
#
# k8s.io/kubernetes cannot be built with `go install …@version`: its go.mod points every k8s.io
# staging module (k8s.io/api, k8s.io/apiserver, …) at ./staging/src/…, and requires them as v0.0.0.
# A wrapper module of ours requires k8s.io/kubernetes and replaces each staging module with its
# published twin, v0.<minor>.<patch> for v1.<minor>.<patch>. The list of staging modules is read from
# kubernetes' own go.mod, so a new patch version needs no edit here.
#
# Without the k8s.io/component-base/version ldflags a binary reports v0.0.0-master+$Format…$, and
# clients that check the server version (pulumi-kubernetes among them) refuse it; they are set below.
set -euo pipefail

# shellcheck source=testbed/lib.sh
source "$(dirname "$0")/../lib.sh"
BIN_DIR="$CACHE_DIR/kubernetes/$KUBE_VERSION/bin"
COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
t0=$(date +%s)

# --- etcd -----------------------------------------------------------------------------------------
if command -v etcd >/dev/null; then
  echo "etcd: $(command -v etcd) ($(etcd --version 2>/dev/null | head -1))"
else
  t=$(date +%s)
  apt_install --no-install-recommends etcd-server
  # the package starts a system etcd on the default ports; the tests start their own
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
  echo "etcd installed in $(elapsed "$t"): $(etcd --version 2>/dev/null | head -1)"
fi

# --- kube-apiserver, kube-controller-manager ------------------------------------------------------
built_ok() {
  local cmd
  for cmd in "${COMMANDS[@]}"; do
    [[ -x "$BIN_DIR/$cmd" ]] || return 1
    "$BIN_DIR/$cmd" --version 2>/dev/null | grep -qx "Kubernetes $KUBE_VERSION" || return 1
  done
}
if built_ok; then
  echo "kubernetes $KUBE_VERSION already built: $BIN_DIR (${COMMANDS[*]})"
  exit 0
fi
command -v go >/dev/null || die "Go (>= 1.26) is needed to build kube-apiserver"

if [[ ! "$KUBE_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]]; then
  echo "error: KUBE_VERSION must look like v1.31.14, not $KUBE_VERSION" >&2
  exit 1
fi
KUBE_MINOR="${BASH_REMATCH[1]}"
STAGING_VERSION="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

work="$CACHE_DIR/build/kubernetes-$KUBE_VERSION"
rm -rf "$work"
mkdir -p "$work"
cd "$work"

t=$(date +%s)
echo "reading the staging modules of k8s.io/kubernetes $KUBE_VERSION ..."
kube_gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f "$kube_gomod" ]] || die "could not download k8s.io/kubernetes@$KUBE_VERSION"
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/.*#\1#p' "$kube_gomod")
(( ${#staging[@]} > 0 )) || die "no staging replacements found in $kube_gomod"
go_directive=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$kube_gomod")

{
  echo "module hyperfleet.local/kubernetes"
  echo
  echo "go ${go_directive:-1.22.0}"
  echo
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m $STAGING_VERSION"; done
  echo ")"
} > go.mod
{
  echo "//go:build tools"
  echo
  echo "// Package tools only pins the commands this module builds."
  echo "package tools"
  echo
  echo "import ("
  for cmd in "${COMMANDS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$cmd\""; done
  echo ")"
} > tools.go
echo "resolving modules (${#staging[@]} staging modules at $STAGING_VERSION; ~1 GB of modules cold) ..."
if ! go mod tidy; then
  echo "error: resolving k8s.io/kubernetes $KUBE_VERSION failed; if the messages above say a k8s.io staging" >&2
  echo "module at $STAGING_VERSION is not available, the module proxy lacks it: pick another KUBE_VERSION" >&2
  exit 1
fi
echo "modules resolved in $(elapsed "$t")"

t=$(date +%s)
pkg=k8s.io/component-base/version
ldflags="-s -w"
ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$KUBE_MINOR"
ldflags+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000 -X $pkg.gitTreeState=clean"
ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# client-go keeps a copy of the same variables (its user agent and `version` lookups use them)
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$KUBE_MINOR"
pkgs=()
for cmd in "${COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
echo "building ${COMMANDS[*]} $KUBE_VERSION (about 15 min cold on 2 cores, 1.5 GB peak memory) ..."
rm -rf out && mkdir out
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o out/ "${pkgs[@]}"
mkdir -p "$BIN_DIR"
for cmd in "${COMMANDS[@]}"; do
  mv "out/$cmd" "$BIN_DIR/$cmd"
done
echo "built in $(elapsed "$t")"
built_ok || die "the built binaries do not report Kubernetes $KUBE_VERSION"
for cmd in "${COMMANDS[@]}"; do
  echo "  $BIN_DIR/$cmd: $("$BIN_DIR/$cmd" --version) ($(du -h "$BIN_DIR/$cmd" | cut -f1))"
done
echo "kubernetes $KUBE_VERSION installed in $(elapsed "$t0")"
