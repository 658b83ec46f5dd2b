#!/usr/bin/env bash
# The dashboard's browser test needs a real headless browser: Debian's chromium and chromium-driver
# (driven by Selenium from PyPI through the system chromedriver). Installs them when missing (root and
# apt-get); without root it only says what is missing.
set -euo pipefail
# shellcheck source=testbed/lib.sh
source "$(dirname "$0")/../lib.sh"

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  echo "browser: $(chromium --version 2>/dev/null | head -n 1)"
  exit 0
fi
apt_install chromium chromium-driver
echo "browser: $(chromium --version 2>/dev/null | head -n 1)"
