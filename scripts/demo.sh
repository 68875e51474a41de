#!/usr/bin/env bash
# Set up everything from nothing and open the sketch-pad app with the bundled model on http://127.0.0.1:7860
# Extra arguments go to app.py (e.g. --port 8080, --model user/pconv).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py "$@"
