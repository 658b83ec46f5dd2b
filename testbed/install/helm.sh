#!/usr/bin/env bash
# Builds helm v3 from the Go module proxy into a cache outside the repository, for machines where no
# helm binary can be downloaded: ${HYPERFLEET_CACHE:-$HOME/.cache/hyperfleet}/helm/$HELM_VERSION/bin/helm.
# Idempotent: a binary that is there and reports the wanted version is reused.
#
# helm.sh/helm/v3 has no replace directives, so `go install …@version` builds it as it is. The ldflags
# are those of helm's own Makefile: the version it reports, and the Kubernetes version `helm template`
# and `helm lint` assume when no cluster is asked (derived, as helm does, from its k8s.io/client-go).
set -euo pipefail

# shellcheck source=testbed/lib.sh
source "$(dirname "$0")/../lib.sh"
BIN_DIR="$CACHE_DIR/helm/$HELM_VERSION/bin"
TARGET="$BIN_DIR/helm"

built_ok() {
  [[ -x "$TARGET" ]] && "$TARGET" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"
}
if built_ok; then
  echo "helm $HELM_VERSION already built: $TARGET"
  exit 0
fi
command -v go >/dev/null || die "Go is needed to build helm"

start=$(date +%s)
echo "resolving helm.sh/helm/v3@$HELM_VERSION ..."
helm_gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f "$helm_gomod" ]] || die "could not download helm.sh/helm/v3@$HELM_VERSION"
# k8s.io/client-go v0.M.P goes with Kubernetes 1.M
client_go=$(sed -n 's#^[[:space:]]*k8s\.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$helm_gomod" | head -1)

ldflags="-s -w"
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
if [[ -n "$client_go" ]]; then
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$client_go"
  done
fi

tmp="$BIN_DIR.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
echo "building helm $HELM_VERSION (about 3 min cold on 2 cores) ..."
CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
mkdir -p "$BIN_DIR"
mv "$tmp/helm" "$TARGET"
rm -rf "$tmp"
built_ok || die "$TARGET does not report $HELM_VERSION"
echo "helm built in $(( $(date +%s) - start )) s: $TARGET ($(du -h "$TARGET" | cut -f1))"
