"""Synthetic camera scenes: face photos moving, turning and changing light over a background.

One job: make deterministic BGR frames with known faces in them, for the virtual board's "synthetic"
camera, the tests and the benchmark, without any data outside the installed packages.  The default face
is the portrait matplotlib ships (``grace_hopper.jpg``), found on disk without importing matplotlib.

Frames are uint8 (H, W, 3) BGR, as OpenCV's VideoCapture gives them.  numpy + OpenCV only.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from .errors import CameraError

#: Where the cascade finds Grace Hopper's face in grace_hopper.jpg (x, y, w, h); the crop around it is
#: 1.6 box widths, the framing of the LFW crops.
GRACE_HOPPER_BOX = (155, 105, 222, 222)
CROP_MARGIN = 1.6


def grace_hopper_path() -> Path:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        raise CameraError("bad_source", "the synthetic camera needs matplotlib's sample portrait "
                                        "(grace_hopper.jpg): pip install matplotlib, or give --video FILE")
    path = Path(spec.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        raise CameraError("bad_source", f"{path}: matplotlib's sample portrait is missing")
    return path


def crop_around(image: np.ndarray, box, margin: float = CROP_MARGIN) -> np.ndarray:
    """A square crop ``margin`` box widths wide around ``box`` (x, y, w, h), edge-padded where it overhangs."""
    x, y, w, h = box
    side = int(round(max(w, h) * margin))
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    pad = side
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return padded[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side].copy()


def grace_hopper_face() -> np.ndarray:
    """Grace Hopper's face as a square BGR crop (uint8)."""
    image = cv2.imread(str(grace_hopper_path()), cv2.IMREAD_COLOR)
    if image is None:
        raise CameraError("bad_source", f"{grace_hopper_path()}: OpenCV cannot decode it")
    return crop_around(image, GRACE_HOPPER_BOX)


@dataclass(frozen=True)
class Actor:
    """One face in a scene: ``face`` BGR square crop; it enters at ``start`` and leaves after ``stop``
    (frame indices, stop exclusive; None = never), moving from ``from_xy`` to ``to_xy`` (face centre as
    fractions of the frame) while its side goes from ``size_px[0]`` to ``size_px[1]``, turning up to
    ``max_angle_deg`` and with brightness varying by up to ``light`` (0..1)."""

    face: np.ndarray
    start: int = 0
    stop: int | None = None
    from_xy: tuple[float, float] = (0.3, 0.5)
    to_xy: tuple[float, float] = (0.7, 0.5)
    size_px: tuple[int, int] = (160, 160)
    max_angle_deg: float = 8.0
    light: float = 0.15


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A fixed textured background (smooth gradient + low-amplitude noise), BGR uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 90 + 40 * np.sin(xx / width * math.pi) + 30 * (yy / height)
    noise = cv2.GaussianBlur(rng.normal(0, 12, (height, width)).astype(np.float32), (0, 0), 3)
    grey = np.clip(base + noise, 0, 255)
    return np.dstack([grey * 0.9, grey, grey * 1.05]).clip(0, 255).astype(np.uint8)


def render(actors: Sequence[Actor], frame_index: int, n_frames: int, width: int = 640, height: int = 480,
           base: np.ndarray | None = None) -> tuple[np.ndarray, list[tuple[int, tuple[float, float, float, float]]]]:
    """Frame ``frame_index`` of a scene ``n_frames`` long: (BGR frame, [(actor index, (x, y, w, h) of the
    pasted face square)])."""
    frame = (base if base is not None else background(width, height)).copy()
    placed = []
    for i, actor in enumerate(actors):
        stop = n_frames if actor.stop is None else actor.stop
        if not actor.start <= frame_index < stop:
            continue
        u = (frame_index - actor.start) / max(stop - actor.start - 1, 1)
        cx = (actor.from_xy[0] + u * (actor.to_xy[0] - actor.from_xy[0])) * width
        cy = (actor.from_xy[1] + u * (actor.to_xy[1] - actor.from_xy[1])) * height
        side = int(round(actor.size_px[0] + u * (actor.size_px[1] - actor.size_px[0])))
        angle = actor.max_angle_deg * math.sin(2 * math.pi * u)
        gain = 1.0 + actor.light * math.sin(2 * math.pi * u + 1.0)
        face = cv2.resize(actor.face, (side, side), interpolation=cv2.INTER_AREA)
        rot = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle, 1.0)
        face = cv2.warpAffine(face, rot, (side, side), borderMode=cv2.BORDER_REFLECT)
        face = np.clip(face.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        fx0, fy0 = max(x0, 0), max(y0, 0)
        fx1, fy1 = min(x0 + side, width), min(y0 + side, height)
        if fx1 > fx0 and fy1 > fy0:
            frame[fy0:fy1, fx0:fx1] = face[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
            placed.append((i, (float(x0), float(y0), float(side), float(side))))
    return frame, placed


def scene_frames(actors: Sequence[Actor], n_frames: int, width: int = 640, height: int = 480,
                 loop: bool = False) -> Iterator[np.ndarray]:
    """The scene's frames in order (forever when ``loop``)."""
    base = background(width, height)
    while True:
        for k in range(n_frames):
            yield render(actors, k, n_frames, width, height, base)[0]
        if not loop:
            return


def portrait_scene(width: int = 640, height: int = 480, n_frames: int = 150) -> list[Actor]:
    """The virtual board's default scene: Grace Hopper walks in from the left, stays, and leaves."""
    face = grace_hopper_face()
    return [Actor(face, start=10, stop=n_frames - 20, from_xy=(0.25, 0.45), to_xy=(0.7, 0.55),
                  size_px=(150, 190))]


def write_video(path: str | Path, frames: Iterator[np.ndarray], fps: float = 30.0) -> Path:
    """Write BGR frames to a video file (MJPG in .avi: every OpenCV build can write and read it)."""
    path = Path(path)
    writer = None
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
                if not writer.isOpened():
                    raise CameraError("bad_source", f"{path}: OpenCV cannot write this video")
            writer.write(frame)
    finally:
        if writer is not None:
            writer.release()
    return path
