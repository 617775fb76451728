"""Following a face from frame to frame with the alignment net instead of the detector.

One job: given a track's window in the previous frame (``align.py``: where its canonical 112 face frame lay),
say where it lies in this frame, or that there is no face there any more.  The alignment net already outputs
the correction that centres the face in a 50x50 view around a window (dx, dy, angle); applied to last frame's
window it moves the window onto this frame's face, at ~0.1-0.8 ms (int8) instead of a 17-49 ms Haar search.

The net has no "no face" output (it was trained on face views only), so the follower judges with two cheap
signals (``board.FollowConfig``):

* **jump**: the correction moved the window by more than ``max_shift`` frame widths.  The net is trained on
  shifts up to 0.12; a much larger answer means it saw something it was not trained on.
* **appearance**: the grey picture inside the corrected window (``SIGNATURE_SIZE`` px square over canonical
  ``SIGNATURE_SPAN``) against the same picture at the track's last detection, normalised cross-correlation
  below ``min_similarity``, or its contrast (grey standard deviation) below ``MIN_CONTRAST_RATIO`` of the
  reference's (a smooth background correlates with a face's shading; it has not a face's texture).  Because
  both are taken in the face's own aligned frame, moving and turning (roll) do not change them; the face
  leaving, being covered or the window sliding onto the background do.
* **left**: the window's centre is outside the frame: the track ends (half a face is not a face to follow).

Scale is not followed (the net outputs 3 numbers); it comes from the last detection, which the periodic full
search renews.  numpy + OpenCV only; the net runs through ``FaceModel.correct``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from . import align as geo
from .detect import BOX_TO_FRAME_DX, BOX_TO_FRAME_DY, BOX_TO_FRAME_WIDTH, face_window

#: side of the appearance signature, px; canonical region it shows (eyes, nose, mouth; little background)
SIGNATURE_SIZE = 24
SIGNATURE_SPAN = (16.0, 96.0)
#: a followed window whose grey contrast fell below this fraction of the face's at its last detection holds no face
MIN_CONTRAST_RATIO = 0.5

OK, JUMP, APPEARANCE, LEFT = "ok", "jump", "appearance", "left"


@dataclass
class FollowResult:
    """One follow step.  ``verdict``: ``OK`` (``window``/``box`` are this frame's), ``JUMP`` or ``APPEARANCE``
    (doubtful: keep the old window, search the region), ``LEFT`` (the track ends).  ``similarity``: the NCC
    against the reference signature (None when not computed); ``shift``: the correction's shift, frame widths."""

    verdict: str
    window: Optional[np.ndarray]
    box: Optional[tuple]
    shift: float
    similarity: Optional[float]
    view: Optional[np.ndarray] = None
    correction: Optional[np.ndarray] = None


def signature(frame_bgr: np.ndarray, window: np.ndarray) -> np.ndarray:
    """float32 (SIGNATURE_SIZE**2,) zero-mean grey picture (0-255 levels) of canonical SIGNATURE_SPAN in ``window``."""
    lo, hi = SIGNATURE_SPAN
    k = (hi - lo) / SIGNATURE_SIZE
    off = lo + k / 2 - 0.5  # output pixel 0's centre in canonical px
    out_to_canonical = np.array([[k, 0.0, off], [0.0, k, off], [0.0, 0.0, 1.0]])
    m = (np.vstack([geo.check_window(window), [0.0, 0.0, 1.0]]) @ out_to_canonical)[:2]
    rgb = geo.warp_to(frame_bgr, m, SIGNATURE_SIZE)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32).reshape(-1)
    return grey - grey.mean()


def compare(sig: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(normalised cross-correlation -1..1, contrast ratio) of a signature against the reference signature."""
    n_sig, n_ref = float(np.linalg.norm(sig)), max(float(np.linalg.norm(reference)), 1e-6)
    return float(np.dot(sig, reference)) / max(n_sig * n_ref, 1e-6), n_sig / n_ref


def box_of_window(window: np.ndarray) -> tuple:
    """The detector box (x, y, w, h), frame px, that ``face_window`` would turn into ``window``'s centre and scale
    (the inverse of ``detect.face_window``, ignoring the angle)."""
    cx, cy, scale, _ = geo.window_params(window)
    w = scale * geo.FRAME_SIZE / BOX_TO_FRAME_WIDTH
    bx = cx - BOX_TO_FRAME_DX * w + 0.5 - w / 2.0
    by = cy - BOX_TO_FRAME_DY * w + 0.5 - w / 2.0
    return (bx, by, w, w)


def anchor(model, frame_bgr: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """A detected face's (corrected window, reference signature): what following starts from."""
    _, _, window = model.correct(frame_bgr, face_window(box))
    return window, signature(frame_bgr, window)


def follow(model, frame_bgr: np.ndarray, window: np.ndarray, reference: np.ndarray, config) -> FollowResult:
    """Move ``window`` (last frame's) onto this frame's face with one alignment-net pass; judge it (module doc)."""
    view, correction, moved = model.correct(frame_bgr, window)
    shift = math.hypot(correction[0], correction[1])
    if shift > config.max_shift:
        return FollowResult(JUMP, None, None, shift, None, view, correction)
    cx, cy, _, _ = geo.window_params(moved)
    h, w = frame_bgr.shape[:2]
    if not (0 <= cx < w and 0 <= cy < h):
        return FollowResult(LEFT, None, None, shift, None, view, correction)
    similarity, contrast = compare(signature(frame_bgr, moved), reference)
    if similarity < config.min_similarity or contrast < MIN_CONTRAST_RATIO:
        return FollowResult(APPEARANCE, None, None, shift, similarity, view, correction)
    return FollowResult(OK, moved, box_of_window(moved), shift, similarity, view, correction)
