#!/usr/bin/env bash
# Set up a fresh machine: a venv in .venv with the pinned dependencies (torch's CPU wheel first:
# an unpinned resolution would pull a multi-GB CUDA build). Re-running is cheap: it reinstalls
# only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
  echo "Installing dependencies into .venv (about 2 minutes on a fresh machine)..."
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -e ".[test]"
  echo "$stamp" > .venv/.installed
fi
