#!/usr/bin/env bash
# Trains the embedding checkpoints on a lent GPU machine in ONE call, several runs side by side.
#
#   bash scripts/gpu_train.sh PACK.npz MINUTES DEVICE OUTDIR
#
# Needs no install: the three code folders are linked into a temporary `wearface` namespace package.
# Runs (all from the same pack, identity-disjoint val split inside it, never LFW View 2):
#   a_mb   model A, multibatch hinge, balanced       (time budget)   -> the shipped model A
#   b_mb   model B, multibatch hinge, balanced       (time budget)
#   a_eq_mb / a_eq_uni / a_eq_pairs: model A at EQUAL images seen (--images), multibatch balanced,
#          multibatch uniform, k/2-pairs baseline: the seed's "pairs vs multi-batch" comparison.
#          They are cut at MINUTES + 75 s if slower than planned; their history rows (every
#          EVAL_EVERY steps) still compare them at equal images seen.
set -u
PACK=${1:?pack .npz}; MIN=${2:-7}; DEVICE=${3:-cuda}; DEST=${4:-runs/gpu}
EQ_IMAGES=${EQ_IMAGES:-600000}; WORKERS=${WORKERS:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
NS=$(mktemp -d); mkdir -p "$NS/wearface"
for p in kernels firmware host_tools; do ln -s "$REPO/$p" "$NS/wearface/$p"; done
export PYTHONPATH="$NS${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$DEST"
common=(--data "$PACK" --device "$DEVICE" --workers "$WORKERS" --no-progress --eval-every-steps "${EVAL_EVERY:-400}")
python3 -c "import torch,sys; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
LIMIT_S=$(python3 -c "print(int(float('$MIN')*60 + 75))")
run() { name=$1; shift; timeout "$LIMIT_S" python3 -m wearface.host_tools train --out "$DEST/$name" "${common[@]}" "$@" > "$DEST/$name.log" 2>&1; echo "$name exit $?" >> "$DEST/status.txt"; }
run a_mb --net A --time-budget-min "$MIN" &
run b_mb --net B --time-budget-min "$MIN" &
run a_eq_mb --net A --images "$EQ_IMAGES" &
run a_eq_uni --net A --images "$EQ_IMAGES" --weighting uniform &
run a_eq_pairs --net A --images "$EQ_IMAGES" --loss pairs &
wait
cat "$DEST/status.txt"
