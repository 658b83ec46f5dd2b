#!/usr/bin/env bash
# tests/hyperopt_suite/once-more-on-crash.sh COMMAND...: run hyperopt's own suite (COMMAND); if the
# interpreter crashed (killed by SIGSEGV, SIGBUS or SIGABRT, not a failed test), say so and run it once
# more, and the second run decides. A failed test (any other status) fails at once.
#
# Why: about once in a hundred runs under load, hyperopt's TestExperimentWithThreads.test_seeds_AAB
# (its worker and fmin threads in one process) dies of a corrupted heap in CPython 3.11: a freed
# 64-byte block written after it was freed, found by the next allocation of that size (core dump,
# 2026-12-06; docs/testing.md). No code of ours in that process is anything but Python; the culprit is
# not found yet. The crash is printed above the second run, and named again at the end of make test
# (HYPERFLEET_CRASH_LOG, set by scripts/test-stages.sh).
set -uo pipefail

"$@"
status=$?
case $status in
  134 | 135 | 139) ;;  # 128 + SIGABRT, SIGBUS, SIGSEGV
  *) exit "$status" ;;
esac
echo "hyperopt's suite: the interpreter crashed (status $status; its lines are above); running the suite once more" >&2
if [[ -n "${HYPERFLEET_CRASH_LOG:-}" ]]; then
  echo "$* (status $status), run once more" >> "$HYPERFLEET_CRASH_LOG"
fi
"$@"
