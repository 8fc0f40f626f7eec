#!/usr/bin/env bash
# Creates the separate virtualenv `citesearch bench peer` runs txtai in (default var/bench-venv; idempotent).
# txtai is a peer system to compare against, never a citesearch dependency: it lives only in this venv.
# Usage: bash scripts/bench-peer-setup.sh [VENV_DIR]     (or CITESEARCH_BENCH_VENV=DIR)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-${CITESEARCH_BENCH_VENV:-var/bench-venv}}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
# torch pinned like citesearch's own install: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 is the CPU build.
echo "torch==2.13.0" >"$CONSTRAINTS"
echo "== installing txtai (torch pinned to 2.13.0)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
# sentence-transformers too, so txtai encodes with the same pooling and normalisation as citesearch.
"$VENV/bin/python" -m pip install --quiet -c "$CONSTRAINTS" "txtai==9.14.0" "sentence-transformers"
"$VENV/bin/python" -c "import txtai, torch; print('== installed: txtai', txtai.__version__ if hasattr(txtai, '__version__') else '', 'torch', torch.__version__)"
