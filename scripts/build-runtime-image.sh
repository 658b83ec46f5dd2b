#!/usr/bin/env bash
# Builds the runtime image: with pip online in the image, or offline from a wheelhouse made on this
# machine for the base image's Python (OFFLINE=1, or the offline base image).
#   scripts/build-runtime-image.sh [IMAGE] [BASE_IMAGE]
# IMAGE defaults to hyperfleet/runtime:dev, BASE_IMAGE to $BASE_IMAGE or images/versions.env's; a base that
# can't be pulled is replaced by the offline base of make docker-engine when there is one (it says so).
# Extra wheels (e.g. the module of your objective) can be dropped into $EXTRA_WHEELS_DIR.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=images/versions.env
source "$REPO/images/versions.env"
IMAGE="${1:-hyperfleet/runtime:dev}"
BASE_IMAGE="${2:-${BASE_IMAGE:-$PYTHON_BASE_IMAGE}}"
CACHE_DIR="${HYPERFLEET_CACHE:-$HOME/.cache/hyperfleet}"
PYTHON="${PYTHON:-python3}"

OFFLINE_BASE_IMAGE="${OFFLINE_BASE_IMAGE:-hyperfleet/base:bookworm}"
start=$(date +%s)
# a base that can't be pulled (no registry access): the offline base of make docker-engine, if made
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! docker pull --quiet "$BASE_IMAGE" >/dev/null 2>&1; then
  if docker image inspect "$OFFLINE_BASE_IMAGE" >/dev/null 2>&1; then
    echo "$BASE_IMAGE can't be pulled here: building on the offline base $OFFLINE_BASE_IMAGE instead"
    BASE_IMAGE="$OFFLINE_BASE_IMAGE"
  else
    echo "error: the base image $BASE_IMAGE can't be pulled here, and there is no offline base $OFFLINE_BASE_IMAGE (make docker-engine makes one, as root)" >&2
    exit 1
  fi
fi
wheelhouse="$REPO/images/runtime/wheelhouse"
rm -f "$wheelhouse"/*.whl
# Online (pip in the image, from the package index) unless asked for offline (OFFLINE=1) or on the
# offline base: then from a wheelhouse made on this host (a proxy that intercepts TLS, or no index at
# all, stops pip inside a container, and air-gapped users need the same).
if [[ -z "${OFFLINE:-}" && "$BASE_IMAGE" != "$OFFLINE_BASE_IMAGE" ]]; then
  if [[ -n "${EXTRA_WHEELS_DIR:-}" ]]; then cp "$EXTRA_WHEELS_DIR"/*.whl "$wheelhouse/"; fi
  trap 'rm -f "$wheelhouse"/*.whl' EXIT
  docker build --quiet --build-arg BASE_IMAGE="$BASE_IMAGE" -f "$REPO/images/runtime/Dockerfile" -t "$IMAGE" "$REPO" >/dev/null
  echo "built $IMAGE on $BASE_IMAGE (online: pip in the image) in $(( $(date +%s) - start )) s"
  exit 0
fi
pyver=$(docker run --rm --entrypoint python3 "$BASE_IMAGE" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# dependencies (and the build backend, to build hyperfleet itself offline): binary wheels for the
# image's Python, cached across builds
deps="$CACHE_DIR/wheelhouse/py$pyver"
mkdir -p "$deps"
# the extras the image installs: the Dockerfile's ARG EXTRAS, the one place they are listed
requirements=$("$PYTHON" - "$REPO/runtime/pyproject.toml" "$REPO/images/runtime/Dockerfile" <<'PY'
import re, sys, tomllib
pyproject = tomllib.load(open(sys.argv[1], "rb"))
names = re.search(r"^ARG EXTRAS=(\S+)$", open(sys.argv[2]).read(), re.M).group(1).split(",")
project, extras = pyproject["project"], pyproject["project"]["optional-dependencies"]
print("\n".join(pyproject["build-system"]["requires"] + ["wheel"] + project["dependencies"]
                + [r for name in names for r in extras[name]]))
PY
)
mapfile -t requirements <<<"$requirements"
"$PYTHON" -m pip download --quiet --dest "$deps" --only-binary=:all: --python-version "$pyver" \
  --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 "${requirements[@]}"
cp "$deps"/*.whl "$wheelhouse/"
if [[ -n "${EXTRA_WHEELS_DIR:-}" ]]; then cp "$EXTRA_WHEELS_DIR"/*.whl "$wheelhouse/"; fi
trap 'rm -f "$wheelhouse"/*.whl' EXIT

docker build --quiet --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg PIP_OFFLINE=1 -f "$REPO/images/runtime/Dockerfile" \
  -t "$IMAGE" "$REPO" >/dev/null
echo "built $IMAGE on $BASE_IMAGE (offline: a wheelhouse made here for Python $pyver) in $(( $(date +%s) - start )) s"
