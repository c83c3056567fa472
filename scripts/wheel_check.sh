#!/usr/bin/env bash
# The wheel as a user gets it: build it, install it into a fresh virtual environment
# outside the repository, and from a directory outside the repository list the built-in
# presets, train the demo preset for a few steps by name, and sample from the run.
#
# The fresh environment reuses the dependencies (torch, numpy, ...) of the project's
# environment through a .pth file instead of installing them again (seconds, not
# minutes); ganforge itself comes only from the wheel (checked).
#
#   scripts/wheel_check.sh                 # uses .venv/bin/python
#   VENV_PYTHON=/path/to/python scripts/wheel_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${VENV_PYTHON:-.venv/bin/python}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# No build isolation (no index needed for the build itself), so the build backend pyproject.toml
# names must be in the environment: a fresh venv's bundled setuptools can be too old for it.
"$PY" -m pip install -q --disable-pip-version-check "setuptools>=70.1" wheel
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$TMP/dist" . >/dev/null
rm -rf build  # setuptools' staging folder
WHEEL=$(ls "$TMP"/dist/ganforge-*.whl)
"$PY" -c "import sys, zipfile; sys.exit('ganforge/presets/dcgan-fashion-mnist.yaml' not in zipfile.ZipFile(sys.argv[1]).namelist())" "$WHEEL" \
    || { echo "wheel-check: the wheel holds no presets" >&2; exit 1; }

"$PY" -m venv "$TMP/venv"
DEPS=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
NEW=$("$TMP/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$DEPS" > "$NEW/_ganforge_deps.pth"  # appended after the venv's own site-packages: the wheel wins
"$TMP/venv/bin/python" -m pip install -q --no-deps --no-index "$WHEEL"

mkdir "$TMP/work"
cd "$TMP/work"
GF="$TMP/venv/bin/ganforge"
LOCATION=$("$TMP/venv/bin/python" -c "import ganforge; print(ganforge.__file__)")
case "$LOCATION" in
    "$TMP"/venv/*) ;;
    *) echo "wheel-check: ganforge imported from $LOCATION, not from the wheel" >&2; exit 1 ;;
esac
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
"$GF" presets >presets.txt
grep -q "^dcgan-fashion-mnist$" presets.txt
"$GF" train --config dcgan-fashion-mnist --run-dir run train.steps=20 train.log_every=10 train.sample_every=20 \
    train.ckpt_every=20 model.g_width=8 model.d_width=8 data.limit=512 >train.log 2>&1 \
    || { cat train.log >&2; exit 1; }
"$GF" sample run --n 16 --out grid.png >/dev/null
test -s grid.png && test -s run/execution.json
echo "wheel-check: ok ($(basename "$WHEEL"): presets, train by name and sample from $TMP/work)"
