#!/usr/bin/env bash
# Set up the project on a fresh machine: a virtual environment with the component installed.
#   scripts/setup.sh          the component (torch, smp, onnxruntime, rasterio...) in .venv
#   scripts/setup.sh --test   also the test tools, and delta-core in its own .venv-delta
# torch and torchvision come from PyPI as a matching pair (pinned in pyproject.toml); they run
# on CPU and use CUDA when a GPU is present. Idempotent: a second call only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".${extras}"

if [ -n "$extras" ]; then
  # delta-core (DeltaTwin's own manifest/workflow library) pins versions that clash with the
  # component's, so the tests drive it from a separate interpreter.
  [ -x .venv-delta/bin/python ] || "$python" -m venv .venv-delta
  .venv-delta/bin/python -m pip install --quiet --upgrade pip
  .venv-delta/bin/python -m pip install --quiet delta-core==1.2.7
fi
echo "set-up done: .venv${extras:+ and .venv-delta}"
