#!/usr/bin/env bash
# Set up (if needed), then run the offline demo experiment: python run.py --exp demo [--set k=v ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python run.py --exp demo "$@"
