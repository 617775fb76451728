#!/usr/bin/env bash
# One call on a lent GPU machine: models A and B side by side, everything on the GPU (uint8 crops, camera
# damage, teacher targets: the memory pipeline), each fitted into MINUTES of wall time (the cosine schedule
# spans it), best.pt chosen on the held-out CelebA identities (clean + damaged), LFW never used.
#
#   python3 scripts/gpu_prepare.py --data ../shared/data          # here, once: .gpu/pack.npz + .gpu/teacher16.npz
#   device run, carry [".gpu"], timeout_s 600:
#     bash scripts/gpu_train.sh .gpu/pack.npz .gpu/teacher16.npz 8 cuda "$OUT"
#
# Needs no install: the three code folders are linked into a temporary `wearface` namespace package.
# Writes to OUT (the device tool returns at most 8 files): a_best.pt, a_history.jsonl, b_best.pt,
# b_history.jsonl, logs.txt.  The runs' own folders (last.pt with optimizer state) stay in /tmp.
set -u
PACK=${1:?pack .npz}; TEACHER=${2:?teacher cache}; MIN=${3:-8}; DEVICE=${4:-cuda}; DEST=${5:-runs/gpu}
BATCH=${BATCH:-512}; LR=${LR:-0.003}
REPO=$(cd "$(dirname "$0")/.." && pwd)
NS=$(mktemp -d); mkdir -p "$NS/wearface"
for p in kernels firmware host_tools; do ln -s "$REPO/$p" "$NS/wearface/$p"; done
export PYTHONPATH="$NS${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
RUNS=$(mktemp -d); mkdir -p "$DEST"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
LIMIT_S=$(python3 -c "print(int(float('$MIN')*60 + 90))")
common=(--data "$PACK" --device "$DEVICE" --teacher "$TEACHER" --pipeline memory --damage 1.0 --select-on heldout
        --batch "$BATCH" --lr "$LR" --warmup-steps 200 --weighting balanced --distance-scale 4 --theta 5
        --time-budget-min "$MIN" --eval-every-steps "${EVAL_EVERY:-500}" --workers 0 --no-progress)
run() { name=$1; shift; timeout "$LIMIT_S" python3 -m wearface.host_tools train --out "$RUNS/$name" "${common[@]}" "$@" \
          > "$RUNS/$name.log" 2>&1; echo "$name exit $?" >> "$RUNS/status.txt"; }
run a --net A &
run b --net B &
wait
for n in a b; do
  cp "$RUNS/$n/best.pt" "$DEST/${n}_best.pt" 2>/dev/null
  cp "$RUNS/$n/history.jsonl" "$DEST/${n}_history.jsonl" 2>/dev/null
done
cat "$RUNS/status.txt" "$RUNS/a.log" "$RUNS/b.log" > "$DEST/logs.txt"
cat "$RUNS/status.txt"; tail -n 3 "$RUNS/a.log" "$RUNS/b.log"
