#!/usr/bin/env bash
# make test's stages: each is `make test-stage-NAME`, timed; a failure names its stage.
#   scripts/test-stages.sh TIMES_FILE "FIRST..." "MAIN..." "BESIDE..."
# FIRST run in order; then MAIN in order in the foreground while each BESIDE stage runs beside them, all
# at once (the pytest suite mostly waits on deployments, KEDA and pods, and one after another the beside
# stages outlasted it). Each beside stage's output goes to TIMES_FILE.beside-STAGE.log, shown once all
# are done. Ends with every stage's time and the wall time.
set -uo pipefail

times=$1 first=$2 main=$3 beside=$4
read -r main <<< "$main"  # no trailing blank: stage notes name the main stages "a, b"
: "${MAKE:=make}"
rm -f "$times" "$times".beside*.log "$times".log-* "$times.failures" "$times.failed" "$times.crashes"
started=$(date +%s)
# the suite writes a few lines per failed test there (tests/conftest.py), shown last
export HYPERFLEET_FAILURE_DIGEST="$times.failures"
# a stage that ran a command once more after the interpreter crashed in it says so there, named last
export HYPERFLEET_CRASH_LOG="$times.crashes"

# crashes: the interpreter crashes that a stage met and ran again past (tests/hyperopt_suite/once-more-on-crash.sh)
crashes() {
  if [[ -s $HYPERFLEET_CRASH_LOG ]]; then
    echo "== make test: interpreter crashes, each run once more (the crash's lines are in its stage's output):"
    cat "$HYPERFLEET_CRASH_LOG"
  fi
}

# run_stages NOTE STAGE...: each in order, its time (and NOTE) appended to $times; stops at the first that fails
run_stages() {
  local note=$1 stage start
  shift
  for stage in "$@"; do
    start=$(date +%s)
    echo "== make test: $stage"
    if ! $MAKE --no-print-directory "test-stage-$stage" 2>&1 | tee "$times.log-$stage"; then
      echo "make test: stage $stage failed" >&2
      echo "$stage" >> "$times.failed"
      return 1
    fi
    echo "$stage $(( $(date +%s) - start )) $note" >> "$times"
  done
}

# failure_lines STAGE: what a log cut to its beginning and its end must still show of a failed stage (its
# whole output is above, and in $times.log-STAGE): its failure lines, a crashed thread, its last lines
failure_lines() {
  local log="$times.log-$1"
  echo "== make test: stage $1 failed; its failure lines, then its log's last lines:"
  grep -E -m 8 "^(FAILED|ERROR) |Fatal Python error|Error [0-9]+$" "$log"
  grep -m 1 -A 6 "^Current thread" "$log"
  tail -n 6 "$log"
}

# shellcheck disable=SC2086  # the stage lists are words
if ! run_stages "" $first; then
  failure_lines "$(tail -n 1 "$times.failed")"
  exit 1
fi

beside_status=0 beside_pids=()
for stage in $beside; do
  run_stages "(beside ${main// /, })" "$stage" > "$times.beside-$stage.log" 2>&1 &
  beside_pids+=($!)
done
if [[ -n "${beside// /}" ]]; then
  echo "== make test: beside the suite, at once: $beside (output in $times.beside-STAGE.log, shown when done)"
fi
# shellcheck disable=SC2086
run_stages "" $main
main_status=$?
for pid in "${beside_pids[@]}"; do
  wait "$pid" || beside_status=1
done
for stage in $beside; do
  echo "== make test: beside the suite: $stage"
  cat "$times.beside-$stage.log"
done
if (( main_status != 0 || beside_status != 0 )); then
  # last, what a log cut to its beginning and its end must still show: which stage failed, and why
  while read -r stage; do
    failure_lines "$stage"
  done < "$times.failed"
  if [[ -s $HYPERFLEET_FAILURE_DIGEST ]]; then
    echo "== make test: the suite's failures, in short"
    cat "$HYPERFLEET_FAILURE_DIGEST"
  fi
  crashes
  echo "== make test: failed stages: $(tr '\n' ' ' < "$times.failed" 2>/dev/null)"
  exit 1
fi

echo "== make test: passed; stage times (s):"
awk '{ note = $3; for (i = 4; i <= NF; i++) note = note " " $i; printf "  %-16s %5d %s\n", $1, $2, note }' "$times"
printf '  %-16s %5d\n' "wall" $(( $(date +%s) - started ))
crashes
