#!/usr/bin/env bash
# The test command: install into .venv, then run the whole pytest suite (unit, golden against
# ../shared/fixtures, end-to-end tests on media the tests generate, browser tests in headless
# Chromium). Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` for the fast
# tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install_browser.sh  # Debian's chromium for the browser tests (tests/evidence)
exec .venv/bin/python -m pytest "$@"
