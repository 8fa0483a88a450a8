#!/usr/bin/env bash
# Reproduces the shipped weights and the three validation variants on CPU, one thread per run
# (physics-only and real-only run side by side, then the fine-tune). Needs the real pairs at
# ../shared/data (see models/README.md). Seeds are fixed. BatchNorm statistics are frozen
# (--freeze-bn): with batch statistics the model's reflectance level drifted between checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-.scratch/fbn}
DATA=${DATA:-../shared/data}
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-20}
mkdir -p "$OUT"
common=(--data-root "$DATA" --patch 64 --batch 6 --seed 0 --threads 1 --pseudo-surfaces
        --checkpoint-every 50 --freeze-bn --resume)

# 1. physics-only: simulated TOA over the training L2A surfaces (and training L1C as pseudo-surfaces)
$PY -m component.train "${common[@]}" --output "$OUT/physics.safetensors" \
    --physics-steps 400 --lr 1e-3 --checkpoint-dir "$OUT/ck" 2> "$OUT/physics.log" &
# 2. real-only: the two training real pairs, from scratch
$PY -m component.train "${common[@]}" --output "$OUT/real.safetensors" \
    --real-steps 300 --lr 1e-3 --checkpoint-dir "$OUT/ck_real" 2> "$OUT/real.log" &
wait
# 3. physics + fine-tune: start from 1., real pairs with a quarter of simulated patches
$PY -m component.train "${common[@]}" --output "$OUT/finetune.safetensors" \
    --init "$OUT/physics.safetensors" --real-steps 300 --physics-mix 0.25 --lr 3e-4 \
    --checkpoint-dir "$OUT/ck_finetune" 2> "$OUT/finetune.log"
