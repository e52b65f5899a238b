#!/usr/bin/env bash
# The Hard CLI quick-starts (configs/quickstart_spair.yaml, configs/quickstart_split_spair.yaml), unchanged but for
# the seed, at several seeds side by side on one machine (CPU, or one GPU shared by all runs), one thread each:
#   benchmarks/cli_seeds.sh OUT SEED [SEED ...]      # e.g. benchmarks/cli_seeds.sh runs/cli_seeds 3 4
# Each run is `lightning fit --config ... --seed_everything=SEED --trainer.logger=false` in OUT/<model>_s<SEED>
# (history.jsonl, metrics.json, checkpoints) with its log beside it; LIMIT_S (environment) stops every run after
# that many seconds (default: none); PYTHON names the interpreter (default: python). Read the results with `python benchmarks/cli_seeds.py OUT`.
set -u
OUT=$1; shift
LIMIT_S=${LIMIT_S:-0}
PY=${PYTHON:-python}
mkdir -p "$OUT"
# build the stored scenes once, before the runs share them (the data module's lock would serialise them anyway)
OMP_NUM_THREADS=4 "$PY" -m splitlab.cli fit --config configs/quickstart_spair.yaml --trainer.logger=false \
  --trainer.max_steps=0 --trainer.default_root_dir="$OUT"/_build > "$OUT"/_build.log 2>&1
for s in "$@"; do
  for m in spair split_spair; do
    OMP_NUM_THREADS=1 timeout "$LIMIT_S" "$PY" -m splitlab.cli fit --config configs/quickstart_$m.yaml --seed_everything="$s" \
      --trainer.logger=false --trainer.enable_progress_bar=false --trainer.default_root_dir="$OUT" --run="${m}_s$s" \
      > "$OUT/${m}_s$s.log" 2>&1 &
  done
done
wait
