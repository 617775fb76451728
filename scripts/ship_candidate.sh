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
# Figures land in OUT.heldout.json/.txt (galleries with 3, 2 and 1 enrolment images a person, the held-out faces
# embedded once) and OUT.lfw.txt beside a temporary OUT (default /tmp/wf-ship).
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
build() {  # build THETA VERSION FILE [MORE BUILD ARGUMENTS]
  wearface bundle build -o "$3" --align models/checkpoints/align.pt --embed "$CKPT" --data "$DATA" "${@:4}" \
    --calibration 128 --method mse --threshold "$1" --cohort 1000 --mirror-average --gallery-match "$MATCH" \
    --key keys/dev_ed25519.pem \
    --model-version "$2" --rollback 0 --created-at "$CREATED"
}
# the placeholder beside the report, so that two candidates can be measured at once
PLACEHOLDER=$REPORT.placeholder
build 0.74 placeholder "$PLACEHOLDER.wfb"
# θ names at most 0.5% of strangers on the tune half: at 1% the 1,504,000-image model named 0.92% of the report
# half's strangers, the 2,368,000-image one 2.49% (docs/RESULTS.md "The shipped bundle 1.4-a94").  One θ for each
# enrolment count a person may have, 1, 2 and 3 or more (galleries of 40 people with that many images each): a
# person's mean embedding over more images lies nearer both their own faces and strangers' (session 11).
wearface eval-heldout "$PLACEHOLDER.wfb" --data "$DATA" --strangers 0.005 --per-person 1 2 3 \
  --json "$PLACEHOLDER.json" --no-progress
# rounded down to 4 digits: a smaller θ names fewer strangers, never more
read -r -a THETAS <<< "$(python3 -c "import json, math, sys
shapes = json.load(open(sys.argv[1]))['by_per_person']
print(*(math.floor(shapes[n]['theta'] * 1e4) / 1e4 for n in '123'))" "$PLACEHOLDER.json")"
THETA=${THETAS[2]}
echo "θ from the held-out tune half, for 1, 2 and 3+ enrolment images: ${THETAS[*]}"
build "$THETA" "$VERSION" "$OUT" --threshold-by-count "${THETAS[0]}" --threshold-by-count "${THETAS[1]}" \
  --threshold-by-count "${THETAS[2]}"
wearface eval-heldout "$OUT" --data "$DATA" --per-person 3 2 1 --theta "${THETAS[2]}" "${THETAS[1]}" "${THETAS[0]}" \
  --json "$REPORT.heldout.json" --no-progress | tee "$REPORT.heldout.txt"
wearface eval-board "$OUT" --lfw "$DATA/lfw" --no-progress | tee "$REPORT.lfw.txt"
