"""Benchmark (not a test): the recognition loop's fps and per-stage latency on one core.

Runs the firmware's own Pipeline (detect -> track -> align -> embed -> match) with the real int8 runtime and
a bundle (default ``models/default.wfb``, model A; weights do not change the speed), on:

* ``clip``: the real 640x360 clip ``../shared/data/video/short_hamilton_clip.mp4`` (skipped when absent),
* ``synthetic-1`` / ``synthetic-4``: synthesized 640x480 frames with 1 and 4 faces (matplotlib's portrait),

each three times in one process: "today" (the board's Haar cascade searching every frame, following off: the loop
before issue 16), "today again" (the same policy once more: the floor of the name comparison) and "follow (board)"
(the board file's own settings, or those ``--set`` gives).  A first pass with today's policy enrols the people it
saw (``seen00``...; one person per identity the teacher, dlib's ResNet, finds among its tracks when dlib is
installed, else per cluster of the board's own embeddings: ``--board-identities``, and always for the synthetic
scenes, whose faces are copies of one photo), so "named the same" compares names.  One core: the process pins
itself to CPU 0 and sets every thread pool (numba, OpenBLAS, OpenMP, OpenCV) to one thread before importing them.

    python3 bench/bench_pipeline.py [--data ../shared/data] [--frames 150] [--bundle models/default.wfb]
                                    [--board boards/virtual.toml] [--set detector.scale_factor=1.2 ...]

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
from wearface.firmware.bundle import read_bundle  # noqa: E402
from wearface.firmware.camera import IterableSource, VideoCaptureSource  # noqa: E402
from wearface.firmware.facemodel import FaceModel  # noqa: E402
from wearface.firmware.gallery import Gallery, cohort_distance  # noqa: E402
from wearface.firmware.pipeline import Pipeline  # noqa: E402
from wearface.firmware.tracker import iou  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def synthetic_frames(n_faces: int, n_frames: int) -> list:
    face = scene.grace_hopper_face()
    spots = [(0.2, 0.3), (0.75, 0.3), (0.25, 0.75), (0.75, 0.72)][:n_faces]
    actors = [scene.Actor(face, start=0, stop=None, from_xy=(x - 0.03, y), to_xy=(x + 0.03, y),
                          size_px=(140, 150), max_angle_deg=5.0) for x, y in spots]
    return list(scene.scene_frames(actors, n_frames, 640, 480))


def today(board, kind: str = "haar"):
    """The board with today's policy before following (issue 16): the whole frame searched every frame by the Haar
    cascade (a board whose ``[detector] kind`` is "blazeface" is compared with the cascade it replaces), or by the
    detector ``kind`` given."""
    detector = dataclasses.replace(board.detector, kind=kind, every_frames=1, still_grey_levels=0.0)
    return dataclasses.replace(board, detector=detector,
                               follow=dataclasses.replace(board.follow, enabled=False))


def with_settings(board, settings: list):
    """``board`` with ``SECTION.FIELD=VALUE`` settings applied (e.g. ``detector.every_frames=6``): trying a setting
    without writing a board file.  VALUE is parsed as the field's current type."""
    for setting in settings:
        key, sep, text = setting.partition("=")
        section_name, _, field = key.partition(".")
        section = getattr(board, section_name, None)
        if not sep or section is None or not dataclasses.is_dataclass(section) or not hasattr(section, field):
            raise SystemExit(f"--set {setting!r}: expected SECTION.FIELD=VALUE naming a board setting")
        current = getattr(section, field)
        if isinstance(current, bool):
            value = text.lower() in ("1", "true", "yes", "on")
        else:
            value = type(current)(text) if current is not None else text
        board = dataclasses.replace(board, **{section_name: dataclasses.replace(section, **{field: value})})
    return board


def run_case(board, bundle, gallery, source, keep_crops: bool = False) -> dict:
    """One pass of ``source`` through the loop; ``keep_crops``: also keep every embedded face's 112x112 RGB crop per
    track (the loop's ``debug.explain`` records), for the teacher's identities (``enrol_tracks``)."""
    model = FaceModel(board, bundle)
    bus = ev.EventBus()
    pipeline = Pipeline(board, model, gallery, bus, source)
    crops: dict = {}
    if keep_crops:
        pipeline.debug_explain = True
        bus.subscribe(lambda e: crops.setdefault(e["track"], []).append(e["crop"])
                      if e["event"] == ev.DEBUG_EXPLAIN else None)
    # CPU time of this (only) thread: the machine may be shared, CPU time is what the work itself costs
    pipeline.clock = time.thread_time
    faces, per_frame, tracks_seen, together = 0, [], {}, set()
    t0, c0, read_s = time.perf_counter(), time.thread_time(), 0.0
    while True:
        r0 = time.thread_time()
        frame = source.read()
        read_s += time.thread_time() - r0
        if frame is None:
            break
        pipeline.step(frame)
        faces += len(pipeline.tracker.tracks)
        live = sorted(pipeline.tracker.tracks)
        together.update(frozenset((a, b)) for i, a in enumerate(live) for b in live[i + 1:])
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
            "still_per_frame": stats["still_frames"] / n,
            "followed": stats["tracks_followed"], "detected": stats["tracks_detected"],
            "appear_latency": stats["appear_latency_frames"], "track_means": tracks_seen, "track_crops": crops,
            "together": together}


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


#: dlib's own same-person distance for its descriptors (dlib's face_recognition documentation)
TEACHER_SAME_PERSON = 0.6


def teacher_groups(track_crops: dict, track_ids: list, together: set, max_crops: int = 8):
    """Group tracks into people with the teacher (dlib's ResNet, host side): tracks whose mean descriptors are
    nearer than ``TEACHER_SAME_PERSON`` are one person (nearest pairs first, transitively), except that tracks seen
    in the same frame (``together``: frozensets of two track ids) never are.  None when dlib is not installed."""
    try:
        from wearface.host_tools.train.teacher import Teacher, TeacherMissingError
    except ImportError:
        return None
    try:
        teacher = Teacher()
    except TeacherMissingError:
        return None
    means = {}
    for tid in track_ids:
        crops = track_crops.get(tid, [])
        picked = crops[:: max(len(crops) // max_crops, 1)][:max_crops]
        if picked:
            means[tid] = np.mean([teacher(c) for c in picked], axis=0)
    group = {tid: tid for tid in track_ids}

    def root(t):
        while group[t] != t:
            t = group[t]
        return t

    ids = list(means)
    pairs = sorted((float(np.linalg.norm(means[a] - means[b])), a, b) for i, a in enumerate(ids) for b in ids[i + 1:])
    for distance, a, b in pairs:  # nearest first; two tracks seen in one frame are two people
        ra, rb = root(a), root(b)
        if distance >= TEACHER_SAME_PERSON:
            break
        members = lambda r: [t for t in track_ids if root(t) == r]  # noqa: E731
        if ra != rb and not any(frozenset((x, y)) in together for x in members(ra) for y in members(rb)):
            group[rb] = ra
    people: dict = {}
    for tid in track_ids:
        people.setdefault(root(tid), []).append(tid)
    return list(people.values())


def enrol_tracks(gallery, track_means: dict, threshold: float, track_crops: dict | None = None,
                 together: set = frozenset(), cohort=None, cohort_k: int = 0) -> tuple[int, str]:
    """Enrol the people a first pass saw as seen00, seen01...: then "named the same" compares real decisions, not
    "unknown" everywhere.  Who is one person: the teacher's grouping of the tracks when dlib is installed (a wearer
    enrols each person once; the board's own embedding splits one performer of the clip into several people 0.6-0.8
    apart at θ 0.512, and a name swap between two of them is no wrong name), else track means the board's rule
    would call one person: distance < ``threshold`` (θ), or with a ``cohort`` (the bundle's, metric "l2_cohort")
    distance / the track's ``cohort_k``-th nearest cohort distance < θ.  Returns (people, how they were grouped)."""
    ids = list(track_means)
    groups = teacher_groups(track_crops or {}, ids, together) if track_crops is not None else None
    how = f"the teacher (dlib, descriptor distance < {TEACHER_SAME_PERSON}; tracks seen in one frame kept apart)"
    if groups is None:
        how = f"the board's embedding (track means nearer than θ {threshold:.3f})" if cohort is None else \
            f"the board's rule (track means scoring under θ {threshold:.3f} against its cohort, k = {cohort_k})"
        groups = []
        for tid in ids:
            scale = 1.0 if cohort is None else float(cohort_distance(track_means[tid], cohort, cohort_k)[0])
            for g in groups:
                if float(np.linalg.norm(track_means[g[0]] - track_means[tid])) / scale < threshold:
                    g.append(tid)
                    break
            else:
                groups.append([tid])
    for i, g in enumerate(groups):
        gallery.add(f"seen{i:02d}", np.stack([track_means[t] for t in g]))
    return len(groups), f"{how}: tracks {groups}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--frames", type=int, default=150, help="frames per synthetic case")
    parser.add_argument("--bundle", default=str(REPO / "models" / "default.wfb"))
    parser.add_argument("--board", default=str(boards_dir() / "virtual.toml"))
    parser.add_argument("--cases", default="clip,synthetic-1,synthetic-4", help="comma-separated: clip, synthetic-N")
    parser.add_argument("--board-identities", action="store_true",
                        help="group the first pass's tracks into people by the board's θ, not by the teacher (dlib)")
    parser.add_argument("--enrol-with", choices=("today", "follow"), default="today",
                        help="the first pass that enrols the people seen: today's policy (the Haar cascade every frame), "
                             "or the follow row's detector every frame (a gallery made with the other detector's crops)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override a board setting for the follow row (repeatable), e.g. detector.every_frames=6")
    args = parser.parse_args()

    board_file = load_board(args.board)
    board = with_settings(board_file, args.set)  # the follow row's settings; "today" keeps the board file's
    # structure and SHA-256 only: a real board file trusts no key until provisioned, and speed needs no signature
    bundle = read_bundle(Path(args.bundle).read_bytes(), args.bundle)
    cases = []
    clip = Path(args.data) / "video" / "short_hamilton_clip.mp4"
    for case in args.cases.split(","):
        if case == "clip":
            if clip.is_file():
                cases.append(("clip 640x360 (275 frames)", lambda: VideoCaptureSource(str(clip), loop=False), False))
            else:
                print(f"(skipping the real clip: {clip} not found)")
        else:
            n = int(case.split("-")[1])
            frames = synthetic_frames(n, args.frames)
            # its faces are copies of one photo: one person, whom no grouping by identity could split
            cases.append((f"synthetic 640x480, {n} face{'s' if n > 1 else ''}", lambda f=frames: IterableSource(f), True))

    d = board.detector
    if args.set:
        print(f"follow row's settings changed from {args.board}: {', '.join(args.set)}")
    print(f"model {bundle.embed_net.spec.name}, bundle {bundle.model_version}, board {board.name}, "
          f"detector max_side_px={d.max_side_px} scale_factor={d.scale_factor} every_frames={d.every_frames} "
          f"roi_on_change={d.roi_on_change} still_grey_levels={d.still_grey_levels}, follow={board.follow.enabled}, "
          f"{platform.machine()} {platform.processor() or ''}, 1 core (affinity {sorted(os.sched_getaffinity(0))})")
    print()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print()
    print("| input | policy | fps (CPU) | x today | fps (wall) | detect ms/frame | follow ms/frame | "
          "embed+align+match ms/frame | frame ms | frame p95 ms | full searches/frame | region searches/frame | "
          "still frames/frame | "
          "tracks/frame | followed share | named/frame | named the same | named otherwise | "
          "appear latency (frames) | embeds/frame |")
    print("|" + "---|" * 20)
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    notes = []
    for name, make_source, clones in cases:
        path = Path("/tmp") / f"bench_pipeline_{os.getpid()}.sqlite"
        gallery = Gallery(path)
        gallery.set_model(str(bundle.embedding_space), float(bundle.threshold), bundle.cohort, bundle.cohort_k)
        rng = np.random.default_rng(0)
        for i in range(20):  # a gallery of 20 people x 5 embeddings: match cost as on a real board
            v = rng.normal(size=(5, 128)).astype(np.float32)
            gallery.add(f"person{i:02d}", v / np.linalg.norm(v, axis=1, keepdims=True))
        # a first pass enrols whoever today's policy saw, so that names can be compared
        by_teacher = not (args.board_identities or clones)
        enrol_board = today(board_file) if args.enrol_with == "today" else today(board, board.detector.kind)
        first = run_case(enrol_board, bundle, gallery, make_source(), keep_crops=by_teacher)
        n_people, how = enrol_tracks(gallery, first["track_means"], float(bundle.threshold),
                                     first["track_crops"] if by_teacher else None, first["together"],
                                     bundle.cohort, bundle.cohort_k)
        notes.append(f"{name}: {len(first['track_means'])} tracks of the first pass ({enrol_board.detector.kind} every "
                     f"frame) enrolled as {n_people} people, grouped by {how}")
        results = {}
        # "today again" runs today's policy a second time: the loop embeds as many faces per frame as its time budget
        # allows, so two runs of one policy differ; its "named the same" is the floor the follow row is read against
        for policy, b in (("today: detect every frame", today(board_file)), ("today again", today(board_file)),
                          ("follow (board)", board)):
            r = results[policy] = run_case(b, bundle, gallery, make_source())
            base = results["today: detect every frame"]
            ratio = r["fps"] / base["fps"]
            same, other = same_names(base["named"], r["named"])
            pf = r["per_frame_ms"]
            share = r["followed"] / max(r["followed"] + r["detected"], 1)
            print(f"| {name} | {policy} | {r['fps']:.1f} | {ratio:.2f} | {r['fps_wall']:.1f} | {pf['detect']:.2f} | "
                  f"{pf['follow']:.2f} | {pf['align'] + pf['embed'] + pf['match']:.2f} | {fmt(r['mean']['frame'])} | "
                  f"{fmt(r['p95']['frame'])} | {r['full_per_frame']:.2f} | {r['regions_per_frame']:.2f} | "
                  f"{r['still_per_frame']:.2f} | "
                  f"{r['faces_per_frame']:.2f} | {share:.2f} | {r['named_per_frame']:.2f} | {same:.3f} | {other} | "
                  f"{fmt(r['appear_latency'])} | {r['embeds_per_frame']:.2f} |", flush=True)
        gallery.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    print()
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
