#!/usr/bin/env bash
# Headless Chromium for the end-to-end browser tests (tests/evidence/test_browser.py): installs
# Debian's `chromium` and `chromium-driver` with apt-get when either is missing. Idempotent: does
# nothing when both are installed. Needs root (or sudo) only when it has something to install.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "install_browser: $(chromium --version 2>/dev/null) and chromedriver already installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install_browser: chromium or chromedriver is missing and this user cannot install packages" \
         "(run as root: apt-get install chromium chromium-driver)" >&2
    exit 1
fi

"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends chromium chromium-driver
echo "install_browser: installed $(chromium --version 2>/dev/null)"
