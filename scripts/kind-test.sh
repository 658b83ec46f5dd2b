#!/usr/bin/env bash
# The end-to-end test on a real kind cluster, for machines with kind and internet access:
#   create the cluster → build the runtime image → kind load it (and mongo) → pulumi up -s kind →
#   delete a worker pod mid-trial → its trial is recovered → the experiment completes →
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

# the pod of a worker that holds a RUNNING trial, as the worker recorded it
victim=$("${KUBECTL[@]}" exec -i "deploy/$RELEASE-monitor" -- python3 - <<'PY'
import os
from hyperfleet.store import JOB_STATE_RUNNING, JobStore

store = JobStore.connect(os.environ["MONGO_URL"], timeout_seconds=10)
print(store.jobs.find_one({"state": JOB_STATE_RUNNING, "hyperfleet.worker.pod": {"$ne": None}})["hyperfleet"]["worker"]["pod"])
PY
)
log "deleting worker pod $victim mid-trial"
"${KUBECTL[@]}" delete pod "$victim" --grace-period=0 --force
# Recovered either by the worker (the kubelet's SIGTERM: it hands its trial back at once) or, when it
# died before it could, by the monitor (its pod is gone). The trial's history says which.
recovery() {
  "${KUBECTL[@]}" exec -i "deploy/$RELEASE-monitor" -- python3 - "$victim" <<'PY'
import os, sys
from hyperfleet.store import JobStore

pod = sys.argv[1]
store = JobStore.connect(os.environ["MONGO_URL"], timeout_seconds=10)
for doc in store.jobs.find({"hyperfleet.history.owner": {"$regex": f"^{pod}:"}}):
    for entry in doc["hyperfleet"]["history"]:
        if (entry.get("owner") or "").startswith(pod + ":") and entry["event"] in ("requeued", "handed back"):
            print(f"trial {doc['tid']}: {entry['event']}: {entry['reason']}")
            sys.exit(0)
sys.exit(1)
PY
}
wait_until 60 "the trial of $victim to be recovered" recovery
recovery
log "waiting for the experiment to complete ($MAX_EVALS trials)"
"${KUBECTL[@]}" wait --for=condition=complete job -l "hyperfleet.io/exp-key=$EXP" --timeout="${TIMEOUT_SECONDS}s"
final=$(status_json)
echo "$final"
done_trials=$(field "done" <<<"$final")
[[ "$done_trials" -ge "$MAX_EVALS" ]] || die "only $done_trials of $MAX_EVALS trials are done"
echo "kind-test passed: $done_trials trials done, the trial of the deleted pod $victim recovered, in $((SECONDS - started)) s"
