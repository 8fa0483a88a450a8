#!/usr/bin/env bash
# Set up the project on a fresh machine: a virtual environment with the component installed.
#   scripts/setup.sh          the component in .venv: a CPU run's dependencies (onnxruntime,
#                             rasterio, dask...), plus the `gpu` extra (PyTorch with CUDA, smp)
#                             where an NVIDIA driver is present
#   scripts/setup.sh --test   also the `test` and `train` extras (the tests drive the torch
#                             engine and the training), and delta-core in its own .venv-delta
# A CPU run never imports torch (ONNX Runtime runs the network), so a machine without an NVIDIA
# driver gets no torch: a 0.9 GB .venv instead of 6.4 GB. `pip install -e '.[gpu]'` adds it.
# Idempotent: a second call only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
test=""
[ "${1:-}" = "--test" ] && test=yes

# An NVIDIA driver: what component.model.engines.gpu_may_be_present looks for, or nvidia-smi.
nvidia_driver() {
  [ -e /proc/driver/nvidia ] || [ -e /dev/nvidiactl ] \
    || { command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; }
}

if [ -n "$test" ]; then
  extras="test,train"  # train includes gpu
elif nvidia_driver; then
  extras="gpu"
else
  extras=""
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"

if [ -n "$test" ]; then
  # delta-core (DeltaTwin's own manifest/workflow library) pins versions that clash with the
  # component's, so the tests drive it from a separate interpreter.
  [ -x .venv-delta/bin/python ] || "$python" -m venv .venv-delta
  .venv-delta/bin/python -m pip install --quiet --upgrade pip
  .venv-delta/bin/python -m pip install --quiet delta-core==1.2.7
fi
echo "set-up done: .venv${extras:+ with [$extras]}${test:+ and .venv-delta}"
