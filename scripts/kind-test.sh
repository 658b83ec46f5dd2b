#!/usr/bin/env bash
# The end-to-end test on a real kind cluster, for machines with kind and internet access: makes the
# cluster, builds the runtime image and loads it (with mongo) into the cluster, then runs the
# Kubernetes scenario of tests/e2e/kube_scenario.py on stack kind (pulumi up, pods Ready, a deleted
# worker pod hands its trial back, a killed worker's trial is requeued by the monitor, the experiment
# completes, no-op preview, pulumi destroy); deletes the cluster it made, also when a step fails
# (KEEP_CLUSTER=1 keeps it). `make test` runs the same scenario on the tests' own cluster.
# Run through `make kind-test`, which puts Pulumi on PATH and sets its state directory and passphrase.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=images/versions.env
source "$REPO/images/versions.env"
CLUSTER="${KIND_CLUSTER:-hyperfleet}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/runtime/pyproject.toml")"
RUNTIME_IMAGE="hyperfleet/runtime:$VERSION"   # Pulumi.kind.yaml: images.runtime (a test holds them equal)
MONGO_IMAGE=mongo:7.0                    # the stack's default mongo.image
BASE_IMAGE="${KIND_BASE_IMAGE:-$PYTHON_BASE_IMAGE}"
PYTHON="${PYTHON:-python3}"

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'kind-test: %s\n' "$*" >&2; exit 1; }
for tool in kind kubectl docker pulumi; do
  command -v "$tool" >/dev/null || die "$tool is needed (https://kind.sigs.k8s.io/docs/user/quick-start/ for kind)"
done

created_cluster=0
cleanup() {
  local status=$?
  if [[ $created_cluster == 1 && "${KEEP_CLUSTER:-0}" != 1 ]]; then
    log "deleting the cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" || status=1
  fi
  exit $status
}
trap cleanup EXIT

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "using the existing kind cluster $CLUSTER"
else
  log "creating the kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --wait 180s
  created_cluster=1
fi

log "building $RUNTIME_IMAGE and loading it with $MONGO_IMAGE into the cluster"
"$REPO/scripts/build-runtime-image.sh" "$RUNTIME_IMAGE" "$BASE_IMAGE"
docker image inspect "$MONGO_IMAGE" >/dev/null 2>&1 || docker pull "$MONGO_IMAGE"
kind load docker-image --name "$CLUSTER" "$RUNTIME_IMAGE" "$MONGO_IMAGE"

log "the Kubernetes scenario on kind-$CLUSTER"
cd "$REPO"
PYTHONPATH="$REPO" "$PYTHON" -m tests.e2e.kube_scenario --stack kind --context "kind-$CLUSTER" \
  --node-exec "docker exec $CLUSTER-control-plane"
