"""Checks that run *inside* the emulated aarch64 python (started by the tests in this folder).

Usage: ``<userland>/bin/python3 tests/arm64/board_side.py CHECK ARGS...``; prints one JSON line last.
Also importable on the host, so the same code computes the x86 side of a comparison.
Imports the board-side packages only (numpy, numba, wearface.kernels, wearface.firmware).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np


def embeddings_int8(qnet, crops_uint8: np.ndarray, backends) -> dict:
    """{backend: int8 (N, D) embeddings} of ``crops_uint8`` (N, H, W, 3) uint8 RGB through each runtime backend."""
    from wearface.kernels.runtime import Int8Runtime

    out = {}
    for backend in backends:
        runtime = Int8Runtime(qnet, backend)
        out[backend] = np.stack([runtime.run_int8(crop) for crop in crops_uint8]).astype(np.int8)
    return out


def alignment_crops(frames_path: str) -> np.ndarray:
    """(N, 112, 112, 3) uint8 embedding inputs cut by the firmware's alignment from fixed frames and windows:
    faces smaller and larger than the crop (the larger ones take the INTER_AREA pre-shrink)."""
    from wearface.firmware import align as geo

    frames = np.load(frames_path)
    crops = []
    for frame in frames:
        for scale, angle in ((0.8, 0.0), (1.7, 0.2), (2.9, -0.35)):
            window = geo.window_from_params((frame.shape[1] / 2 + 3.3, frame.shape[0] / 2 - 1.7), scale, angle)
            crops.append(geo.embedding_input(frame, window))
    return np.stack(crops)


#: boxes kept per frame in ``blazeface_boxes`` (rows past a frame's count are NaN)
MAX_BOXES = 8


def blazeface_boxes(frames_path: str) -> np.ndarray:
    """(N, MAX_BOXES, 5) float64: the BlazeFace detector's boxes (x, y, w, h, score; frame px) in each frame, with
    the shipped boards' nets (full range, the short-range fallback) and the short-range region net on each frame's
    centre half.  Float nets run by OpenCV's DNN module: compared across ISAs with a tolerance, not bit for bit."""
    from wearface.firmware.blazeface import BlazeFaceDetector

    detector = BlazeFaceDetector("full_range", "short_range", fallback_net="short_range")
    frames = np.load(frames_path)
    out = np.full((len(frames), MAX_BOXES, 5), np.nan)
    for i, frame in enumerate(frames):
        h, w = frame.shape[:2]
        boxes = detector.detect(frame)
        boxes += detector.detect(frame[h // 4:3 * h // 4, w // 4:3 * w // 4], region=True)
        for j, b in enumerate(boxes[:MAX_BOXES]):
            out[i, j] = (b.x, b.y, b.w, b.h, b.score)
    return out


def cross_isa(bundle_paths: str, board_path: str, crops_path: str, frames_path: str, out_path: str) -> dict:
    """Verify each bundle (``bundle_paths``: comma-separated) as the board does (signature, compatible, golden
    self-test), then embed the crops with each; results saved as ``<bundle index>:<backend>``."""
    from wearface.firmware.board import load_board
    from wearface.firmware.bundle import verify_bundle
    from wearface.kernels.runtime import BACKENDS

    backends = list(BACKENDS)  # as tests/arm64/test_cross_isa.py::CROSS_ISA_BACKENDS
    board = load_board(board_path)
    crops = np.load(crops_path)
    results, report = {}, {"self_test_s": [], "embedding_spaces": []}
    for index, path in enumerate(bundle_paths.split(",")):
        start = time.perf_counter()
        bundle = verify_bundle(open(path, "rb").read(), board.public_keys, board.compatible)
        report["self_test_s"].append(round(time.perf_counter() - start, 2))
        report["embedding_spaces"].append(bundle.embedding_space)
        for backend, emb in embeddings_int8(bundle.embed_net, crops, backends).items():
            results[f"{index}:{backend}"] = emb
    np.savez(out_path, alignment_crops=alignment_crops(frames_path), blazeface_boxes=blazeface_boxes(frames_path),
             **results)
    return report


def features() -> dict:
    from wearface.kernels import cpu_features

    f = cpu_features.detect()
    return {"machine": f.machine, "hwcap": f.hwcap, "dotprod": f.arm_dotprod, "flags": sorted(f.flags)}


CHECKS = {"cross-isa": cross_isa, "features": features}


def main(argv: list[str]) -> int:
    report = CHECKS[argv[0]](*argv[1:])
    report.update(machine=platform.machine(), qemu_cpu=os.environ.get("QEMU_CPU"),
                  numba_cpu=os.environ.get("NUMBA_CPU_NAME"))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
