#!/usr/bin/env bash
# Set up (if needed), then run the test suite: unit tests on tiny random models and integration
# tests on the real me5-small and real data from ../shared/data. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 DS_ACCELERATOR=${DS_ACCELERATOR:-cpu}
exec .venv/bin/python -m pytest "$@"
