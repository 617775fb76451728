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
from wearface.firmware.tracker import iou  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def synthetic_frames(n_faces: int, n_frames: int) -> list:
    face = scene.grace_hopper_face()
    spots = [(0.2, 0.3), (0.75, 0.3), (0.25, 0.75), (0.75, 0.72)][:n_faces]
    actors = [scene.Actor(face, start=0, stop=None, from_xy=(x - 0.03, y), to_xy=(x + 0.03, y),
                          size_px=(140, 150), max_angle_deg=5.0) for x, y in spots]
    return list(scene.scene_frames(actors, n_frames, 640, 480))


def today(board):
    """The board with today's policy before following (issue 16): the whole frame searched every frame."""
    return dataclasses.replace(board, detector=dataclasses.replace(board.detector, every_frames=1),
                               follow=dataclasses.replace(board.follow, enabled=False))


def run_case(board, bundle, gallery, source) -> dict:
    model = FaceModel(board, bundle)
    bus = ev.EventBus()
    pipeline = Pipeline(board, model, gallery, bus, source)
    # CPU time of this (only) thread: the machine may be shared, CPU time is what the work itself costs
    pipeline.clock = time.thread_time
    faces, per_frame, tracks_seen = 0, [], {}
    t0, c0, read_s = time.perf_counter(), time.thread_time(), 0.0
    while True:
        r0 = time.thread_time()
        frame = source.read()
        read_s += time.thread_time() - r0
        if frame is None:
            break
        pipeline.step(frame)
        faces += len(pipeline.tracker.tracks)
        # who the loop has named where, this frame: (box, name) of every track with a published name
        per_frame.append([(tr.box, tr.decision.name) for tr in pipeline.tracker.tracks.values()
                          if tr.decided and tr.decision is not None and tr.decision.name is not None])
        for tr in pipeline.tracker.tracks.values():
            if len(tr.embeddings) >= board.tracker.min_embeddings:
                tracks_seen[tr.id] = tr.mean_embedding()
    wall_s = time.perf_counter() - t0
    cpu_s = time.thread_time() - c0
    n = max(pipeline.frame_index, 1)
    mean, p95 = pipeline.times.summary()
    stats = pipeline.stats()
    return {"frames": pipeline.frame_index, "fps": pipeline.frame_index / cpu_s,
            "fps_wall": pipeline.frame_index / wall_s, "decode_ms": read_s / n * 1e3,
            "mean": mean, "p95": p95, "per_frame_ms": {s: v / n for s, v in pipeline.times.totals.items()},
            "embeds_per_frame": pipeline.embeds / n, "faces_per_frame": faces / n,
            "named": per_frame, "named_per_frame": sum(len(f) for f in per_frame) / n,
            "full_per_frame": stats["searches_full"] / n, "regions_per_frame": stats["searches_region"] / n,
            "followed": stats["tracks_followed"], "detected": stats["tracks_detected"],
            "appear_latency": stats["appear_latency_frames"], "track_means": list(tracks_seen.values())}


def same_names(reference: list, other: list) -> tuple[float, int]:
    """(share of the reference's named faces that ``other`` names the same in the same frame (IoU >= 0.3),
    faces ``other`` names differently)."""
    total = same = different = 0
    for ref, oth in zip(reference, other):
        for box, name in ref:
            total += 1
            names = [n for b, n in oth if iou(box, b) >= 0.3]
            same += name in names
            different += bool(names) and name not in names
    return (same / total if total else float("nan")), different


def enrol_tracks(gallery, means: list, threshold: float) -> int:
    """Enrol the people a first pass saw (track means, merged when nearer than ``threshold``) as clip00, clip01...:
    then "named the same" compares real decisions, not "unknown" everywhere."""
    people: list = []
    for m in means:
        for p in people:
            if float(np.linalg.norm(p[0] - m)) < threshold:
                p.append(m)
                break
        else:
            people.append([m])
    for i, p in enumerate(people):
        gallery.add(f"seen{i:02d}", np.stack(p))
    return len(people)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--frames", type=int, default=150, help="frames per synthetic case")
    parser.add_argument("--bundle", default=str(REPO / "models" / "default.wfb"))
    parser.add_argument("--board", default=str(boards_dir() / "virtual.toml"))
    parser.add_argument("--cases", default="clip,synthetic-1,synthetic-4", help="comma-separated: clip, synthetic-N")
    args = parser.parse_args()

    board = load_board(args.board)
    bundle = verify_bundle(Path(args.bundle).read_bytes(), list(board.public_keys), board.compatible, 0)
    cases = []
    clip = Path(args.data) / "video" / "short_hamilton_clip.mp4"
    for case in args.cases.split(","):
        if case == "clip":
            if clip.is_file():
                cases.append(("clip 640x360 (275 frames)", lambda: VideoCaptureSource(str(clip), loop=False)))
            else:
                print(f"(skipping the real clip: {clip} not found)")
        else:
            n = int(case.split("-")[1])
            frames = synthetic_frames(n, args.frames)
            cases.append((f"synthetic 640x480, {n} face{'s' if n > 1 else ''}", lambda f=frames: IterableSource(f)))

    d = board.detector
    print(f"model {bundle.embed_net.spec.name}, bundle {bundle.model_version}, board {board.name}, "
          f"detector max_side_px={d.max_side_px} scale_factor={d.scale_factor} every_frames={d.every_frames} "
          f"roi_on_change={d.roi_on_change}, follow={board.follow.enabled}, "
          f"{platform.machine()} {platform.processor() or ''}, 1 core (affinity {sorted(os.sched_getaffinity(0))})")
    print()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print()
    print("| input | policy | fps (CPU) | x today | fps (wall) | detect ms/frame | follow ms/frame | "
          "embed+align+match ms/frame | frame ms | frame p95 ms | full searches/frame | region searches/frame | "
          "tracks/frame | followed share | named/frame | named the same | named otherwise | "
          "appear latency (frames) | embeds/frame |")
    print("|" + "---|" * 19)
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for name, make_source in cases:
        path = Path("/tmp") / f"bench_pipeline_{os.getpid()}.sqlite"
        gallery = Gallery(path, str(bundle.embedding_space), float(bundle.threshold))
        rng = np.random.default_rng(0)
        for i in range(20):  # a gallery of 20 people x 5 embeddings: match cost as on a real board
            v = rng.normal(size=(5, 128)).astype(np.float32)
            gallery.add(f"person{i:02d}", v / np.linalg.norm(v, axis=1, keepdims=True))
        # a first pass enrols whoever today's policy saw, so that names can be compared
        first = run_case(today(board), bundle, gallery, make_source())
        enrol_tracks(gallery, first["track_means"], float(bundle.threshold))
        results = {}
        for policy, b in (("today: detect every frame", today(board)), ("follow (board)", board)):
            r = results[policy] = run_case(b, bundle, gallery, make_source())
            base = results["today: detect every frame"]
            ratio = r["fps"] / base["fps"]
            same, other = same_names(base["named"], r["named"])
            pf = r["per_frame_ms"]
            share = r["followed"] / max(r["followed"] + r["detected"], 1)
            print(f"| {name} | {policy} | {r['fps']:.1f} | {ratio:.2f} | {r['fps_wall']:.1f} | {pf['detect']:.2f} | "
                  f"{pf['follow']:.2f} | {pf['align'] + pf['embed'] + pf['match']:.2f} | {fmt(r['mean']['frame'])} | "
                  f"{fmt(r['p95']['frame'])} | {r['full_per_frame']:.2f} | {r['regions_per_frame']:.2f} | "
                  f"{r['faces_per_frame']:.2f} | {share:.2f} | {r['named_per_frame']:.2f} | {same:.3f} | {other} | "
                  f"{fmt(r['appear_latency'])} | {r['embeds_per_frame']:.2f} |", flush=True)
        gallery.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
