#!/usr/bin/env bash
# The long model-A run that spans sessions: a 5,000,000-image budget (the cosine schedule spans all of it),
# resumed exactly from models/runs/a_5m/last.pt by every session (commit last.pt, best.pt and history.jsonl
# before stopping).  Held-out CelebA identities choose best.pt; LFW View 1 dev accuracy is logged, never used.
# One torch thread: with the 2 cores shared (tests, other work), two OpenMP threads spin-wait on each other
# (measured this session: 28 images/s with two threads, 41-71 with one, both while other work shared the cores).
# From 2,150,000 images on (session 6) it also keeps an exponential moving average of the weights (--ema-decay
# 0.998 per step, ~500 steps): ema.pt at every row, the checkpoint a bundle is built from.
# Usage: bash scripts/long_run_a.sh [DATA]   (DATA defaults to ../shared/data); runs in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
RESUME=()
[ -f models/runs/a_5m/last.pt ] && RESUME=(--resume)
exec wearface train --net A --data "$DATA" --out models/runs/a_5m --images 5000000 --batch 128 \
  --weighting balanced --distance-scale 4 --theta 5 \
  --teacher "$DATA/teacher/teacher_dlib_v1.npz" --all-faces --extra-per-batch 10 \
  --pipeline memory --damage 1.0 --select-on heldout --ema-decay 0.998 --threads 1 --ckpt-every 100 --no-progress \
  "${RESUME[@]}"
