"""Face geometry on the board: windows, the alignment net's 3 numbers, and the two crops.

One job: given a camera frame and a *window* (where the canonical face frame lies in the frame),
cut the alignment net's 50x50 input, apply the net's correction to the window, and cut the
embedding net's 112x112 input.  Pure functions of numpy arrays; numpy + OpenCV only (never torch).
The host's training code renders its inputs through these same functions.

Conventions (all coordinates are pixel coordinates with pixel *centres* at integers, as in
``cv2.warpAffine``; x to the right, y down):

* **Canonical frame**: the 112x112 embedding input, i.e. ``LFW128[8:120, 8:120]`` and the frame
  of ``celeba_more112``.  Its centre is ``(55.5, 55.5)``.  ``LANDMARK_TEMPLATE`` gives where the
  5 landmark pseudo-labels sit in it on average (LFW mean).
* **Window**: a float64 (2, 3) similarity ``W`` that maps canonical coordinates ``q = (u, v)``
  to frame coordinates ``p = W @ (u, v, 1)``:  ``p = s * R(phi) @ (q - C) + c`` with ``C`` the
  canonical centre, ``c`` its place in the frame, ``s`` frame pixels per canonical pixel and
  ``phi`` the angle (radians) of the canonical x axis in the frame, positive from +x towards +y
  (clockwise on screen).  ``window_from_params`` / ``window_params`` convert.
* **Correction** (the alignment net's 3 numbers, float, in this order):
  ``dx``, ``dy``: where the face's true canonical centre lies in the *current* window's
  canonical frame, minus ``C``, in units of the frame width (112 px):
  ``+dx`` = the face sits to the right of the window's centre, ``+dy`` = lower.
  ``angle_rad``: the face's canonical x axis (the eye line, right eye -> left eye of the image)
  measured in the current window's canonical frame, radians, positive from +x towards +y
  (clockwise on screen: the face's left-of-image eye is higher than its right-of-image eye).
  Scale is not corrected (3 numbers, as in the seed); it comes from the detector box.
  ``apply_correction(W, c)`` = ``W o T`` with ``T(q) = R(angle) @ (q - C) + C + 112 * (dx, dy)``.
* **Alignment input**: the canonical square ``[-8, 120)`` (the LFW128 frame of the window, 128
  canonical pixels) rendered to 50x50 RGB, so 1 input pixel = 2.56 canonical pixels.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .errors import AlignError

FRAME_SIZE = 112
FRAME_CENTRE = (FRAME_SIZE - 1) / 2.0
ALIGN_SIZE = 50
#: The alignment input shows canonical pixels [ALIGN_ORIGIN, ALIGN_ORIGIN + ALIGN_SPAN) in x and y.
ALIGN_ORIGIN = -8.0
ALIGN_SPAN = 128.0

#: Mean 5-point pseudo-landmarks (MediaPipe FaceMesh) over the 13,231 LFW128 images that have
#: them, minus 8 px: (x, y) in the canonical 112 frame, rows reye, leye, nose, rmouth, lmouth
#: ("reye" is the eye on the image's left).  Measured with:
#: python3 -c "import csv,numpy as n; ..."  over ../shared/data/lfw/lfw128_index.csv (mean - 8).
LANDMARK_TEMPLATE = np.array(
    [[39.71, 46.87], [72.35, 46.16], [56.40, 67.74], [42.66, 82.56], [71.05, 81.85]], dtype=np.float64
)
LANDMARK_NAMES = ("reye", "leye", "nose", "rmouth", "lmouth")

#: Above this many source pixels per output pixel, the source region is first shrunk with
#: INTER_AREA to one source pixel per output pixel (bilinear sampling alone aliases: a 1-px
#: checkerboard seen at 1.4 px/px gave std 42 instead of ~0).
_MAX_LINEAR_STEP = 1.0


def window_from_params(centre_xy, scale: float, angle_rad: float = 0.0) -> np.ndarray:
    """Window (2, 3) float64 with the canonical centre at ``centre_xy`` (frame px), ``scale``
    frame px per canonical px and the canonical x axis at ``angle_rad`` (clockwise on screen)."""
    cx, cy = float(centre_xy[0]), float(centre_xy[1])
    if not (math.isfinite(scale) and scale > 0):
        raise AlignError(f"window scale must be a positive finite number, got {scale!r}")
    a = scale * math.cos(angle_rad)
    b = scale * math.sin(angle_rad)
    m = np.array([[a, -b, 0.0], [b, a, 0.0]], dtype=np.float64)
    m[:, 2] = np.array([cx, cy]) - m[:, :2] @ np.array([FRAME_CENTRE, FRAME_CENTRE])
    return m


def check_window(window) -> np.ndarray:
    """Return ``window`` as a (2, 3) float64 similarity; AlignError if it is not one."""
    try:
        w = np.array(window, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AlignError(f"window must be a (2, 3) array of numbers: {exc}") from None
    if w.shape != (2, 3):
        raise AlignError(f"window must be a (2, 3) array, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise AlignError(f"window has non-finite entries: {w.tolist()}")
    a, b = w[0, 0], w[1, 0]
    if abs(w[1, 1] - a) > 1e-6 * (abs(a) + abs(b) + 1e-12) or abs(w[0, 1] + b) > 1e-6 * (abs(a) + abs(b) + 1e-12):
        raise AlignError(f"window is not a similarity (rotation + uniform scale): {w.tolist()}")
    if a * a + b * b <= 0:
        raise AlignError("window has zero scale")
    return w


def window_params(window) -> tuple[float, float, float, float]:
    """(centre_x, centre_y, scale, angle_rad) of a window; inverse of ``window_from_params``."""
    w = check_window(window)
    a, b = w[0, 0], w[1, 0]
    centre = w[:, :2] @ np.array([FRAME_CENTRE, FRAME_CENTRE]) + w[:, 2]
    return float(centre[0]), float(centre[1]), float(math.hypot(a, b)), float(math.atan2(b, a))


def _to3(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


def correction_transform(correction) -> np.ndarray:
    """The canonical->canonical similarity ``T`` (2, 3) of a correction (dx, dy, angle_rad)."""
    try:
        c = np.array(correction, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        c = None
    if c is None or c.shape != (3,) or not np.all(np.isfinite(c)):
        raise AlignError(f"correction must be 3 finite numbers (dx, dy, angle_rad), got {correction!r}")
    dx, dy, ang = c
    cos, sin = math.cos(ang), math.sin(ang)
    rot = np.array([[cos, -sin], [sin, cos]])
    ctr = np.array([FRAME_CENTRE, FRAME_CENTRE])
    t = ctr + FRAME_SIZE * np.array([dx, dy]) - rot @ ctr
    return np.hstack([rot, t[:, None]])


def apply_correction(window, correction) -> np.ndarray:
    """The corrected window ``W o T`` (2, 3) float64; see the module docstring for the 3 numbers."""
    w = check_window(window)
    return (_to3(w) @ _to3(correction_transform(correction)))[:2]


def correction_between(window, target_window) -> np.ndarray:
    """The 3 numbers (dx, dy, angle_rad) that move ``window`` onto ``target_window``'s centre
    and angle (their scale ratio is ignored).  ``apply_correction(window, result)`` has
    ``target_window``'s centre and angle and ``window``'s scale.  float64 (3,)."""
    w = check_window(window)
    t = check_window(target_window)
    rel = np.linalg.inv(_to3(w)) @ _to3(t)  # target's canonical -> window's canonical
    ctr = np.array([FRAME_CENTRE, FRAME_CENTRE, 1.0])
    centre = rel @ ctr
    angle = math.atan2(rel[1, 0], rel[0, 0])
    return np.array([(centre[0] - FRAME_CENTRE) / FRAME_SIZE, (centre[1] - FRAME_CENTRE) / FRAME_SIZE, angle])


def fit_window(landmarks_xy, template=LANDMARK_TEMPLATE) -> np.ndarray:
    """Least-squares similarity (Umeyama) that maps ``template`` (canonical px) onto
    ``landmarks_xy`` (frame px); both (N, 2), N >= 2.  The window an ideal aligner would give."""
    dst = np.asarray(landmarks_xy, dtype=np.float64)
    src = np.asarray(template, dtype=np.float64)
    if dst.shape != src.shape or dst.ndim != 2 or dst.shape[1] != 2 or dst.shape[0] < 2 or not np.all(np.isfinite(dst)):
        raise AlignError(f"landmarks must be a finite {src.shape} array, got {dst.shape}")
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    # Complex-number form of the 2-D similarity fit: d = z * s, z = a + ib.
    zs = s0[:, 0] + 1j * s0[:, 1]
    zd = d0[:, 0] + 1j * d0[:, 1]
    denom = float(np.sum(np.abs(zs) ** 2))
    if denom <= 0:
        raise AlignError("landmark template is degenerate (all points equal)")
    z = np.sum(np.conj(zs) * zd) / denom
    if abs(z) == 0:
        raise AlignError("landmarks are degenerate (all points equal)")
    a, b = z.real, z.imag
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = md - m[:, :2] @ ms
    return m


def _check_frame(frame_bgr) -> np.ndarray:
    if not isinstance(frame_bgr, np.ndarray):
        raise AlignError(f"frame must be a numpy array, got {type(frame_bgr).__name__}")
    if frame_bgr.dtype != np.uint8:
        raise AlignError(f"frame must be uint8, got {frame_bgr.dtype}")
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise AlignError(f"frame must be (H, W, 3) BGR, got shape {frame_bgr.shape}")
    if frame_bgr.shape[0] == 0 or frame_bgr.shape[1] == 0:
        raise AlignError(f"frame is empty: shape {frame_bgr.shape}")
    return frame_bgr


def warp_to(frame_bgr: np.ndarray, out_to_frame: np.ndarray, size: int) -> np.ndarray:
    """Render a ``size`` x ``size`` RGB uint8 image whose pixel (x, y) shows frame point
    ``out_to_frame @ (x, y, 1)``.  Bilinear; where one output pixel spans more than 1 frame
    pixel, the needed region is first shrunk with INTER_AREA.  Outside the frame is black."""
    frame = _check_frame(frame_bgr)
    m = np.asarray(out_to_frame, dtype=np.float64)
    step = math.sqrt(abs(np.linalg.det(m[:, :2])))
    if step > _MAX_LINEAR_STEP:
        corners = np.array([[-1, -1, 1], [size, -1, 1], [-1, size, 1], [size, size, 1]], dtype=np.float64)
        pts = corners @ m.T
        h, w = frame.shape[:2]
        x0 = max(int(math.floor(pts[:, 0].min())) - 1, 0)
        y0 = max(int(math.floor(pts[:, 1].min())) - 1, 0)
        x1 = min(int(math.ceil(pts[:, 0].max())) + 2, w)
        y1 = min(int(math.ceil(pts[:, 1].max())) + 2, h)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            roi = frame[y0:y1, x0:x1]
            rw = max(int(round((x1 - x0) / step)), 1)
            rh = max(int(round((y1 - y0) / step)), 1)
            small = cv2.resize(roi, (rw, rh), interpolation=cv2.INTER_AREA)
            fx, fy = rw / (x1 - x0), rh / (y1 - y0)
            # frame p -> small: (p - p0 + 0.5) * f - 0.5  (pixel-centre convention)
            to_small = np.array([[fx, 0.0, (0.5 - x0) * fx - 0.5], [0.0, fy, (0.5 - y0) * fy - 0.5], [0, 0, 1.0]])
            m = (to_small @ _to3(m))[:2]
            frame = small
    out = cv2.warpAffine(
        frame, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
    )
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def alignment_window(window) -> np.ndarray:
    """(2, 3) map from alignment-input pixels (50x50) to frame pixels for ``window``."""
    w = check_window(window)
    k = ALIGN_SPAN / ALIGN_SIZE
    off = ALIGN_ORIGIN + k / 2 - 0.5  # input pixel 0's centre in canonical px
    return (_to3(w) @ np.array([[k, 0, off], [0, k, off], [0, 0, 1.0]]))[:2]


def alignment_input(frame_bgr: np.ndarray, window) -> np.ndarray:
    """The alignment net's input: uint8 (50, 50, 3) RGB showing canonical [-8, 120)^2 of ``window``."""
    return warp_to(frame_bgr, alignment_window(window), ALIGN_SIZE)


def embedding_input(frame_bgr: np.ndarray, window) -> np.ndarray:
    """The embedding net's input: uint8 (112, 112, 3) RGB, the canonical frame of ``window``."""
    return warp_to(frame_bgr, check_window(window), FRAME_SIZE)


def map_points(window, points_canonical) -> np.ndarray:
    """Canonical points (N, 2) -> frame points (N, 2) through ``window``."""
    w = check_window(window)
    p = np.asarray(points_canonical, dtype=np.float64).reshape(-1, 2)
    return p @ w[:, :2].T + w[:, 2]


def unmap_points(window, points_frame) -> np.ndarray:
    """Frame points (N, 2) -> canonical points (N, 2) of ``window`` (inverse of ``map_points``)."""
    w = check_window(window)
    inv = np.linalg.inv(_to3(w))[:2]
    p = np.asarray(points_frame, dtype=np.float64).reshape(-1, 2)
    return p @ inv[:, :2].T + inv[:, 2]
