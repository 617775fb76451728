"""One loaded bundle as the three steps of recognition: detect, align, embed.

One job: glue the geometry (``detect.py``, ``align.py``) to the int8 nets of a verified bundle run by
``wearface.kernels.runtime``.  For a face box in a BGR frame:

    window0 = face_window(box)                     # where the canonical face frame lies, from the box
    a = alignment_input(frame, window0)            # uint8 (50, 50, 3) RGB
    correction = align_net(a)                      # 3 floats: dx, dy, angle_rad
    window = apply_correction(window0, correction)
    crop = embedding_input(frame, window)          # uint8 (112, 112, 3) RGB
    embedding = embed_net(crop)                    # float32 (128,), L2-normalised
                                                   # (+ embed_net(mirrored crop), renormalised, for a bundle
                                                   #  with ``mirror_average``)

Not thread-safe (the runtimes and the cascade own scratch buffers): the app holds one lock around it.
Must not import torch.
"""
from __future__ import annotations

import math

import numpy as np

from . import align as geo
from .detect import DetectorSettings, FaceBox, FaceDetector, face_window


def frame_downscale(config, frame_shape) -> float:
    """How much a frame of ``frame_shape`` (H, W, ...) is shrunk before detection (>= 1): frames whose longer
    side exceeds the board's ``detector.max_side_px`` are detected on a copy of that longer side."""
    longer = max(frame_shape[0], frame_shape[1])
    return max(1.0, longer / config.max_side_px) if config.max_side_px else 1.0


def make_detector(config):
    """The board's ``[detector]`` as a loaded detector: ``FaceDetector`` (Haar) or ``BlazeFaceDetector``; both
    answer ``detect(frame, downscale, ...)`` and ``detect_region(crop, downscale, min_size_px, max_size_px, at_edge)``
    with ``FaceBox``es in the cascade's box convention."""
    if config.kind == "blazeface":
        from .blazeface import BlazeFaceDetector

        return BlazeFaceDetector(config.net, config.region_net, config.min_score or None,
                                 min_size_px=config.min_size_px, max_faces=config.max_faces,
                                 fallback_net=config.fallback_net, tiles=config.tiles,
                                 propose_score=config.propose_score, confirm_score=config.confirm_score)
    return FaceDetector(detector_settings(config, (1, 1)))


def detector_settings(config, frame_shape) -> DetectorSettings:
    """The board's ``[detector]`` as ``DetectorSettings`` for frames of ``frame_shape`` (see ``frame_downscale``)."""
    return DetectorSettings(cascade=config.cascade, scale_factor=config.scale_factor,
                            min_neighbors=config.min_neighbors, min_size_px=config.min_size_px,
                            downscale=frame_downscale(config, frame_shape),
                            equalize=config.equalize, pad_fraction=config.pad_fraction)


class FaceModel:
    """detect / align / embed for one bundle on one board.  ``runtime_backend``: which kernels run.  ``detector``:
    an already loaded ``make_detector(board.detector)`` (the app loads it once at boot, apart from any slot)."""

    def __init__(self, board, bundle, detector=None):
        from wearface.kernels.runtime import Int8Runtime

        self.board = board
        self.bundle = bundle
        self.align_runtime = Int8Runtime(bundle.align_net)
        self.embed_runtime = Int8Runtime(bundle.embed_net)
        # which kernels run: the runtime's instruction-set path where it names one, else its backend
        self.runtime_backend = str(getattr(self.embed_runtime, "path", None)
                                   or getattr(self.embed_runtime, "backend", type(self.embed_runtime).__name__))
        # one cascade for every frame size: the downscale is chosen per frame (``frame_downscale``).  One per
        # size, as before, kept a cascade and its working buffers for each size ever seen: 247 -> 980 MB after
        # 200 enrolment images of 200 sizes (docs/RELIABILITY.md)
        self.detector = make_detector(board.detector) if detector is None else detector
        # the first run of a runtime allocates and may compile; do it at boot, not in the first frame
        self.align_runtime.run(np.zeros(bundle.align_net.spec.input_shape, np.uint8))
        self.embed_runtime.run(np.zeros(bundle.embed_net.spec.input_shape, np.uint8))

    def detect(self, frame_bgr: np.ndarray, known=()) -> list[FaceBox]:
        """Face boxes in a BGR frame, best first, at most ``detector.max_faces``.  ``known``: boxes (x, y, w, h frame
        px) of faces the loop already tracks (a detector that proposes faces it is unsure of takes a proposal there
        as that face: ``blazeface.BlazeFaceDetector``; the cascade ignores them)."""
        downscale = frame_downscale(self.board.detector, np.shape(frame_bgr)) if np.ndim(frame_bgr) >= 2 else 1.0
        return self.detector.detect(frame_bgr, downscale, known=known)[: self.board.detector.max_faces]

    def detect_region(self, frame_bgr: np.ndarray, region, min_size_px: float | None = None,
                      max_size_px: float | None = None) -> list[FaceBox]:
        """Face boxes (frame px) inside ``region`` (x0, y0, x1, y1 ints, frame px) of a BGR frame, best first.
        The region is searched at the whole frame's downscale, so it finds the faces a full search would; the
        padded search (``detector.pad_fraction``) runs only where the region reaches the frame's edge."""
        x0, y0, x1, y1 = region
        h, w = np.shape(frame_bgr)[:2]
        downscale = frame_downscale(self.board.detector, np.shape(frame_bgr))
        at_edge = x0 <= 0 or y0 <= 0 or x1 >= w or y1 >= h
        boxes = self.detector.detect_region(frame_bgr[y0:y1, x0:x1], downscale, min_size_px, max_size_px, at_edge)
        return [FaceBox(b.x + x0, b.y + y0, b.w, b.h, b.score) for b in boxes][: self.board.detector.max_faces]

    def correct(self, frame_bgr: np.ndarray, window0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One alignment-net pass: (view uint8 (50, 50, 3) RGB, correction float64 [dx, dy, angle_rad],
        corrected window (2, 3)) for a window (2, 3) in a BGR frame."""
        view = geo.alignment_input(frame_bgr, window0)
        correction = np.asarray(self.align_runtime.run(view), np.float64)
        if correction.shape != (3,) or not np.all(np.isfinite(correction)):
            correction = np.zeros(3)  # a net that says nothing usable: keep the given window
        correction[2] = math.remainder(correction[2], 2 * math.pi)
        return view, correction, geo.apply_correction(window0, correction)

    def align(self, frame_bgr: np.ndarray, box, details: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(embedding input uint8 (112, 112, 3) RGB, corrected window (2, 3)) for one box (x, y, w, h)."""
        return self.align_window(frame_bgr, face_window(box), details)

    def align_window(self, frame_bgr: np.ndarray, window0: np.ndarray, details: dict | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """As ``align``, starting from a window (2, 3) instead of a box (e.g. an uploaded face crop).
        ``details``: if a dict, receives ``view`` (the alignment net's uint8 (50, 50, 3) RGB input) and
        ``correction`` ([dx, dy, angle_rad] as applied) for explaining a decision."""
        view, correction, window = self.correct(frame_bgr, window0)
        if details is not None:
            details["view"], details["correction"] = view, correction.astype(np.float32)
        return geo.embedding_input(frame_bgr, window), window

    def embed(self, crop_rgb: np.ndarray) -> np.ndarray:
        """float32 (128,) L2-normalised embedding of a uint8 (112, 112, 3) RGB crop.  With the bundle's
        ``mirror_average`` the sum of the crop's and its left-right mirror image's, renormalised: two net runs."""
        vector = np.asarray(self.embed_runtime.run(crop_rgb), np.float32)
        if not self.bundle.mirror_average:
            return vector
        vector = vector + np.asarray(self.embed_runtime.run(np.ascontiguousarray(crop_rgb[:, ::-1])), np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)
