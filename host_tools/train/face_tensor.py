"""Every training crop decoded once into one uint8 array, so a training step is an index, not a JPEG decode.

One job: ``decode_all(records) -> uint8 (N, 112, 112, 3)`` NHWC RGB, decoded by a thread pool (OpenCV releases
the GIL while decoding).  33,706 CelebA crops take 1.27 GB.  No torch import.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import data as D


def decode_all(records: D.FaceRecords, extra_images=(), threads: int = 2) -> np.ndarray:
    """uint8 (len(records) + len(extra_images), 112, 112, 3): the records' crops, then ``extra_images`` as given."""
    n = len(records)
    out = np.empty((n + len(extra_images), D.CROP_SIZE, D.CROP_SIZE, 3), dtype=np.uint8)

    def fill(block: range) -> None:
        for i in block:
            out[i] = records.decode(i)

    step = 512
    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(fill, [range(s, min(n, s + step)) for s in range(0, n, step)]))
    for j, img in enumerate(extra_images):
        out[n + j] = img
    return out
