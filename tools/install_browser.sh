#!/usr/bin/env bash
# Install Debian's chromium for the dashboard's headless-browser test.
#
# Playwright's own browser download is not used: the test drives the distribution's
# /usr/bin/chromium instead, which apt keeps patched. Idempotent: returns at once when the
# browser is already there. Needs root (or sudo) the first time.
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install_browser: need root or sudo to apt-get install chromium" >&2; exit 1; }
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
"$CHROMIUM" --version
