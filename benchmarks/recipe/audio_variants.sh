#!/usr/bin/env bash
# Audio-recipe variants of docs/recipe.md ("Audio: what else was tried"): each a learning curve
# of the demo preset's audio encoder with one change, seed 0 (then 1), points 0 / 175 / 350 steps.
# The baseline is the demo preset itself (3 seeds in runs/bench/sol350/audio/curve.json).
#   bash benchmarks/recipe/audio_variants.sh [seeds]      # ~10 CPU min per variant and seed
set -euo pipefail
# as the Makefile: keep SampleCNN activations mapped (README, Performance)
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736
seeds=${1:-0}
py=${PYTHON:-.venv/bin/python}
run() {  # name, overrides...
  local name=$1; shift
  local sets=()
  for s in "$@"; do sets+=(--set "$s"); done
  OMP_NUM_THREADS=1 "$py" benchmarks/learning_curve.py --preset demo --format audio \
    --steps 0,175,350 --seeds "$seeds" --threads 1 --out "runs/curve/audio-$name" "${sets[@]}" \
    | tail -1 > "runs/curve/audio-$name.json"
}
mkdir -p runs/curve
run lr3 train.lr=0.003
run tau01 train.temperature=0.1
run nopitch augment.audio.pitch.p=0.0
run wide 'model.samplecnn.channels=[64,64,64,128,128,128,128,128,256,512]'
