"""Faces cut from a video the way the board cuts them: Haar detection, int8 alignment net, 112x112 RGB crop.

One job: turn a video file into ``(key, crop)`` items for the distillation teacher and the student (the
video's faces carry no identity labels; they only feed the relational term).  Keys are
``video:<file name>:<frame index>:<face index>``, so the teacher cache and the trainer agree on them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError


def video_face_crops(video: str | Path, bundle_path: str | Path, stride: int = 3, board_path: str | Path | None = None,
                     progress: bool = False) -> list[tuple[str, np.ndarray]]:
    """Every detected face of every ``stride``-th frame as (key, uint8 (112, 112, 3) RGB), in frame order."""
    import cv2
    from tqdm import tqdm

    from wearface.firmware.board import boards_dir, load_board
    from wearface.firmware.bundle import verify_bundle
    from wearface.firmware.facemodel import FaceModel

    video = Path(video)
    if stride < 1:
        raise DataError(f"video stride must be >= 1, got {stride}")
    if not video.is_file():
        raise DataError(f"{video}: no such video file")
    board = load_board(board_path or boards_dir() / "virtual.toml")
    bundle = verify_bundle(Path(bundle_path).read_bytes(), list(board.public_keys), board.compatible, name=str(bundle_path))
    model = FaceModel(board, bundle)
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise DataError(f"{video}: OpenCV cannot open it as a video")
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    out: list[tuple[str, np.ndarray]] = []
    try:
        for index in tqdm(range(n) if n else iter(int, 1), desc=f"faces in {video.name}", disable=not progress, unit="frame"):
            ok, frame = cap.read()
            if not ok:
                break
            if index % stride:
                continue
            for j, box in enumerate(model.detect(frame)):
                crop, _ = model.align(frame, box)
                out.append((f"video:{video.name}:{index}:{j}", crop))
    finally:
        cap.release()
    if not out:
        raise DataError(f"{video}: no face detected in any of its frames")
    return out


def video_face_items(video: str | Path, bundle_path: str | Path, stride: int = 3,
                     progress: bool = False) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """``(key, load_image)`` items (as ``teacher.compute_descriptors`` takes) for the faces of ``video``."""
    return [(k, (lambda c=c: c)) for k, c in video_face_crops(video, bundle_path, stride, progress=progress)]
