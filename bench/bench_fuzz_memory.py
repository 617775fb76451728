"""Benchmark (not a test): resident memory of the board's detect and enrolment path under frames of ever new sizes.

The issue-15 finding: ``FaceModel`` kept one Haar cascade per frame size, so a stream of odd-sized frames (a
hostile host, a broken camera) grew the process without bound.  This runs the firmware's own ``FaceModel``
(a random signed test bundle on ``boards/virtual.toml``) in one process:

* ``frames``: ``--frames`` fuzzed frames (uint8 noise, each of a new random size, sides 1..``--max-side`` px,
  BGR, grey or BGRA) through ``FaceModel.detect``, the loop's first step;
* ``enrolments``: ``--enrolments`` enrolment images (``grace_hopper.jpg`` pasted into a canvas of a new random
  size each time) through ``BoardApp``'s enrolment steps (detect, align, embed).

Memory is the process's own ``/proc/self/status``: ``VmRSS`` (resident now) and ``VmHWM`` (peak resident), in MB,
sampled every ``--every`` frames.  One core, one thread per pool, like ``bench_pipeline.py``.

    python3 bench/bench_fuzz_memory.py [--frames 2000] [--enrolments 200] [--max-side 1280] [--seed 0]

Prints one Markdown row per phase: RSS after warm-up, RSS at the end, peak, growth per 1000 frames over the
second half (a bounded cache grows ~0 there).
"""
from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

MB = 1024.0


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``) in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / MB
    return float("nan")


def fuzzed_frame(rng: np.random.Generator, max_side: int) -> np.ndarray:
    """uint8 noise of a random size (1..max_side per side) and layout (grey, BGR, BGRA)."""
    h, w = (int(v) for v in rng.integers(1, max_side + 1, 2))
    channels = int(rng.choice([1, 3, 4]))
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def run_phase(name: str, steps, n: int, every: int) -> dict:
    samples = []
    for i in range(n):
        steps(i)
        if (i + 1) % every == 0 or i == n - 1:
            samples.append((i + 1, status_mb("VmRSS")))
            # one line per sample, flushed: a long run that is stopped early still leaves its curve
            print(f"  {name}: {i + 1} RSS {samples[-1][1]:.0f} MB peak {status_mb('VmHWM'):.0f} MB", flush=True)
    half = [s for s in samples if s[0] > n // 2]
    growth = (1000.0 * (half[-1][1] - half[0][1]) / max(half[-1][0] - half[0][0], 1)) if len(half) > 1 else 0.0
    return {"phase": name, "n": n, "first_mb": samples[0][1], "end_mb": samples[-1][1],
            "peak_mb": status_mb("VmHWM"), "growth_mb_per_1000": growth}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--enrolments", type=int, default=200)
    parser.add_argument("--max-side", type=int, default=1280)
    parser.add_argument("--every", type=int, default=100, help="sample RSS every this many steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import cv2

    from wearface.firmware.board import boards_dir, parse_board
    from wearface.firmware.bundle import read_bundle
    from wearface.firmware.errors import FirmwareError
    from wearface.firmware.facemodel import FaceModel
    from wearface.firmware.scene import grace_hopper_path
    from wearface.host_tools.bundle.bundle_build import build_test_bundle

    board = parse_board((boards_dir() / "virtual.toml").read_text(), boards_dir() / "virtual.toml")
    model = FaceModel(board, read_bundle(build_test_bundle(seed=0)))
    rng = np.random.default_rng(args.seed)
    start_mb = status_mb("VmRSS")

    def frame_step(i):
        try:
            model.detect(fuzzed_frame(rng, args.max_side))
        except FirmwareError:
            pass  # a frame the detector refuses (e.g. too small) is fine; memory is what is measured

    photo = cv2.imread(str(grace_hopper_path()))

    def enrol_step(i):
        ph, pw = photo.shape[:2]
        h, w = ph + int(rng.integers(0, 800)), pw + int(rng.integers(0, 800))
        canvas = np.full((h, w, 3), 128, np.uint8)
        y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        canvas[y:y + ph, x:x + pw] = photo
        boxes = model.detect(canvas)
        if boxes:
            b = boxes[0]
            crop, _ = model.align(canvas, (b.x, b.y, b.w, b.h))
            model.embed(crop)

    rows = [run_phase("fuzzed frames", frame_step, args.frames, args.every),
            run_phase("odd-sized enrolments", enrol_step, args.enrolments, max(args.every // 10, 1))]
    print(f"RSS after loading the model: {start_mb:.0f} MB (python {sys.version.split()[0]}, "
          f"max side {args.max_side} px, seed {args.seed})")
    print("| phase | n | RSS at first sample | RSS at end | peak RSS (VmHWM) | growth over 2nd half, MB/1000 |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['phase']} | {r['n']} | {r['first_mb']:.0f} MB | {r['end_mb']:.0f} MB | {r['peak_mb']:.0f} MB "
              f"| {r['growth_mb_per_1000']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
