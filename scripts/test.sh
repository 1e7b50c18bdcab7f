#!/usr/bin/env bash
# Set up (if needed), lint (ruff), then run the test suite: unit tests on tiny random models and integration
# tests on the real me5-small and real data from ../shared/data. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}
.venv/bin/ruff check --quiet .  # lint first: seconds, and a red lint stops a 15-minute run early
exec .venv/bin/python -m pytest "$@"
