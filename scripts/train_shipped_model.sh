#!/usr/bin/env bash
# Reproduces the shipped weights and every validation variant on CPU, one thread per run.
# Needs the real pairs at ../shared/data (see models/README.md). Seeds are fixed. BatchNorm
# statistics are frozen (--freeze-bn): with batch statistics the model's reflectance level
# drifted between checkpoints and its hold-out error swung widely.
#   physics          physics-simulated pre-training only (400 steps)
#   real             real pairs only, from scratch (300 steps)
#   finetune         physics -> real pairs, lr 3e-4, 25 % simulated patches (300 steps)
#   physics_long     physics -> 300 more simulated steps at lr 3e-4
#   finetune_gentle  physics -> real pairs, lr 1e-4, 75 % simulated patches (150 steps)
#   wiseft (shipped) average of physics and finetune_gentle weights
# Then: scripts/validate_holdout.py "$OUT"/{physics,real,finetune,physics_long,finetune_gentle,wiseft}.card.json
#       scripts/ship_model.py "$OUT"/wiseft.card.json "$OUT"/holdout_metrics.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-.scratch/fbn}
DATA=${DATA:-../shared/data}
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-20}
mkdir -p "$OUT"
common=(--data-root "$DATA" --patch 64 --batch 6 --seed 0 --threads 1 --pseudo-surfaces
        --checkpoint-every 50 --freeze-bn --resume)
train() { local name=$1; shift; $PY -m component.training.train "${common[@]}" \
    --output "$OUT/$name.safetensors" --checkpoint-dir "$OUT/ck_$name" "$@" 2> "$OUT/$name.log"; }

train physics --physics-steps 400 --lr 1e-3 &
train real --real-steps 300 --lr 1e-3 &
wait
init=(--init "$OUT/physics.safetensors")
train finetune "${init[@]}" --real-steps 300 --physics-mix 0.25 --lr 3e-4 &
train physics_long "${init[@]}" --physics-steps 300 --lr 3e-4 &
train finetune_gentle "${init[@]}" --real-steps 150 --physics-mix 0.75 --lr 1e-4 &
wait
$PY scripts/average_weights.py "$OUT/wiseft.safetensors" "$OUT/physics.safetensors" \
    "$OUT/finetune_gentle.safetensors"
