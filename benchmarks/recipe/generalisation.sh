#!/usr/bin/env bash
# Is the demo recipe tuned to the demo's data? `mfclr run` at the demo preset on other generator
# seeds and class sets (docs/recipe.md, "Other generator seeds and class sets"), the plain
# NT-Xent variant left out to halve the time; one results.md per dataset in runs/general/<name>/.
#   bash benchmarks/recipe/generalisation.sh [name ...]    # ~10-20 min per dataset on 2 cores
# EXTRA_SET adds overrides to every run, e.g. the measured twice-the-audio-steps variant:
#   EXTRA_SET="per_format.audio.train.steps=700" bash benchmarks/recipe/generalisation.sh
# OUT_SUFFIX names the runs apart (runs/general/<name><suffix>), e.g. the old epoch budget:
#   EXTRA_SET="train.epochs=14" OUT_SUFFIX=-epochs bash benchmarks/recipe/generalisation.sh seed4-9small
set -euo pipefail
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736  # as the Makefile
mfclr=${MFCLR:-.venv/bin/mfclr}
declare -A DATA=(
  # the demo's first eight genres, another seed, and all ten
  [seed1-10classes]="data.probe.embedded.seed=1 data.probe.embedded.n_classes=10 data.probe.embedded.clips_per_class=200"
  # six genres, two of them unseen by the demo (classical, hiphop), a third seed
  [seed2-6genres]="data.probe.embedded.seed=2 data.probe.embedded.clips_per_class=200 data.probe.embedded.genres=[classical,hiphop,folk,jazz,metal,reggae]"
  # five close pairs and neighbours (electronic and guitar families), a fourth seed
  [seed3-5close]="data.probe.embedded.seed=3 data.probe.embedded.clips_per_class=200 data.probe.embedded.genres=[techno,dnb,rock,metal,ambient]"
  # the held-out real music's shape: nine classes, 225 / 90 / 135 clips of 10 s, a fifth seed
  [seed4-9small]="data.probe.embedded.seed=4 data.probe.embedded.n_classes=9 data.probe.embedded.clips_per_class=50 data.probe.embedded.seconds=10.0"
  # the same shape on two more generator seeds: with 135 test tracks one dataset's interval is
  # about +-8 points, so small-data claims rest on the mean over the three
  [seed5-9small]="data.probe.embedded.seed=5 data.probe.embedded.n_classes=9 data.probe.embedded.clips_per_class=50 data.probe.embedded.seconds=10.0"
  [seed6-9small]="data.probe.embedded.seed=6 data.probe.embedded.n_classes=9 data.probe.embedded.clips_per_class=50 data.probe.embedded.seconds=10.0"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(seed2-6genres seed3-5close seed1-10classes seed4-9small)
for name in "${names[@]}"; do
  sets=(--set 'compare={}')
  for s in ${DATA[$name]} ${EXTRA_SET:-}; do sets+=(--set "$s"); done
  out="runs/general/$name${OUT_SUFFIX:-}"
  "$mfclr" run --preset demo --out "$out" --quiet "${sets[@]}"
  echo "== $name: $out/results.md"
done
