#!/usr/bin/env bash
# Builds hyperfleet/test-mongo (testbed/images/test-mongo): FerretDB 2 on PostgreSQL with DocumentDB, for
# end-to-end tests where no mongo image can be pulled. Takes FerretDB and the staged PostgreSQL
# extensions from what testbed/install/test-server.sh built (make mongo-server).
#   testbed/install/test-mongo-image.sh [IMAGE] [BASE_IMAGE]
set -euo pipefail

IMAGE="${1:-hyperfleet/test-mongo:test}"
BASE_IMAGE="${2:-${BASE_IMAGE:-hyperfleet/base:bookworm}}"
# shellcheck source=testbed/lib.sh
source "$(dirname "$0")/../lib.sh"
binary="$CACHE_DIR/bin/ferretdb-$FERRETDB_VERSION"
stage="$CACHE_DIR/pg-extensions/$PG_EXTENSIONS_KEY"
[[ -x "$binary" && -f "$stage/.complete" ]] || {
  echo "error: FerretDB $FERRETDB_VERSION or the DocumentDB build is missing: run make mongo-server first" >&2; exit 1; }

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$TESTBED/images/test-mongo/Dockerfile" "$TESTBED/images/test-mongo/entrypoint.sh" "$context/"
cp "$binary" "$context/ferretdb"
cp -a "$stage/usr" "$context/usr"
# the server the extensions were built against, from where this machine got it
mkdir -p "$context/apt-sources/sources.list.d"
cp /etc/apt/sources.list "$context/apt-sources/" 2>/dev/null || touch "$context/apt-sources/sources.list"
cp /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources "$context/apt-sources/sources.list.d/" 2>/dev/null || true
server_version=$(cat "$stage/.complete")
packages=()
for pkg in "${PG_RUNTIME_PACKAGES[@]}"; do
  [[ $pkg == "postgresql-$PG_MAJOR" ]] && pkg="$pkg=$server_version"
  packages+=("$pkg")
done
docker build --quiet --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg PG_RUNTIME_PACKAGES="${packages[*]}" \
  -t "$IMAGE" "$context" >/dev/null
echo "built $IMAGE on $BASE_IMAGE"
