"""Teach a board a face: read photos here, send them, let the board detect, align and embed them.

One job: the host half of enrolment.  Detection and alignment run on the *board*, with the same detector,
alignment net and embedding model as its recognition loop: an enrolled embedding is then made exactly the way
the live ones it is compared with are (same crop geometry, same int8 model, same model version recorded in the
gallery), and the host needs no model at all — only OpenCV to read and re-encode the photos.  The cost is the
upload (a 640-px JPEG is ~60 KB: ~5 s at 115200 baud, <1 s at 921600).

Must not import torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wearface.firmware import protocol as P

from ..errors import DataError
from .link import Link

#: photos are shrunk to this longest side before upload (the detector works at <= 640 px anyway)
MAX_SIDE_PX = 1024
JPEG_QUALITY = 95


@dataclass
class EnrollResult:
    name: str
    added: int
    embeddings: int
    spread_mean: float
    spread_max: float
    threshold: float
    faces: list
    upload_bytes: int
    #: the distance θ means for this person (θ itself, or with a cohort θ x the mean's k-th nearest cohort distance);
    #: boards before 0.2.3 did not say: θ
    distance_threshold: float = float("nan")


def encode_photo(path: str | Path, max_side_px: int = MAX_SIDE_PX) -> bytes:
    """Read a photo (any format OpenCV reads, alpha dropped), shrink it to ``max_side_px``, return JPEG bytes."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{path}: not an image OpenCV can read")
    h, w = bgr.shape[:2]
    scale = max_side_px / max(h, w)
    if scale < 1.0:
        bgr = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DataError(f"{path}: OpenCV could not re-encode it as JPEG")
    return buf.tobytes()


def _result(out: dict, upload_bytes: int) -> EnrollResult:
    return EnrollResult(name=out["name"], added=int(out.get("added", 0)), embeddings=int(out.get("embeddings", 0)),
                        spread_mean=float(out.get("spread_mean", np.nan)),
                        spread_max=float(out.get("spread_max", np.nan)),
                        threshold=float(out.get("threshold", np.nan)), faces=list(out.get("faces", [])),
                        upload_bytes=upload_bytes,
                        distance_threshold=float(out.get("distance_threshold", out.get("threshold", np.nan))))


def enroll_photos(link: Link, name: str, paths: list[str | Path]) -> EnrollResult:
    """Enrol ``name`` from photos (one face each, or face crops).  NoFaceError / SeveralFacesError name the photo."""
    if not paths:
        raise DataError("enroll: give at least one image")
    images = [encode_photo(p) for p in paths]
    size = sum(len(i) for i in images)
    from ..errors import BoardError

    try:
        out = link.request(P.Opcode.ENROLL_IMAGES, {"name": name, "images": images}, timeout_s=30.0,
                           response_bytes=1024)
    except BoardError as exc:
        # the board counts images from 0; put the user's file names in the message
        text = str(exc)
        for i, p in enumerate(paths):
            text = text.replace(f"image {i} ", f"image {i} ({Path(p).name}) ")
        exc.args = (text,)
        raise
    return _result(out, size)


def enroll_camera(link: Link, name: str, n_frames: int) -> EnrollResult:
    """Enrol ``name`` from the largest face in each of the board camera's next ``n_frames`` frames."""
    out = link.request(P.Opcode.ENROLL_CAMERA, {"name": name, "n_frames": n_frames},
                       timeout_s=2.0 * n_frames + 10.0, retries=1)
    return _result(out, 0)


def describe(result: EnrollResult) -> str:
    """Human summary: how many, how the faces were found, the spread against θ."""
    modes = ", ".join(f.get("mode", "?") for f in result.faces)
    limit = result.distance_threshold if np.isfinite(result.distance_threshold) else result.threshold
    verdict = "tight" if result.spread_max < limit / 2 else (
        "wide: check the photos are all this person" if result.spread_max >= limit else "ok")
    against = f"θ {result.threshold:.3f}" if limit == result.threshold else \
        f"θ {result.threshold:.3f} of the cohort rule = distance {limit:.3f} for this person"
    return (f"enrolled {result.name}: {result.added} embeddings added ({modes}), {result.embeddings} stored; "
            f"intra-person spread (distance to the mean): mean {result.spread_mean:.3f}, max {result.spread_max:.3f} "
            f"vs {against} ({verdict})")
