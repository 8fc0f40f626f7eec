#!/usr/bin/env bash
# The quality gates CI runs before the tests (.ci/run): lint, formatting and types, over the whole tree.
# Rules and strictness are configured (and justified) in pyproject.toml: [tool.ruff], [tool.mypy].
# Usage: bash scripts/lint.sh        (uses .venv when it exists, else the python on PATH; PYTHON overrides)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
status=0
echo "== ruff check"
"$PYTHON" -m ruff check . || status=1
echo "== ruff format --check"
"$PYTHON" -m ruff format --check . || status=1
echo "== mypy"
"$PYTHON" -m mypy || status=1
exit $status
