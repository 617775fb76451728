#!/usr/bin/env bash
# A long run that spans sessions: a 5,000,000-image budget (the cosine schedule spans all of it), resumed exactly
# from models/runs/<net>_5m/last.pt by every session (commit last.pt, best.pt and history.jsonl before stopping).
# Held-out CelebA identities choose best.pt; LFW View 1 dev accuracy is logged, never used.
# One torch thread: with the 2 cores shared (tests, other work), two OpenMP threads spin-wait on each other
# (measured in session 5: 28 images/s with two threads, 41-71 with one, both while other work shared the cores).
# It keeps an exponential moving average of the weights (--ema-decay 0.998 per step, ~500 steps): ema.pt at every
# row, the checkpoint a bundle is built from.  Model A's run (a_5m) started its average at 2,150,000 images
# (session 6); model B's (b_5m, from session 10) from its first step.  Both follow the same schedule, so their
# histories compare image for image.
# Usage: [THREADS=2] [EVAL_EVERY=500] bash scripts/long_run.sh NET [DATA]   (NET: A or B; DATA defaults to
# ../shared/data; THREADS: torch threads, 1 unless the run has the machine to itself; EVAL_EVERY: a history row every
# N steps instead of every epoch of 250: on two threads a row's evaluations take half its time); runs in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
NET=${1:?net: A or B}
DATA=${2:-../shared/data}
OUT=models/runs/$(echo "$NET" | tr 'AB' 'ab')_5m
RESUME=()
[ -f "$OUT/last.pt" ] && RESUME=(--resume)
exec wearface train --net "$NET" --data "$DATA" --out "$OUT" --images 5000000 --batch 128 \
  --weighting balanced --distance-scale 4 --theta 5 \
  --teacher "$DATA/teacher/teacher_dlib_v1.npz" --all-faces --extra-per-batch 10 \
  --pipeline memory --damage 1.0 --select-on heldout --ema-decay 0.998 --threads "${THREADS:-1}" --ckpt-every 100 --no-progress \
  ${EVAL_EVERY:+--eval-every-steps "$EVAL_EVERY"} "${RESUME[@]}"
