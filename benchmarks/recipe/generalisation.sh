#!/usr/bin/env bash
# Is the demo recipe tuned to the demo's data? `mfclr run` at the demo preset on other generator
# seeds and class sets (docs/recipe.md, "Other generator seeds and class sets"), the plain
# NT-Xent variant left out to halve the time; one results.md per dataset in runs/general/<name>/.
#   bash benchmarks/recipe/generalisation.sh [name ...]    # ~10-20 min per dataset on 2 cores
# EXTRA_SET adds overrides to every run, e.g. the measured twice-the-audio-steps variant:
#   EXTRA_SET="per_format.audio.train.epochs=28" bash benchmarks/recipe/generalisation.sh
set -euo pipefail
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736  # as the Makefile
mfclr=${MFCLR:-.venv/bin/mfclr}
declare -A DATA=(
  # the demo's first eight genres, another seed, and all ten
  [seed1-10classes]="data.probe.embedded.seed=1 data.probe.embedded.n_classes=10"
  # six genres, two of them unseen by the demo (classical, hiphop), a third seed
  [seed2-6genres]="data.probe.embedded.seed=2 data.probe.embedded.genres=[classical,hiphop,folk,jazz,metal,reggae]"
  # five close pairs and neighbours (electronic and guitar families), a fourth seed
  [seed3-5close]="data.probe.embedded.seed=3 data.probe.embedded.genres=[techno,dnb,rock,metal,ambient]"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(seed2-6genres seed3-5close seed1-10classes)
for name in "${names[@]}"; do
  sets=(--set 'compare={}')
  for s in ${DATA[$name]} ${EXTRA_SET:-}; do sets+=(--set "$s"); done
  "$mfclr" run --preset demo --out "runs/general/$name" --quiet "${sets[@]}"
  echo "== $name: runs/general/$name/results.md"
done
