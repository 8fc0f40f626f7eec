#!/usr/bin/env bash
# Installs everything (including headless Chromium for the page tests) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --with-browser
# The page tests skip themselves when Chromium is missing on a developer machine; here that is a failure.
export CITESEARCH_REQUIRE_BROWSER=1
exec .venv/bin/python -m pytest "$@"
