#!/usr/bin/env bash
# One line per missing prerequisite of a user target, before anything is created; exit 1 if any.
#   scripts/check-prerequisites.sh docker pulumi kind kubectl
# pulumi counts as there when it is on PATH, in the cache of `make toolchain`, or when Pulumi's
# installer answers (then `make` installs it). Nothing here needs Go, root, apt or debootstrap.
set -uo pipefail

CACHE_DIR="${HYPERFLEET_CACHE:-$HOME/.cache/hyperfleet}"
missing=0
miss() { echo "missing: $*" >&2; missing=1; }

for need in "$@"; do
  case "$need" in
    docker)
      if ! command -v docker >/dev/null; then
        miss "docker: install Docker (Docker Desktop, or your distribution's docker package)"
      elif ! out=$(docker info --format '{{.ServerVersion}}' 2>&1); then
        miss "a Docker engine that answers (docker info: $(tail -n 1 <<<"$out")): start Docker Desktop or dockerd, or point DOCKER_HOST at an engine"
      fi ;;
    pulumi)
      if ! PATH="$CACHE_DIR/toolchain/bin:$PATH" command -v pulumi >/dev/null &&
        ! curl -fsS -m 5 -o /dev/null https://get.pulumi.com 2>/dev/null; then
        miss "pulumi: not on PATH, and Pulumi's installer is unreachable: install Pulumi (https://www.pulumi.com/docs/install/), or build it from the Go module proxy with make toolchain (Go >= 1.26)"
      fi ;;
    kind)
      command -v kind >/dev/null || miss "kind: install it (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)" ;;
    kubectl)
      command -v kubectl >/dev/null || miss "kubectl: install it (https://kubernetes.io/docs/tasks/tools/)" ;;
    *) echo "check-prerequisites: unknown prerequisite $need" >&2; exit 2 ;;
  esac
done
exit $missing
