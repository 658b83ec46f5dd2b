#!/usr/bin/env bash
# Makes a Docker engine and an offline base image available for the tests that need containers:
#  1. Debian's docker.io and debootstrap when docker is missing (root and apt-get needed);
#  2. dockerd started in the background when no engine answers (logs in $HYPERFLEET_CACHE/dockerd.log);
#  3. the base image $BASE_IMAGE (Debian bookworm with Python) made with debootstrap and `docker import`,
#     because no image can be pulled on an offline machine.
# Idempotent. Without root it only checks and says what is missing.
set -euo pipefail

# shellcheck source=testbed/lib.sh
source "$(dirname "$0")/../lib.sh"
BASE_IMAGE="${BASE_IMAGE:-hyperfleet/base:bookworm}"
mkdir -p "$CACHE_DIR"

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  apt_install docker.io debootstrap
fi

if ! docker info >/dev/null 2>&1; then
  is_root || die "no Docker engine answers and this is not root to start one"
  echo "starting dockerd ..."
  nohup dockerd >"$CACHE_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || die "dockerd did not start; see $CACHE_DIR/dockerd.log"
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  start=$(date +%s)
  rootfs="$CACHE_DIR/rootfs-bookworm"
  if [[ ! -x "$rootfs/usr/bin/python3" ]]; then
    echo "building the base image with debootstrap (about a minute) ..."
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$rootfs" >/dev/null
  fi
  tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
  echo "base image $BASE_IMAGE ready in $(elapsed "$start")"
fi
echo "docker engine: $(docker version --format '{{.Server.Version}}'); base image: $BASE_IMAGE"
