#!/usr/bin/env bash
# The end-to-end test on a real kind cluster, for machines with kind and internet access:
#   create the cluster → build the runtime image → kind load it (and mongo) → pulumi up -s kind →
#   delete a worker pod mid-trial → the monitor recovers its trial → the experiment completes →
#   pulumi destroy → delete the cluster (also when a step fails; KEEP_CLUSTER=1 keeps it).
# Run through `make kind-test`, which puts the engine of `make toolchain` on PATH and sets its state
# directory and passphrase. It cannot run where no image can be pulled (kind's node image, mongo,
# python:3.12-slim); the Kubernetes plugin is fetched by the engine on first use.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CLUSTER="${KIND_CLUSTER:-hyperfleet}"
STACK=kind
NS=hyperfleet                      # Pulumi.kind.yaml: kubernetes.namespace
RELEASE="hyperfleet-$STACK"
EXP=kind-branin                    # Pulumi.kind.yaml: the experiment
MAX_EVALS=20
RUNTIME_IMAGE=hyperfleet/runtime:0.1.0
MONGO_IMAGE=mongo:7.0
TIMEOUT_SECONDS="${KIND_TEST_TIMEOUT_SECONDS:-900}"
BASE_IMAGE="${KIND_BASE_IMAGE:-python:3.12-slim}"
PULUMI=(pulumi)
KUBECTL=(kubectl --context "kind-$CLUSTER" -n "$NS")

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'kind-test: %s\n' "$*" >&2; exit 1; }
for tool in kind kubectl docker; do
  command -v "$tool" >/dev/null || die "$tool is needed (https://kind.sigs.k8s.io/docs/user/quick-start/ for kind)"
done

created_cluster=0 stack_up=0
cleanup() {
  local status=$?
  if [[ $status -ne 0 ]]; then
    log "FAILED (exit $status): state of the namespace"
    "${KUBECTL[@]}" get pods,jobs -o wide 2>/dev/null || true
    "${KUBECTL[@]}" logs "deploy/$RELEASE-monitor" --tail=50 2>/dev/null || true
  fi
  if [[ "${KEEP_CLUSTER:-0}" == 1 ]]; then
    log "KEEP_CLUSTER=1: leaving the stack and the cluster kind-$CLUSTER"
    return
  fi
  if [[ $stack_up == 1 ]]; then
    log "pulumi destroy"
    "${PULUMI[@]}" destroy --yes --stack "$STACK" --non-interactive || status=1
  fi
  if [[ $created_cluster == 1 ]]; then
    log "deleting the cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" || status=1
  fi
  exit $status
}
trap cleanup EXIT

status_json() {
  "${KUBECTL[@]}" exec "deploy/$RELEASE-monitor" -- sh -c "hyperfleet status $EXP --json --mongo \"\$MONGO_URL\"" 2>/dev/null
}
field() { python3 -c "import json,sys; d=json.load(sys.stdin); d=d[0] if isinstance(d,list) else d; print(d['$1'])"; }
wait_until() {  # wait_until SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    ((SECONDS < deadline)) || die "timed out after ${limit}s waiting for: $what"
    sleep 2
  done
}

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

log "pulumi up -s $STACK"
"${PULUMI[@]}" stack select --create "$STACK" --non-interactive
stack_up=1
started=$SECONDS
"${PULUMI[@]}" up --yes --stack "$STACK" --non-interactive
echo "pulumi up: $((SECONDS - started)) s"

log "waiting for a trial to run"
running() { [[ "$(status_json | field running)" -ge 1 ]]; }
wait_until 300 "a RUNNING trial" running
echo "first trial running $((SECONDS - started)) s after pulumi up started"

victim=$("${KUBECTL[@]}" get pods -l "app.kubernetes.io/instance=$RELEASE,app.kubernetes.io/component=worker" \
  -o jsonpath='{.items[0].metadata.name}')
log "deleting worker pod $victim at once (no grace: it cannot hand its trial back)"
"${KUBECTL[@]}" delete pod "$victim" --grace-period=0 --force
recovered() { "${KUBECTL[@]}" logs "deploy/$RELEASE-monitor" | grep -q "requeued: pod $NS/$victim is gone"; }
wait_until 60 "the monitor to requeue the trial of $victim" recovered
"${KUBECTL[@]}" logs "deploy/$RELEASE-monitor" | grep "requeued: pod $NS/$victim"

log "waiting for the experiment to complete ($MAX_EVALS trials)"
"${KUBECTL[@]}" wait --for=condition=complete job -l "hyperfleet.io/exp-key=$EXP" --timeout="${TIMEOUT_SECONDS}s"
final=$(status_json)
echo "$final"
done_trials=$(field "done" <<<"$final")
[[ "$done_trials" -ge "$MAX_EVALS" ]] || die "only $done_trials of $MAX_EVALS trials are done"
echo "kind-test passed: $done_trials trials done, a deleted worker pod's trial recovered, in $((SECONDS - started)) s"
