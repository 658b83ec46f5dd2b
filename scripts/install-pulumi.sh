#!/usr/bin/env bash
# Builds the pulumi CLI from the Go module proxy into a cache outside the repository, for machines
# where Pulumi's installer cannot be reached. Work in progress (the Python language host and the
# provider plugins are not built yet); idempotent.
#
# The CLI's module (pkg/v3) replaces sdk/v3 with ../sdk and swaps a clipboard fork in, so
# `go install …@version` refuses it. Built from a wrapper module of ours that requires both modules
# at the same version and repeats the clipboard replacement, it builds as a plain dependency.
set -euo pipefail

PULUMI_VERSION="${PULUMI_VERSION:-v3.255.0}"
CACHE_DIR="${HYPERFLEET_CACHE:-$HOME/.cache/hyperfleet}"
BIN_DIR="$CACHE_DIR/pulumi/$PULUMI_VERSION/bin"
TARGET="$BIN_DIR/pulumi"

if [[ -x "$TARGET" ]]; then
  echo "pulumi $PULUMI_VERSION already built: $TARGET"
  exit 0
fi
command -v go >/dev/null || { echo "error: Go is needed to build the pulumi CLI" >&2; exit 1; }

start=$(date +%s)
work="$CACHE_DIR/build/pulumi-cli-$PULUMI_VERSION"
rm -rf "$work"
mkdir -p "$work" "$BIN_DIR"
cd "$work"
cat > go.mod <<MOD
module hyperfleet.local/pulumi-cli

go 1.25

require (
	github.com/pulumi/pulumi/pkg/v3 $PULUMI_VERSION
	github.com/pulumi/pulumi/sdk/v3 $PULUMI_VERSION
)

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
MOD
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
GO
echo "resolving modules for pulumi $PULUMI_VERSION ..."
GOFLAGS=-mod=mod go mod tidy
echo "building pulumi $PULUMI_VERSION (10-20 min cold on 2 cores) ..."
GOFLAGS=-mod=mod go build -trimpath -o "$TARGET.tmp" \
  -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
  github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
mv "$TARGET.tmp" "$TARGET"
echo "pulumi built in $(( $(date +%s) - start )) s: $TARGET"
