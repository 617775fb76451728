"""Benchmark (not a test): the recognition loop's fps and per-stage latency on one core.

Runs the firmware's own Pipeline (detect -> track -> align -> embed -> match) with the real int8 runtime and
a bundle (default ``models/default.wfb``, model A; weights do not change the speed), on:

* ``clip``: the real 640x360 clip ``../shared/data/video/short_hamilton_clip.mp4`` (skipped when absent),
* ``synthetic-1`` / ``synthetic-4``: synthesized 640x480 frames with 1 and 4 faces (matplotlib's portrait),

each three times in one process: "today" (the board's Haar cascade searching every frame, following off: the loop
before issue 16), "today again" (the same policy once more: the floor of the name comparison) and "follow (board)"
(the board file's own settings, or those ``--set`` gives; run ``--repeat`` times, the run of median fps printed: a
follow pass takes seconds, and the machine's speed drifts by a third from minute to minute). Names need people
enrolled: as a wearer's board enrols through its own detector, each policy gets its own gallery (``--enrol-with
own``), made from a first pass with its own detector on every frame. Who is one person across both passes
(``seen00``...): one identity the teacher, dlib's ResNet, finds among their tracks when dlib is installed, else one
cluster of the board's own embeddings (``--board-identities``, and always for the synthetic scenes, whose faces are
copies of one photo). So "named the same" compares names, each made by its own system. "named the same (faces)"
counts only today's named boxes that dlib's CNN face detector confirms as faces (the cascade also names its own
false boxes, which a detector that does not find them cannot name the same; the real clip, when dlib is installed).
One core: the process pins itself to CPU 0 and sets every thread pool (numba, OpenBLAS, OpenMP, OpenCV) to one
thread before importing them.

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

from bench_kernels import cpu_model  # noqa: E402  (bench/, this script's folder, is on sys.path)

from wearface.firmware import events as ev  # noqa: E402
from wearface.firmware import scene  # noqa: E402
from wearface.firmware.board import boards_dir, load_board  # noqa: E402
from wearface.firmware.bundle import read_bundle  # noqa: E402
from wearface.firmware.camera import IterableSource, VideoCaptureSource  # noqa: E402
from wearface.firmware.facemodel import FaceModel  # noqa: E402
from wearface.firmware.gallery import Gallery, cohort_distance  # noqa: E402
from wearface.firmware.pipeline import Pipeline  # noqa: E402
from wearface.firmware.tracker import iou  # noqa: E402
from wearface.kernels import tiles  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def synthetic_frames(n_faces: int, n_frames: int) -> list:
    face = scene.grace_hopper_face()
    spots = [(0.2, 0.3), (0.75, 0.3), (0.25, 0.75), (0.75, 0.72)][:n_faces]
    actors = [scene.Actor(face, start=0, stop=None, from_xy=(x - 0.03, y), to_xy=(x + 0.03, y),
                          size_px=(140, 150), max_angle_deg=5.0) for x, y in spots]
    return list(scene.scene_frames(actors, n_frames, 640, 480))


def today(board, kind: str = "haar", cuts: bool = False):
    """The board with today's policy before following (issue 16): the whole frame searched every frame by the Haar
    cascade (a board whose ``[detector] kind`` is "blazeface" is compared with the cascade it replaces), or by the
    detector ``kind`` given, and no cuts (``cuts``: the board file's ``cut_fraction``, for the enrolment passes: a
    track that ran on over a cut would enrol two people as one)."""
    detector = dataclasses.replace(board.detector, kind=kind, every_frames=1, still_grey_levels=0.0,
                                   cut_fraction=board.detector.cut_fraction if cuts else 0.0)
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
    track (the loop's ``debug.explain`` records), for the teacher's identities (``group_tracks``)."""
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
            "still_per_frame": stats["still_frames"] / n, "cuts": stats["cuts"],
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


def missed_frames(reference: list, other: list) -> list:
    """The frames (indices) where ``other`` does not name one of the reference's named faces the same (``same_names``),
    each once: where to look first."""
    return [i for i, (ref, oth) in enumerate(zip(reference, other))
            if any(name not in [n for b, n in oth if iou(box, b) >= 0.3] for box, name in ref)]


#: a reference box is shown to dlib's CNN detector in a crop this many box widths wide, scaled so the box is
#: ``FACE_CHECK_BOX_PX`` px (the CNN's 80 px window finds faces of ~80-160 px without upsampling)
FACE_CHECK_CROP_WIDTHS = 2.0
FACE_CHECK_BOX_PX = 110


def face_checker():
    """(frame BGR, box (x, y, w, h)) -> whether dlib's CNN face detector (mmod, the bench's reference detector,
    ``bench_detectors.reference_detector``) finds a face overlapping the box (IoU >= 0.3) in a crop around it.
    None when dlib or its model is not installed.  A crop, not the frame: the CNN takes ~10 s on a whole
    upsampled 640x360 frame, ~0.1 s on a crop."""
    try:
        import importlib.util

        import dlib
        spec = importlib.util.find_spec("face_recognition_models")
    except ImportError:
        return None
    if spec is None:
        return None
    cnn = dlib.cnn_face_detection_model_v1(str(Path(spec.origin).parent / "models" / "mmod_human_face_detector.dat"))

    def is_face(frame: np.ndarray, box) -> bool:
        x, y, w, h = (float(v) for v in box)
        side = FACE_CHECK_CROP_WIDTHS * max(w, h)
        x0, y0 = int(max(x + w / 2 - side / 2, 0)), int(max(y + h / 2 - side / 2, 0))
        x1, y1 = int(min(x + w / 2 + side / 2, frame.shape[1])), int(min(y + h / 2 + side / 2, frame.shape[0]))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return False
        k = FACE_CHECK_BOX_PX / max(w, h)
        crop = cv2.resize(frame[y0:y1, x0:x1], (max(int((x1 - x0) * k), 1), max(int((y1 - y0) * k), 1)))
        found = [d.rect for d in cnn(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), 0)]
        return any(iou((x0 + r.left() / k, y0 + r.top() / k, r.width() / k, r.height() / k), box) >= 0.3
                   for r in found)
    return is_face


def named_faces(named: list, source, is_face) -> list:
    """``named`` (per frame: (box, name) pairs) keeping only the boxes ``is_face`` confirms on ``source``'s frames."""
    out = []
    for boxes in named:
        frame = source.read()
        out.append([(box, name) for box, name in boxes if frame is not None and is_face(frame, box)])
    return out


#: dlib's own same-person distance for its descriptors (dlib's face_recognition documentation)
TEACHER_SAME_PERSON = 0.6


def teacher_means(track_crops: dict, track_ids: list, max_crops: int = 8) -> dict | None:
    """{track id: the teacher's (dlib's ResNet, host side) mean descriptor of up to ``max_crops`` of its crops}; None
    when dlib is not installed."""
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
    return means


def teacher_groups(means: dict, track_ids: list, together: set) -> list:
    """Group tracks into people by their teacher ``means``: tracks whose mean descriptors are nearer than
    ``TEACHER_SAME_PERSON`` are one person (nearest pairs first, transitively), except that tracks seen in the same
    frame (``together``: frozensets of two track ids) never are."""
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


def group_tracks(track_means: dict, threshold: float, track_crops: dict | None = None,
                 together: set = frozenset(), cohort=None, cohort_k: int = 0,
                 others: dict | None = None, other_crops: dict | None = None) -> tuple[list, str]:
    """Who is one person among a first pass's tracks: (groups of track ids, how they were grouped).  The teacher's
    grouping of the tracks when dlib is installed (a wearer enrols each person once; the board's own embedding splits
    one performer of the clip into several people 0.6-0.8 apart at θ 0.512, and a name swap between two of them is no
    wrong name), else track means the board's rule would call one person: distance < ``threshold`` (θ), or with a
    ``cohort`` (the bundle's, metric "l2_cohort") distance / the track's ``cohort_k``-th nearest cohort distance < θ.
    ``others`` (another pass's track means, ids distinct; ``other_crops`` its crops): each joins the group of its
    nearest track by the same rule, or makes a group of its own, so the people stay those of the first pass whatever
    the other pass found."""
    ids = list(track_means)
    means = teacher_means({**(track_crops or {}), **(other_crops or {})}, ids + list(others or {})) \
        if track_crops is not None else None
    if means is not None:
        how = f"the teacher (dlib, descriptor distance < {TEACHER_SAME_PERSON}; tracks seen in one frame kept apart)"
        groups = teacher_groups({t: v for t, v in means.items() if t in track_means}, ids, together)
        near = lambda a, b: a in means and b in means and \
            float(np.linalg.norm(means[a] - means[b])) < TEACHER_SAME_PERSON  # noqa: E731
        gap = lambda a, b: float(np.linalg.norm(means[a] - means[b])) if a in means and b in means else np.inf  # noqa: E731
    else:
        how = f"the board's embedding (track means nearer than θ {threshold:.3f})" if cohort is None else \
            f"the board's rule (track means scoring under θ {threshold:.3f} against its cohort, k = {cohort_k})"
        every = {**track_means, **(others or {})}
        scale = lambda t: 1.0 if cohort is None else float(cohort_distance(every[t], cohort, cohort_k)[0])  # noqa: E731
        gap = lambda a, b: float(np.linalg.norm(every[a] - every[b])) / scale(b)  # noqa: E731
        near = lambda a, b: gap(a, b) < threshold  # noqa: E731
        groups = []
        for tid in ids:
            for g in groups:
                if near(g[0], tid):
                    g.append(tid)
                    break
            else:
                groups.append([tid])
    for tid in others or {}:
        best = min(((gap(t, tid), i) for i, g in enumerate(groups) for t in g if near(t, tid)), default=None)
        if best is None:
            groups.append([tid])
        else:
            groups[best[1]].append(tid)
    return groups, how


def enrol_groups(gallery, track_means: dict, groups: list) -> int:
    """Enrol group i's tracks (those in ``track_means``) as seen{i:02d}, so that "named the same" compares real
    decisions, not "unknown" everywhere; a group with no track here is not enrolled.  Returns the people enrolled."""
    n = 0
    for i, g in enumerate(groups):
        mine = [track_means[t] for t in g if t in track_means]
        if mine:
            gallery.add(f"seen{i:02d}", np.stack(mine))
            n += 1
    return n


def bench_gallery(path: Path, bundle) -> Gallery:
    """A fresh gallery at ``path`` for ``bundle`` with 20 random people x 5 embeddings: match cost as on a board."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    gallery = Gallery(path)
    gallery.set_model(str(bundle.embedding_space), float(bundle.threshold), bundle.cohort, bundle.cohort_k)
    rng = np.random.default_rng(0)
    for i in range(20):
        v = rng.normal(size=(5, 128)).astype(np.float32)
        gallery.add(f"person{i:02d}", v / np.linalg.norm(v, axis=1, keepdims=True))
    return gallery


#: the follow detector's first-pass track ids are shifted by this when grouped with today's (``--enrol-with own``)
OWN_ID_OFFSET = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--frames", type=int, default=150, help="frames per synthetic case")
    parser.add_argument("--bundle", default=str(REPO / "models" / "default.wfb"))
    parser.add_argument("--board", default=str(boards_dir() / "virtual.toml"))
    parser.add_argument("--cases", default="clip,synthetic-1,synthetic-4", help="comma-separated: clip, synthetic-N")
    parser.add_argument("--board-identities", action="store_true",
                        help="group the first pass's tracks into people by the board's θ, not by the teacher (dlib)")
    parser.add_argument("--enrol-with", choices=("own", "today", "follow"), default="own",
                        help="who enrols the people seen: each policy its own gallery, from a first pass with its own "
                             "detector every frame, as a wearer's board enrols (own); or one gallery for every row from "
                             "today's first pass (the Haar cascade every frame) or from the follow row's detector")
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of the follow row; the run of median fps is printed (all fps in a note)")
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
    # the machine decides the speed: session 9's ran today's loop at half this issue's speed (docs/BENCHMARKS.md)
    print(f"CPU: {cpu_model()}; int8 kernel path {tiles.selected_path()}")
    print()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print()
    print("| input | policy | fps (CPU) | x today | fps (wall) | detect ms/frame | follow ms/frame | "
          "embed+align+match ms/frame | frame ms | frame p95 ms | full searches/frame | region searches/frame | "
          "still frames/frame | "
          "tracks/frame | followed share | named/frame | named the same | named the same (faces) | named otherwise | "
          "appear latency (frames) | embeds/frame |")
    print("|" + "---|" * 21)
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    notes = []
    is_face = face_checker() if not args.board_identities else None
    for name, make_source, clones in cases:
        paths = [Path("/tmp") / f"bench_pipeline_{os.getpid()}_{i}.sqlite" for i in (0, 1)]
        gallery = bench_gallery(paths[0], bundle)
        # a first pass enrols the people a policy saw, so that names can be compared
        by_teacher = not (args.board_identities or clones)
        passes = [today(board_file, cuts=True)] if args.enrol_with != "follow" else \
            [today(board, board.detector.kind, cuts=True)]
        if args.enrol_with == "own":
            passes.append(today(board, board.detector.kind, cuts=True))
        firsts = [run_case(b, bundle, gallery, make_source(), keep_crops=by_teacher) for b in passes]
        shifted = [{t + k * OWN_ID_OFFSET: v for t, v in first[key].items()} for k, first in enumerate(firsts)
                   for key in ("track_means", "track_crops")]
        # the people are those of the first pass (today's); the other pass's tracks join them
        groups, how = group_tracks(firsts[0]["track_means"], float(bundle.threshold),
                                   firsts[0]["track_crops"] if by_teacher else None, firsts[0]["together"],
                                   bundle.cohort, bundle.cohort_k, *(shifted[2:] if len(firsts) == 2 else ()))
        galleries = [gallery] if len(firsts) == 1 else [gallery, bench_gallery(paths[1], bundle)]
        for k, (g, first) in enumerate(zip(galleries, firsts)):
            n_people = enrol_groups(g, {t + k * OWN_ID_OFFSET: v for t, v in first["track_means"].items()}, groups)
            notes.append(f"{name}: {len(first['track_means'])} tracks of a first pass ({passes[k].detector.kind} every "
                         f"frame) enrolled as {n_people} people"
                         + (" for today's rows" if len(firsts) == 2 and k == 0 else
                            " for the follow row" if len(firsts) == 2 else ""))
        notes.append(f"{name}: people grouped by {how}: tracks {groups}")
        results = {}
        # "today again" runs today's policy a second time: the loop embeds as many faces per frame as its time budget
        # allows, so two runs of one policy differ; its "named the same" is the floor the follow row is read against
        for policy, b in (("today: detect every frame", today(board_file)), ("today again", today(board_file)),
                          ("follow (board)", board)):
            runs = [run_case(b, bundle, galleries[-1] if policy.startswith("follow") else gallery, make_source())
                    for _ in range(max(args.repeat, 1) if policy.startswith("follow") else 1)]
            r = results[policy] = sorted(runs, key=lambda x: x["fps"])[len(runs) // 2]
            if len(runs) > 1:
                all_fps = ", ".join(f"{x['fps']:.1f}" for x in runs)
                notes.append(f"{name}: {policy}: fps (CPU) of its {len(runs)} runs: {all_fps}; the median run is printed")
            base = results["today: detect every frame"]
            if policy == "today: detect every frame":
                faces = named_faces(base["named"], make_source(), is_face) if is_face and not clones else None
                if faces is not None:
                    n_named, n_faces = (sum(len(f) for f in x) for x in (base["named"], faces))
                    notes.append(f"{name}: {n_faces} of today's {n_named} named face-frames are faces to dlib's CNN "
                                 f"detector (a crop {FACE_CHECK_CROP_WIDTHS:g} boxes wide around each)")
            ratio = r["fps"] / base["fps"]
            same, other = same_names(base["named"], r["named"])
            same_faces = "-" if faces is None else f"{same_names(faces, r['named'])[0]:.3f}"
            if faces is not None and policy.startswith("follow"):
                notes.append(f"{name}: frames where the follow row does not name one of today's named faces the same: "
                             f"{missed_frames(faces, r['named'])}")
            pf = r["per_frame_ms"]
            share = r["followed"] / max(r["followed"] + r["detected"], 1)
            print(f"| {name} | {policy} | {r['fps']:.1f} | {ratio:.2f} | {r['fps_wall']:.1f} | {pf['detect']:.2f} | "
                  f"{pf['follow']:.2f} | {pf['align'] + pf['embed'] + pf['match']:.2f} | {fmt(r['mean']['frame'])} | "
                  f"{fmt(r['p95']['frame'])} | {r['full_per_frame']:.2f} | {r['regions_per_frame']:.2f} | "
                  f"{r['still_per_frame']:.2f} | "
                  f"{r['faces_per_frame']:.2f} | {share:.2f} | {r['named_per_frame']:.2f} | {same:.3f} | {same_faces} | "
                  f"{other} | "
                  f"{fmt(r['appear_latency'])} | {r['embeds_per_frame']:.2f} |", flush=True)
        cuts = ", ".join(f"{policy} {r['cuts']}" for policy, r in results.items())
        notes.append(f"{name}: cuts (every track ended): {cuts}")
        for g, path in zip(galleries, paths):
            g.close()
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
    print()
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
