#!/usr/bin/env bash
# Builds a MongoDB wire-protocol test server (FerretDB v1 on SQLite, wrapped by
# tests/mongo_server/ferretdb/main.go) from the Go module proxy into a cache outside the repository,
# for machines where no `mongod` exists. Idempotent: a cached binary is reused.
set -euo pipefail

FERRETDB_VERSION="${FERRETDB_VERSION:-v1.24.2}"
CACHE_DIR="${HYPERFLEET_CACHE:-$HOME/.cache/hyperfleet}"
BIN_DIR="$CACHE_DIR/bin"
TARGET="$BIN_DIR/hyperfleet-ferretdb-$FERRETDB_VERSION"
SRC="$(cd "$(dirname "$0")/.." && pwd)/tests/mongo_server/ferretdb/main.go"

if [[ -x "$TARGET" && "$TARGET" -nt "$SRC" ]]; then
  echo "ferretdb $FERRETDB_VERSION already built: $TARGET"
  exit 0
fi
command -v go >/dev/null || { echo "error: Go (>= 1.22) is needed to build the FerretDB test server" >&2; exit 1; }

start=$(date +%s)
work="$CACHE_DIR/build/ferretdb-$FERRETDB_VERSION"
rm -rf "$work"
mkdir -p "$work" "$BIN_DIR"
cp "$SRC" "$work/main.go"
cd "$work"
printf 'module hyperfleet.local/ferretdb\n\ngo 1.22\n' > go.mod
echo "building ferretdb $FERRETDB_VERSION (the first build downloads ~300 MB of Go modules) ..."
go get "github.com/FerretDB/FerretDB@$FERRETDB_VERSION"
go mod tidy
CGO_ENABLED=0 go build -trimpath -o "$TARGET.tmp" .
mv "$TARGET.tmp" "$TARGET"
ln -sf "$(basename "$TARGET")" "$BIN_DIR/hyperfleet-ferretdb"
echo "ferretdb built in $(( $(date +%s) - start )) s: $TARGET"
