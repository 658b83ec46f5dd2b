#!/usr/bin/env bash
# Builds hyperfleet/test-mongo (images/test-mongo): FerretDB behind our serialising wrapper, for
# end-to-end tests where no mongo image can be pulled. Needs the wrapper binary (make mongo-server).
#   scripts/build-test-mongo-image.sh [IMAGE] [BASE_IMAGE]
set -euo pipefail

IMAGE="${1:-hyperfleet/test-mongo:test}"
BASE_IMAGE="${2:-${BASE_IMAGE:-hyperfleet/base:bookworm}}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE_DIR="${HYPERFLEET_CACHE:-$HOME/.cache/hyperfleet}"
binary="$CACHE_DIR/bin/hyperfleet-ferretdb"
[[ -x "$binary" ]] || { echo "error: $binary is missing: run make mongo-server first" >&2; exit 1; }

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$REPO/images/test-mongo/Dockerfile" "$REPO/images/test-mongo/entrypoint.sh" "$context/"
cp "$binary" "$context/hyperfleet-ferretdb"
docker build --quiet --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" "$context" >/dev/null
echo "built $IMAGE on $BASE_IMAGE"
