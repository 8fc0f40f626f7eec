#!/usr/bin/env bash
# Installs citesearch and everything it needs into ./.venv (idempotent; a second run is quick).
# Usage: bash scripts/install.sh [--with-browser]
#   --with-browser also installs Debian's chromium and chromium-driver for the page tests (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating virtualenv .venv"
  "$PYTHON" -m venv .venv
fi
echo "== installing Python packages"
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build; 2.13.0 is the CPU build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# ray (citesearch index --ray) and milvus (CITESEARCH_STORE=milvus): the optional extras, installed so that
# their tests run
.venv/bin/python -m pip install --quiet -e ".[test,ray,milvus]"
# The Milvus 2.3.5 Standalone server (the PyPI package "milvus", run by eval/milvus_server.py) for the server test of
# the Milvus store's dense path (tests/test_milvus.py); it predates BM25, which the tests check on Milvus Lite.
.venv/bin/python -m pip install --quiet "milvus==2.3.5"

if [ "${1:-}" = "--with-browser" ]; then
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "== chromium and chromedriver already installed"
  else
    echo "== installing chromium and chromium-driver (Debian packages)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
fi
# The default embedding backend (onnx-int8) exports the bundled model to ONNX once, offline, into
# ${CITESEARCH_ONNX_CACHE:-~/.cache/citesearch/onnx}; doing it here keeps the first index or server start quick.
echo "== preparing the embedding model (ONNX int8 export; skipped when already done)"
HF_HUB_OFFLINE=1 .venv/bin/python -c "from indexer.embedder import SentenceTransformerEmbedder as E; print('   ', E().name, 'ready')"
echo "== installed: $(.venv/bin/citesearch --help | head -1)"
