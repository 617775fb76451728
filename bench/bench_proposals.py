"""Benchmark (not a test): what BlazeFace's proposals find on the real clip, and what their second looks cost.

The full-range net scores some of the clip's faces under its 0.6 (small faces in a letterboxed 640x360 frame).  A
box it scores from ``propose_score`` up to 0.6 is a proposal, which the short-range net looks at again on the
region around it (``blazeface.BlazeFaceDetector.second_look``) and keeps when it scores a face there at least
``confirm_score``.  This script decodes every proposal down to the lowest score tried, gives each its second look
once, asks dlib's CNN face detector whether it is a face (``bench_pipeline.face_checker``: a crop two boxes wide),
and prints, for each pair of thresholds, the faces and the non-faces the detector would return on the clip's frames
(every ``--every``-th) and the second looks a frame it would take (before ``MAX_CONFIRMS`` and before the loop's
tracked faces, which need none).  Needs dlib and its models (``face_recognition_models``) and the clip.

    python3 bench/bench_proposals.py [--data ../shared/data] [--every 2]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import face_checker  # noqa: E402  (pins this process to one core, as the loop's bench does)

from wearface.firmware import blazeface as bf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROPOSE = (0.5, 0.4, 0.35, 0.3, 0.25, 0.2)
CONFIRM = (0.5, 0.6, 0.7)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--every", type=int, default=2, help="look at every N-th frame of the clip")
    args = ap.parse_args()
    video = Path(args.data) / "video" / "short_hamilton_clip.mp4"
    is_face = face_checker()
    if not video.is_file() or is_face is None:
        print(f"needs the clip ({video}) and dlib with face_recognition_models")
        return 1
    detector = bf.BlazeFaceDetector(propose_score=min(PROPOSE))
    full = detector.frame_nets[0]
    cap = cv2.VideoCapture(str(video))
    sure, proposals, frames, index = [], [], 0, -1
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        index += 1
        if index % args.every:
            continue
        frames += 1
        boxes, _, maybe = detector._run(frame, full, propose=True)
        for x0, y0, x1, y1 in boxes:
            h = bf.haar_box(x0, y0, x1 - x0, y1 - y0, 0.0)
            sure.append(is_face(frame, (h.x, h.y, h.w, h.h)))
        for x0, y0, x1, y1, score in maybe:
            if len(boxes) and (bf._iou(np.array([x0, y0, x1, y1]), boxes) > bf.NMS_IOU).any():
                continue  # the same face as a sure box
            h = bf.haar_box(x0, y0, x1 - x0, y1 - y0, 0.0)
            looked = detector.second_look(frame, np.array([x0, y0, x1, y1], np.float32), min(PROPOSE))
            proposals.append((float(score), looked, is_face(frame, (h.x, h.y, h.w, h.h))))
    print(f"the clip's frames 0, {args.every}, ... ({frames} frames); BlazeFace full-range, letterboxed; "
          f"a face: dlib's CNN finds one on a crop around the box")
    print()
    print(f"sure boxes (score >= 0.6): {sum(sure)} faces, {len(sure) - sum(sure)} not faces")
    print()
    print("| propose_score | confirm_score | proposals / frame | faces added | not faces added | faces | not faces |")
    print("|---|---|---|---|---|---|---|")
    for p in PROPOSE:
        for c in CONFIRM:
            mine = [x for x in proposals if x[0] >= p]
            kept = [x for x in mine if x[1] >= c]
            faces = sum(x[2] for x in kept)
            print(f"| {p} | {c} | {len(mine) / frames:.2f} | {faces} | {len(kept) - faces} | {sum(sure) + faces} | "
                  f"{len(sure) - sum(sure) + len(kept) - faces} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
