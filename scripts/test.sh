#!/usr/bin/env bash
# Set up everything from nothing and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
export HF_HUB_OFFLINE=1
.venv/bin/python -m pytest -q "$@"
