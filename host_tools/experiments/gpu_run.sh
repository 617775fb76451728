#!/usr/bin/env bash
# One GPU session for the training issue: model A (multibatch, balanced) in a fixed wall-time budget, then the
# pairs-vs-multibatch comparison at equal images seen.  Needs the pack (ignored file, carry it):
#   wearface data pack runs/pack55.npz --data ../shared/data --max-mb 55
# Usage: bash host_tools/experiments/gpu_run.sh OUT_DIR [TRAIN_MINUTES] [PVM_IMAGES]
# Writes OUT_DIR/a_gpu/{history.jsonl,best.pt,last.pt,log.txt} and OUT_DIR/pvm/{pairs,multibatch}/history.jsonl,
# OUT_DIR/pvm/pairs_vs_multibatch.png.  Evaluate afterwards on the CPU machine:
#   wearface eval OUT_DIR/a_gpu/best.pt --lfw ../shared/data/lfw --roc docs/img/roc_model_a.png
set -euo pipefail
OUT=${1:?output folder}
MINUTES=${2:-6}
PVM_IMAGES=${3:-150000}
PACK=${PACK:-runs/pack55.npz}
WORKERS=${WORKERS:-$(( $(nproc) - 2 ))}
python -c "import wearface.host_tools.train" 2>/dev/null || pip install -q --no-deps -e . >/dev/null
mkdir -p "$OUT/a_gpu" "$OUT/pvm"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" || true
python -m wearface.host_tools.cli train --net A --data "$PACK" --out "$OUT/a_gpu" --device cuda --epochs 1000 \
    --time-budget-min "$MINUTES" --batch 256 --k-per-identity 4 --workers "$WORKERS" --channels-last \
    --distance-scale 4 --theta 5 \
    --ckpt-every 1000 --no-progress 2>&1 | grep -v Warning | tee "$OUT/a_gpu/log.txt"
python -m wearface.host_tools.experiments.pairs_vs_multibatch --data "$PACK" --out "$OUT/pvm" --images "$PVM_IMAGES" \
    --device cuda --workers "$WORKERS" --eval-every 100 --distance-scale 4 --theta 5 2>&1 | grep -v Warning | tee "$OUT/pvm/log.txt"
rm -f "$OUT"/pvm/*/last.pt "$OUT"/pvm/*/best.pt "$OUT/a_gpu/last.pt"   # keep what comes back small
