"""Benchmark (not a test): the recognition loop's fps and per-stage latency on one core.

Runs the firmware's own Pipeline (detect -> track -> align -> embed -> match) with the real int8 runtime and
a bundle (default ``models/default.wfb``, model A; weights do not change the speed), on:

* ``clip``: the real 640x360 clip ``../shared/data/video/short_hamilton_clip.mp4`` (skipped when absent),
* ``synthetic-1`` / ``synthetic-4``: synthesized 640x480 frames with 1 and 4 faces (matplotlib's portrait),

each twice: ``tracked`` (the firmware's policy: a track is embedded until it has ``min_embeddings``
samples, then every ``reembed_every_frames`` frames) and ``every-frame`` (every face embedded in every
frame: what the loop would cost without tracking).  One core: the process pins itself to CPU 0 and sets
every thread pool (numba, OpenBLAS, OpenMP, OpenCV) to one thread before importing them.

    python3 bench/bench_pipeline.py [--data ../shared/data] [--frames 150] [--bundle models/default.wfb]

Prints a Markdown table.  Times are the loop thread's **CPU time** (``time.thread_time``; every pool has one
thread, so that is all the work), which stays meaningful on a shared machine: fps (CPU) = frames / CPU
seconds of decoding + the loop; fps (wall) = frames / wall seconds (depends on the machine's load, printed
beside it); decode = reading a frame (video decoding or synthesis); per-stage means in ms per call (detect per
frame; align, embed, match per embedded face; frame = the whole loop step), p95 of the frame step, tracks
and embeds per frame.
"""
from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "threads;1")  # decode on the calling thread
try:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
except (AttributeError, OSError):
    pass

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)

from wearface.firmware import events as ev  # noqa: E402
from wearface.firmware import scene  # noqa: E402
from wearface.firmware.board import boards_dir, load_board  # noqa: E402
from wearface.firmware.bundle import verify_bundle  # noqa: E402
from wearface.firmware.camera import IterableSource, VideoCaptureSource  # noqa: E402
from wearface.firmware.facemodel import FaceModel  # noqa: E402
from wearface.firmware.gallery import Gallery  # noqa: E402
from wearface.firmware.pipeline import Pipeline  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def synthetic_frames(n_faces: int, n_frames: int) -> list:
    face = scene.grace_hopper_face()
    spots = [(0.2, 0.3), (0.75, 0.3), (0.25, 0.75), (0.75, 0.72)][:n_faces]
    actors = [scene.Actor(face, start=0, stop=None, from_xy=(x - 0.03, y), to_xy=(x + 0.03, y),
                          size_px=(140, 150), max_angle_deg=5.0) for x, y in spots]
    return list(scene.scene_frames(actors, n_frames, 640, 480))


def run_case(board, bundle, gallery, source, every_frame: bool) -> dict:
    if every_frame:  # no tracking benefit: every face is embedded in every frame
        tracker = dataclasses.replace(board.tracker, min_embeddings=10**6, max_embeds_per_frame=64)
        board = dataclasses.replace(board, tracker=tracker)
    model = FaceModel(board, bundle)
    bus = ev.EventBus()
    pipeline = Pipeline(board, model, gallery, bus, source)
    # CPU time of this (only) thread: the machine may be shared, CPU time is what the work itself costs
    pipeline.clock = time.thread_time
    faces = 0
    t0, c0, read_s = time.perf_counter(), time.thread_time(), 0.0
    while True:
        r0 = time.thread_time()
        frame = source.read()
        read_s += time.thread_time() - r0
        if frame is None:
            break
        pipeline.step(frame)
        faces += len(pipeline.tracker.tracks)
    wall_s = time.perf_counter() - t0
    cpu_s = time.thread_time() - c0
    mean, p95 = pipeline.times.summary()
    return {"frames": pipeline.frame_index, "fps": pipeline.frame_index / cpu_s,
            "fps_wall": pipeline.frame_index / wall_s, "decode_ms": read_s / max(pipeline.frame_index, 1) * 1e3,
            "mean": mean, "p95": p95,
            "embeds_per_frame": pipeline.embeds / max(pipeline.frame_index, 1),
            "faces_per_frame": faces / max(pipeline.frame_index, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--frames", type=int, default=150, help="frames per synthetic case")
    parser.add_argument("--bundle", default=str(REPO / "models" / "default.wfb"))
    parser.add_argument("--board", default=str(boards_dir() / "virtual.toml"))
    args = parser.parse_args()

    board = load_board(args.board)
    bundle = verify_bundle(Path(args.bundle).read_bytes(), list(board.public_keys), board.compatible, 0)
    gallery = Gallery(Path("/tmp") / f"bench_pipeline_{os.getpid()}.sqlite", str(bundle.embedding_space),
                      float(bundle.threshold))
    rng = np.random.default_rng(0)
    for i in range(20):  # a gallery of 20 people x 5 embeddings: match cost as on a real board
        v = rng.normal(size=(5, 128)).astype(np.float32)
        gallery.add(f"person{i:02d}", v / np.linalg.norm(v, axis=1, keepdims=True))

    cases = []
    clip = Path(args.data) / "video" / "short_hamilton_clip.mp4"
    if clip.is_file():
        cases.append(("clip 640x360 (275 frames)", lambda: VideoCaptureSource(str(clip), loop=False)))
    else:
        print(f"(skipping the real clip: {clip} not found)")
    for n in (1, 4):
        frames = synthetic_frames(n, args.frames)
        cases.append((f"synthetic 640x480, {n} face{'s' if n > 1 else ''}", lambda f=frames: IterableSource(f)))

    print(f"model {bundle.embed_net.spec.name}, bundle {bundle.model_version}, board {board.name}, "
          f"detector max_side_px={board.detector.max_side_px} scale_factor={board.detector.scale_factor}, "
          f"{platform.machine()} {platform.processor() or ''}, 1 core (affinity {sorted(os.sched_getaffinity(0))})")
    print()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print()
    print("| input | policy | fps (CPU) | fps (wall) | decode ms | detect ms | align ms | embed ms | match ms | "
          "frame ms | frame p95 ms | tracks/frame | embeds/frame |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, make_source in cases:
        for every_frame in (False, True):
            r = run_case(board, bundle, gallery, make_source(), every_frame)
            m = r["mean"]
            fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
            print(f"| {name} | {'every frame' if every_frame else 'tracked'} | {r['fps']:.1f} | {r['fps_wall']:.1f} | "
                  f"{r['decode_ms']:.1f} | {fmt(m['detect'])} | {fmt(m['align'])} | {fmt(m['embed'])} | "
                  f"{fmt(m['match'])} | {fmt(m['frame'])} | {fmt(r['p95']['frame'])} | {r['faces_per_frame']:.2f} | "
                  f"{r['embeds_per_frame']:.2f} |", flush=True)
    gallery.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(gallery.path) + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
