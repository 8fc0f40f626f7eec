#!/usr/bin/env bash
# Installs citesearch, builds the index from seeds/ (incrementally: unchanged documents are not re-embedded)
# and starts the service on http://127.0.0.1:8000 (override with CITESEARCH_HOST / CITESEARCH_PORT).
# The search page is at /, the API documentation at /docs. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/citesearch index seeds/
exec .venv/bin/citesearch serve
