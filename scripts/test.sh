#!/usr/bin/env bash
# Installs everything (including headless Chromium for the page tests) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --with-browser
exec .venv/bin/python -m pytest "$@"
