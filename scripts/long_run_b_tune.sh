#!/usr/bin/env bash
# Model B's fine-tune toward its teacher (models/runs/b_tune, from session 13), resumed every session.
# It starts from the 5,000,000-image average of the long model-B run (models/checkpoints/model_b_long_ema_5000k.pt)
# with a fresh 1,000,000-image cosine schedule (peak 5e-4), the same data, damage, teacher and distillation terms,
# and the identity hinge at a third of its weight: at weight 1 its zero-loss zone for other people's pairs (distance
# >= 1.5) is out of reach for most pairs, so it pushes every such pair apart for ever and holds the student away from
# the teacher (median cosine 0.89; docs/RESULTS.md "Session 13: the hinge against the teacher").  Images seen by the
# weights: 5,000,064 + this run's.  Commit last.pt, best.pt and history.jsonl before stopping.
# Usage: [THREADS=2] [EVAL_EVERY=500] bash scripts/long_run_b_tune.sh [DATA]   (DATA: ../shared/data); foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
OUT=models/runs/b_tune
# --init on every start keeps the config equal on resume (where the trainer skips it: last.pt holds the weights)
START=(--init models/checkpoints/model_b_long_ema_5000k.pt)
[ -f "$OUT/last.pt" ] && START+=(--resume)
exec wearface train --net B --data "$DATA" --out "$OUT" --images 1000000 --batch 128 \
  --weighting balanced --distance-scale 4 --theta 5 --hinge-weight 0.3 --lr 5e-4 --warmup-steps 100 \
  --teacher "$DATA/teacher/teacher_dlib_v1.npz" --all-faces --extra-per-batch 10 \
  --pipeline memory --damage 1.0 --select-on heldout --ema-decay 0.998 --threads "${THREADS:-1}" --ckpt-every 100 --no-progress \
  --eval-every-steps "${EVAL_EVERY:-500}" "${START[@]}"
