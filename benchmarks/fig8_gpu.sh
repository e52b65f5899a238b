#!/usr/bin/env bash
# Paper 1 Fig. 8 at paper size on one GPU: the eight runs of `benchmarks/fig8.py --size paper`
# (SPAIR and SPLIT-SPAIR on Easy, seed 0, and on Hard, seeds 0-2) side by side on one device,
# each with MINUTES of wall time and an equal share of the CPU cores, then the table and figure.
#   benchmarks/fig8_gpu.sh MINUTES [OUT]       # e.g. benchmarks/fig8_gpu.sh 10
# Training scenes are drawn on the GPU every step (fig8.py's on_the_fly), so the stored training
# split is cut to 32 scenes: it is never read, and building the paper's 100,000 would take minutes.
set -u
MIN=${1:-10}
OUT=${2:-runs/fig8}
CORES=$(nproc)
THREADS=$(( CORES / 8 > 0 ? CORES / 8 : 1 ))
# the wall budget covers training and validation; leave 90 s beyond it for start-up and the last validation
LIMIT=$(python -c "print(int($MIN * 60 + 90))")
mkdir -p "$OUT"_paper
# CUDA MPS lets the eight processes' kernels run on the GPU at once instead of taking turns (on an H200 with it,
# ten quick-start runs, ~260 steps/s together; without it, the eight paper-size runs of the first GPU run
# before: ~37 steps/s together); where it cannot start, the runs take turns
if nvidia-cuda-mps-control -d 2>/dev/null; then echo "CUDA MPS started"; fi
for run in "spair_easy --seeds-easy 0" "split_spair_easy --seeds-easy 0" \
           "spair_hard --seeds-hard 0" "spair_hard --seeds-hard 1" "spair_hard --seeds-hard 2" \
           "split_spair_hard --seeds-hard 0" "split_spair_hard --seeds-hard 1" "split_spair_hard --seeds-hard 2"; do
  name=$(echo "$run" | awk '{print $1 "_seed" $3}')
  # shellcheck disable=SC2086
  timeout "$LIMIT" python benchmarks/fig8.py --size paper --minutes "$MIN" --out "$OUT" --threads "$THREADS" \
    --set=--data.init_args.num_train=32 --only $run > "$OUT"_paper/"$name".log 2>&1 &
done
wait
python benchmarks/fig8.py --size paper --out "$OUT" --report
