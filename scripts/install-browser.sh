#!/usr/bin/env bash
# The dashboard's browser test needs a real headless browser: Debian's chromium and chromium-driver
# (driven by Selenium from PyPI through the system chromedriver). Installs them when missing (root and
# apt-get); without root it only says what is missing.
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  echo "browser: $(chromium --version 2>/dev/null | head -n 1)"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "error: chromium and chromium-driver are missing and this is not root to install them" >&2; exit 1; }
echo "installing chromium and chromium-driver ..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
echo "browser: $(chromium --version 2>/dev/null | head -n 1)"
