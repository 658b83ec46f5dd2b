#!/usr/bin/env bash
# Runs a command (pulumi) with TMPDIR set to a private directory (mode 700, under the caller's
# TMPDIR or /tmp) and removes that directory when the command ends, whatever its exit.
# Why: the kubernetes provider writes a copy of its kubeconfig, client key included, to a temp file
# (kubeconfig<digits>) each time it is configured with an explicit kubeconfig, and never removes it;
# Go's os.TempDir() follows TMPDIR, so the copies land here and go with the directory
# (docs/security.md). The Makefile's PULUMI_ENV and tests/pulumi_engine.py run pulumi through it.
set -euo pipefail

[[ $# -gt 0 ]] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
private="$(mktemp -d "${TMPDIR:-/tmp}/hyperfleet-pulumi.XXXXXXXX")"
trap 'rm -rf -- "$private"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
status=0
TMPDIR="$private" "$@" || status=$?
exit "$status"
