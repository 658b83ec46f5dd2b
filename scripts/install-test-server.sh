#!/usr/bin/env bash
# Installs the MongoDB wire-protocol server the tests start, for machines where no `mongod` exists:
#  1. FerretDB v1 (wrapped by devserver/ferretdb/main.go), built from the Go module proxy into
#     a cache outside the repository (idempotent: a cached binary is reused);
#  2. PostgreSQL from Debian's packages as FerretDB's backend, when it is missing and apt-get can be
#     used (root). Without it the tests fall back to FerretDB's SQLite backend, which is slower.
set -euo pipefail

if command -v mongod >/dev/null; then
  echo "test server: $(command -v mongod)"
  exit 0
fi

if ! command -v postgres >/dev/null && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing PostgreSQL (FerretDB's backend for tests) ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "note: no PostgreSQL found; tests will use FerretDB's slower SQLite backend" >&2
  fi
fi

FERRETDB_VERSION="${FERRETDB_VERSION:-v1.24.2}"
CACHE_DIR="${HYPERFLEET_CACHE:-$HOME/.cache/hyperfleet}"
BIN_DIR="$CACHE_DIR/bin"
TARGET="$BIN_DIR/hyperfleet-ferretdb-$FERRETDB_VERSION"
SRC="$(cd "$(dirname "$0")/.." && pwd)/devserver/ferretdb/main.go"

if [[ -x "$TARGET" && "$TARGET" -nt "$SRC" ]]; then
  echo "ferretdb $FERRETDB_VERSION already built: $TARGET"
  exit 0
fi
command -v go >/dev/null || { echo "error: Go (>= 1.26) is needed to build the FerretDB test server" >&2; exit 1; }

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
