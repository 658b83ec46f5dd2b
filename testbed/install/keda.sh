#!/usr/bin/env bash
# Builds KEDA (the operator and its external-metrics adapter) from the Go module proxy for the tests'
# single-node cluster (testbed/kube_cluster starts them as host processes, like the rest of the cluster),
# and keeps KEDA's CRDs from the same module. Users install KEDA with its own chart instead; the
# chart's workers.autoscaling.mode keda needs it in the cluster.
# Into ${HYPERFLEET_CACHE:-$HOME/.cache/hyperfleet}/cluster-tools: bin/keda-operator, bin/keda-adapter,
# keda-crds/*.yaml. Idempotent: a second run with the same version does nothing.
# Cold, the operator is the longest Go build of the tests (about 15 minutes and 3 GB of memory on 2
# cores: it links every scaler's cloud SDK); Go's build cache makes a rebuild take a minute.
set -euo pipefail

# shellcheck source=testbed/lib.sh
source "$(dirname "$0")/../lib.sh"
KEDA_MODULE=github.com/kedacore/keda/v2
TOOLS="$CACHE_DIR/cluster-tools"
BUILD="$CACHE_DIR/build/keda-$KEDA_VERSION"
STAMP="$TOOLS/bin/keda.version"

if [[ -x "$TOOLS/bin/keda-operator" && -x "$TOOLS/bin/keda-adapter" && -f "$STAMP" &&
      "$(cat "$STAMP")" == "$KEDA_MODULE@$KEDA_VERSION" && -n "$(ls "$TOOLS/keda-crds" 2>/dev/null)" ]]; then
  log "keda $KEDA_VERSION already built"
  exit 0
fi
command -v go >/dev/null || die "Go is needed to build KEDA"
t0=$(date +%s)
mkdir -p "$BUILD" "$TOOLS/bin" "$TOOLS/keda-crds"
cd "$BUILD"
# a module of our own that requires KEDA, so that its commands build with its dependency versions
if [[ ! -f go.mod ]]; then
  go mod init hyperfleet.local/keda >/dev/null 2>&1
fi
cat >tools.go <<'GO'
//go:build tools

// Package tools pins the KEDA commands this module builds.
package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)
GO
go mod edit -require="$KEDA_MODULE@$KEDA_VERSION"
# KEDA's own go.mod replaces and excludes a few modules; a requiring module must say the same. The
# tag it replaces nexus-proto-annotations with is not served, its pseudo-version is.
go mod edit -replace=github.com/nexus-rpc/nexus-proto-annotations@v0.1.0=github.com/nexus-rpc/nexus-proto-annotations@v0.1.1-0.20260629224316-835bd8d49cb4
go mod edit -exclude=github.com/go-chi/chi/v5@v5.2.3
log "resolving $KEDA_MODULE@$KEDA_VERSION and its dependencies ..."
go mod tidy >/dev/null 2>&1 || go mod tidy || die "go mod tidy failed (log above)"

src=$(go list -m -f '{{.Dir}}' "$KEDA_MODULE")
cp "$src"/config/crd/bases/*.yaml "$TOOLS/keda-crds/"
chmod u+w "$TOOLS"/keda-crds/*.yaml

version="$KEDA_MODULE/version"
flags=(-trimpath -ldflags "-s -w -X $version.Version=${KEDA_VERSION#v} -X $version.GitCommit=$KEDA_VERSION")
for command in operator adapter; do
  t=$(date +%s)
  log "building keda-$command $KEDA_VERSION (cold: the operator takes about 15 minutes) ..."
  # one package at a time: the scalers' SDKs need about 3 GB to compile and link
  CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -p 1 "${flags[@]}" -o "$TOOLS/bin/keda-$command.new" \
    "$KEDA_MODULE/cmd/$command" || die "building keda-$command failed (log above)"
  mv "$TOOLS/bin/keda-$command.new" "$TOOLS/bin/keda-$command"
  log "keda-$command built in $(($(date +%s) - t)) s"
done
echo "$KEDA_MODULE@$KEDA_VERSION" >"$STAMP"
log "done in $(($(date +%s) - t0)) s: $TOOLS/bin/keda-{operator,adapter}, CRDs in $TOOLS/keda-crds"
