"""Face detection on the board: OpenCV's shipped Haar cascade, boxes in frame pixels.

One job: frame (BGR or grey uint8, any size) -> list of ``FaceBox`` (x, y, w, h in frame pixels,
with a confidence score), plus ``face_window(box)``, the first guess of where the canonical
112x112 face frame (``wearface.firmware.align``) lies in the frame.  numpy + OpenCV only.

Which cascade, and the box -> frame constants, were measured on LFW; see ``docs/ALIGNMENT.md``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .align import FRAME_SIZE, window_from_params
from .errors import DetectError
from .tracker import iou

#: Cascades shipped with opencv-python in ``cv2.data.haarcascades`` that were compared (no LBP
#: cascades are shipped with the pip wheels).
FRONTAL_CASCADES = (
    "haarcascade_frontalface_default.xml",
    "haarcascade_frontalface_alt.xml",
    "haarcascade_frontalface_alt2.xml",
    "haarcascade_frontalface_alt_tree.xml",
)

# --- box -> canonical frame (measured; see docs/ALIGNMENT.md "Box to frame") -------------------
#: The canonical frame's centre minus the box centre, in box widths (x, y), and the canonical
#: frame's width (112 canonical px) in box widths.  Medians over LFW128 images pasted into
#: larger grey frames (scale 0.6-2.0), for the default cascade and settings: 596 faces found in
#: 600 images (IQR 0.022, 0.020, 0.095).  Measured with:
#: ``wearface measure-detector --data ../shared/data --images 600 --seed 0``.
BOX_TO_FRAME_DX = -0.0049
BOX_TO_FRAME_DY = -0.0001
BOX_TO_FRAME_WIDTH = 1.2046

# --- grey-frame preparation (measured; see docs/BENCHMARKS.md "Detector recall (issues 14 and 16)") --------
#: ``DetectorSettings.equalize`` values; False/True mean "none"/"hist"
EQUALIZE_MODES = ("none", "hist", "clahe")
#: CLAHE's clip limit (x the mean histogram bin) and its tile grid (tiles per side)
CLAHE_CLIP = 2.0
CLAHE_TILES = 8
#: the padded search (``pad_fraction`` > 0) looks only for boxes of at least this fraction of the frame's
#: shorter side: smaller faces fit in the frame and are the first pass's
PAD_MIN_FACE = 0.7
#: a padded-search box that overlaps a first-pass box by this IoU or more is the same face
PAD_SAME_IOU = 0.3


def equalize_mode(value) -> str | None:
    """``DetectorSettings.equalize`` as one of ``EQUALIZE_MODES`` (None when it is none of them)."""
    if isinstance(value, bool):
        return "hist" if value else "none"
    return value if value in EQUALIZE_MODES else None



@dataclass(frozen=True)
class DetectorSettings:
    """Cascade detector settings.

    ``cascade``: a file name looked up in ``cascade_dirs()`` (``cv2.data.haarcascades`` first) or
    a path to a cascade XML.
    ``scale_factor``: image pyramid step (>1; 1.1 = 10% per level; larger is faster, misses more).
    ``min_neighbors``: overlapping raw hits needed to keep a box (higher = fewer false faces).
    ``min_size_px``: smallest face box side, in *frame* pixels (before ``downscale``).
    ``max_size_px``: largest face box side in frame pixels, 0 = no limit.
    ``downscale``: the grey frame is shrunk by this factor (>= 1) before detection, for speed;
    boxes are returned in full-frame pixels.  ``equalize``: ``"none"`` (False), ``"hist"`` (True:
    global histogram equalisation; on frames with large flat areas it amplifies noise and lost ~25%
    of the LFW faces in the grey-scene measurement, docs/ALIGNMENT.md) or ``"clahe"`` (contrast-limited
    adaptive equalisation, ``CLAHE_CLIP`` / ``CLAHE_TILES``), applied to the grey frame after ``downscale``.
    ``pad_fraction``: 0 = off; else a second search for faces too large for the frame (a close-up whose
    box runs past the edges): the grey frame padded on every side by this fraction of its shorter side
    (edge pixels repeated), searched only for boxes of at least ``PAD_MIN_FACE`` of the shorter side
    (a few small pyramid levels: cheap).  Its boxes that overlap no first-pass box are added; they may
    extend past the frame's edges.  See docs/BENCHMARKS.md "Detector recall (issues 14 and 16)".
    """

    cascade: str = "haarcascade_frontalface_default.xml"
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size_px: int = 40
    max_size_px: int = 0
    downscale: float = 1.0
    equalize: bool | str = False
    pad_fraction: float = 0.0

    def validated(self) -> "DetectorSettings":
        if not (self.scale_factor > 1.0 and math.isfinite(self.scale_factor)):
            raise DetectError(f"scale_factor must be > 1, got {self.scale_factor!r}")
        if self.min_neighbors < 0:
            raise DetectError(f"min_neighbors must be >= 0, got {self.min_neighbors!r}")
        if self.min_size_px < 1 or self.max_size_px < 0:
            raise DetectError(f"min_size_px must be >= 1 and max_size_px >= 0, got {self.min_size_px}, {self.max_size_px}")
        if not (self.downscale >= 1.0 and math.isfinite(self.downscale)):
            raise DetectError(f"downscale must be >= 1, got {self.downscale!r}")
        if equalize_mode(self.equalize) is None:
            raise DetectError(f"equalize must be one of {EQUALIZE_MODES} or a bool, got {self.equalize!r}")
        if not (0.0 <= self.pad_fraction <= 1.0):
            raise DetectError(f"pad_fraction must be in [0, 1], got {self.pad_fraction!r}")
        return self


@dataclass(frozen=True)
class FaceBox:
    """A detected face: top-left ``x``, ``y`` and size ``w``, ``h`` in frame pixels (floats when
    ``downscale`` > 1), and ``score``: the number of raw cascade hits merged into the box (more
    = more confident; comparable only between detections with the same settings)."""

    x: float
    y: float
    w: float
    h: float
    score: float

    @property
    def centre(self) -> tuple[float, float]:
        """Box centre in frame pixel coordinates (pixel centres at integers)."""
        return self.x + self.w / 2.0 - 0.5, self.y + self.h / 2.0 - 0.5


def face_window(box, dx: float = None, dy: float = None, width: float = None) -> np.ndarray:
    """The window (2, 3) float64, canonical 112 px -> frame px (see ``align``) that the box
    implies: upright, centre = box centre + (dx, dy) box widths, canonical width = ``width``
    box widths.  Defaults are the measured ``BOX_TO_FRAME_*`` constants.  ``box`` is a
    ``FaceBox`` or any (x, y, w, h)."""
    dx = BOX_TO_FRAME_DX if dx is None else dx
    dy = BOX_TO_FRAME_DY if dy is None else dy
    width = BOX_TO_FRAME_WIDTH if width is None else width
    if isinstance(box, FaceBox):
        x, y, w, h = box.x, box.y, box.w, box.h
    else:
        try:
            x, y, w, h = (float(v) for v in box)
        except (TypeError, ValueError):
            raise DetectError(f"box must be a FaceBox or (x, y, w, h), got {box!r}") from None
    if not (w > 0 and h > 0 and all(math.isfinite(v) for v in (x, y, w, h))):
        raise DetectError(f"box must have positive finite size, got {(x, y, w, h)}")
    cx = x + w / 2.0 - 0.5 + dx * w
    cy = y + h / 2.0 - 0.5 + dy * w
    return window_from_params((cx, cy), width * w / FRAME_SIZE, 0.0)


#: Where cascades are looked for by file name: the pip wheels' ``cv2.data.haarcascades``, then the
#: folders of distribution packages (Debian/Ubuntu ``opencv-data``), whose cv2 has no ``cv2.data``.
SYSTEM_CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades",
                       "/usr/local/share/opencv4/haarcascades")


def cascade_dirs() -> list[str]:
    """Folders searched for a cascade given by file name, in order."""
    dirs = []
    data = getattr(cv2, "data", None)
    if data is not None and getattr(data, "haarcascades", None):
        dirs.append(data.haarcascades)
    return dirs + list(SYSTEM_CASCADE_DIRS)


def _cascade_path(name: str) -> str:
    if os.path.sep in name or os.path.isfile(name):
        return name
    for folder in cascade_dirs():
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return os.path.join(cascade_dirs()[0], name)


def _load_cascade(path: str):
    try:
        cascade = cv2.CascadeClassifier(path)
    except (cv2.error, SystemError) as exc:  # OpenCV raises on a malformed XML
        raise DetectError(f"cascade {path} could not be loaded: {str(exc).strip().splitlines()[-1]}") from None
    if cascade.empty():
        raise DetectError(f"cascade {path} could not be loaded (not an OpenCV cascade XML?)")
    return cascade


def to_grey(frame) -> np.ndarray:
    """uint8 (H, W) grey from a uint8 (H, W, 3) BGR, (H, W, 4) BGRA, (H, W, 1) or (H, W) frame."""
    if not isinstance(frame, np.ndarray):
        raise DetectError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise DetectError(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim in (2, 3) and (frame.shape[0] == 0 or frame.shape[1] == 0):
        raise DetectError(f"frame is empty: shape {frame.shape}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        grey = frame
    elif frame.ndim == 3 and frame.shape[2] == 3:
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        grey = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    else:
        raise DetectError(f"frame must be (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA, got shape {frame.shape}")
    return np.ascontiguousarray(grey)


class FaceDetector:
    """A loaded cascade with its settings.  ``detect(frame)`` -> boxes, best first.

    Not thread-safe (OpenCV's CascadeClassifier is not); make one per thread.
    """

    def __init__(self, settings: DetectorSettings | None = None, **overrides):
        settings = settings or DetectorSettings()
        if overrides:
            settings = replace(settings, **overrides)
        self.settings = settings.validated()
        self._clahe = None
        path = _cascade_path(self.settings.cascade)
        if not os.path.isfile(path):
            raise DetectError(f"cascade {self.settings.cascade!r} not found (looked in {cascade_dirs()})")
        self._cascade = _load_cascade(path)

    def detect(self, frame, downscale: float | None = None, min_size_px: float | None = None,
               max_size_px: float | None = None, pad: bool | None = None, known=()) -> list[FaceBox]:
        """Faces in ``frame`` (uint8 BGR/BGRA/grey, any size) as ``FaceBox``es in frame pixels,
        sorted by score (then size), best first.  DetectError for an unusable frame.

        ``downscale`` (>= 1) replaces ``settings.downscale`` for this frame, so one loaded cascade serves
        frames of every size (its working buffers follow the largest image it was given).  ``min_size_px`` /
        ``max_size_px`` (frame px) replace the settings' for this call: a search around a known face needs
        only the sizes near its own, which skips most pyramid levels.  ``pad``: False skips the padded search
        of ``settings.pad_fraction`` for this call (a region inside the frame, where the frame goes on).  ``known``
        (the faces the loop tracks) is accepted for the same call as ``BlazeFaceDetector.detect`` and not used."""
        s = self.settings
        if min_size_px is not None or max_size_px is not None:
            s = replace(s, min_size_px=max(int(round(min_size_px or s.min_size_px)), 1),
                        max_size_px=int(round(max_size_px if max_size_px is not None else s.max_size_px)))
        grey = to_grey(frame)
        f = s.downscale if downscale is None else float(downscale)
        if not (f >= 1.0 and math.isfinite(f)):
            raise DetectError(f"downscale must be >= 1, got {downscale!r}")
        if f > 1.0:
            size = (max(int(round(grey.shape[1] / f)), 1), max(int(round(grey.shape[0] / f)), 1))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
            fx, fy = frame.shape[1] / size[0], frame.shape[0] / size[1]
        else:
            fx = fy = 1.0
        grey = self._equalize(grey, equalize_mode(s.equalize))
        min_side = max(int(round(s.min_size_px / max(fx, fy))), 1)
        max_side = int(round(s.max_size_px / min(fx, fy))) if s.max_size_px else 0
        boxes = self._search(grey, s, min_side, max_side, 0, fx, fy) if min(grey.shape) >= min_side else []
        if s.pad_fraction > 0 and pad is not False:
            boxes += [b for b in self._padded_search(grey, s, min_side, max_side, fx, fy)
                      if all(iou(_xywh(b), _xywh(a)) < PAD_SAME_IOU for a in boxes)]
        boxes.sort(key=lambda b: (-b.score, -b.w))
        return boxes

    def detect_region(self, crop, downscale: float, min_size_px: float | None, max_size_px: float | None,
                      at_edge: bool) -> list[FaceBox]:
        """``detect`` on a region of a frame (``FaceModel.detect_region``), at the whole frame's ``downscale``; the
        padded search runs only where the region reaches the frame's edge (``at_edge``)."""
        return self.detect(crop, downscale, min_size_px, max_size_px, pad=at_edge)

    def _search(self, grey, s, min_side: int, max_side: int, offset: int, fx: float, fy: float) -> list[FaceBox]:
        """One cascade search of a grey image for boxes of ``min_side``..``max_side`` (0 = no limit) image px;
        boxes shifted by ``-offset`` image px (padding) and scaled by (fx, fy) to frame px."""
        rects, neighbours = self._cascade.detectMultiScale2(
            grey, scaleFactor=s.scale_factor, minNeighbors=s.min_neighbors,
            minSize=(min_side, min_side), maxSize=(max_side, max_side) if max_side else (0, 0),
        )
        return [
            FaceBox(float((x - offset) * fx), float((y - offset) * fy), float(w * fx), float(h * fy), float(n))
            for (x, y, w, h), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(neighbours).reshape(-1))
        ]

    def _padded_search(self, grey, s, min_side: int, max_side: int, fx: float, fy: float) -> list[FaceBox]:
        """The search for faces too large for the frame (``DetectorSettings.pad_fraction``)."""
        shorter = min(grey.shape)
        pad = int(round(s.pad_fraction * shorter))
        low = max(min_side, int(math.ceil(PAD_MIN_FACE * shorter)))
        if pad < 1 or (max_side and max_side < low):
            return []
        padded = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        return self._search(padded, s, low, max_side, pad, fx, fy)

    def _equalize(self, grey: np.ndarray, mode: str) -> np.ndarray:
        if mode == "hist":
            return cv2.equalizeHist(grey)
        if mode == "clahe":
            if self._clahe is None:
                self._clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(CLAHE_TILES, CLAHE_TILES))
            return self._clahe.apply(grey)
        return grey


def _xywh(box: FaceBox) -> tuple[float, float, float, float]:
    return box.x, box.y, box.w, box.h
