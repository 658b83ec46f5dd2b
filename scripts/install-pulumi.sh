#!/usr/bin/env bash
# Kept for existing callers: the pulumi CLI alone. scripts/install-toolchain.sh installs it with the
# Python language host and the provider plugins; see there.
exec "$(dirname "${BASH_SOURCE[0]}")/install-toolchain.sh" cli "$@"
