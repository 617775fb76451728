#!/usr/bin/env bash
# Build a shippable bundle from an embedding checkpoint, the way models/default.wfb is built (docs/RESULTS.md,
# "The shipped bundle"): a cohort of 1,000 training identities, the mirror image averaged, θ chosen on the tune
# half of the held-out CelebA identities (never on LFW), then the report half at that θ and LFW View 2 through the
# board path as reports.
#
#   bash scripts/ship_candidate.sh CHECKPOINT MODEL_VERSION [OUT] [DATA]
#   e.g. bash scripts/ship_candidate.sh models/checkpoints/model_a_long_ema_5000k.pt 1.7-cand /tmp/wf-ship/cand5m.wfb
#
# Steps (~15 min on 2 shared vCPUs; 2 min 42 s on session 10's AVX-512 VNNI machine): build with a placeholder θ;
# `wearface eval-heldout` (the bundle's own cohort and rule) chooses θ; the same build with that θ and MODEL_VERSION
# into OUT; `eval-heldout --theta` and `eval-board` on it.
# Figures land in OUT.heldout.json, OUT.heldout.txt and OUT.lfw.txt beside a temporary OUT (default /tmp/wf-ship).
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${1:?embedding checkpoint (.pt)}; VERSION=${2:?model version, e.g. 1.4-a94}
OUT=${3:-/tmp/wf-ship/candidate.wfb}; DATA=${4:-../shared/data}
# each enrolled person matched by their mean embedding (session 11, docs/RESULTS.md); GALLERY_MATCH=nearest: as before
MATCH=${GALLERY_MATCH:-mean}
REPORT=${OUT%.wfb}
[ "$OUT" = models/default.wfb ] && REPORT=/tmp/wf-ship/default
mkdir -p "$(dirname "$REPORT")" /tmp/wf-ship
CREATED=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)
build() {  # build THETA VERSION FILE
  wearface bundle build -o "$3" --align models/checkpoints/align.pt --embed "$CKPT" --data "$DATA" \
    --calibration 128 --method mse --threshold "$1" --cohort 1000 --mirror-average --gallery-match "$MATCH" \
    --key keys/dev_ed25519.pem \
    --model-version "$2" --rollback 0 --created-at "$CREATED"
}
# the placeholder beside the report, so that two candidates can be measured at once
PLACEHOLDER=$REPORT.placeholder
build 0.74 placeholder "$PLACEHOLDER.wfb"
# θ names at most 0.5% of strangers on the tune half: at 1% the 1,504,000-image model named 0.92% of the report
# half's strangers, the 2,368,000-image one 2.49% (docs/RESULTS.md "The shipped bundle 1.4-a94")
wearface eval-heldout "$PLACEHOLDER.wfb" --data "$DATA" --strangers 0.005 --json "$PLACEHOLDER.json" \
  --no-progress
# rounded down to 4 digits: a smaller θ names fewer strangers, never more
THETA=$(python3 -c "import json, math, sys; print(math.floor(json.load(open(sys.argv[1]))['theta'] * 1e4) / 1e4)" "$PLACEHOLDER.json")
echo "θ from the held-out tune half: $THETA"
build "$THETA" "$VERSION" "$OUT"
wearface eval-heldout "$OUT" --data "$DATA" --theta "$THETA" --json "$REPORT.heldout.json" --no-progress | tee "$REPORT.heldout.txt"
wearface eval-board "$OUT" --lfw "$DATA/lfw" --no-progress | tee "$REPORT.lfw.txt"
