"""Benchmark (not a test): face detector recall on synthetic LFW frames and the real clip (issues 14 and 16).

Every candidate is the firmware's own detector (``firmware/detect.py`` through ``facemodel.detector_settings``,
as the loop calls it) with one board's ``[detector]`` settings or a variant of them.  Conditions, built from
LFW128 images and their landmark pseudo-labels (``--n`` images each, seeded; the true box is the one the
default cascade would draw, ``follow.box_of_window`` of the landmark-fitted window):

* ``size N``: the face box N px wide (24..400) at a random place in a 640x480 frame over a background
  (half flat grey with noise, half random clutter: blurred shapes, no faces);
* ``close-up`` / ``closer``: the face box 70-100% / 100-130% of the frame height (640x480), near the centre,
  the image's edges repeated past it (a face that fills the picture, and one that overflows it);
* ``photo``: a 250x250 photo cropped so the face box is 70-100% of its side (a tight studio photo);
* ``ramp`` / ``gamma`` / ``shadow``: relit faces (box 64-160 px): a one-sided light ramp across the face
  (gain 0.1-0.3 to 1.2-1.6), a strong gamma (2.2-3.0 or 0.3-0.45), a hard shadow edge through the face
  (0.15-0.3 on one side, 1.3 on the other, clipped);
* ``profile``: the 10% most turned LFW faces (nose off the eyes' midpoint), box 64-160 px;
* ``grey``: box 64-160 px on a flat grey background (as ``wearface measure-detector``).

A face is found when one box has IoU >= 0.3 with the true box; other boxes are false.  Time: each frame goes
through every candidate in turn (one thread; each frame starts with the next candidate), "x current" is the
median over the 640x480 frames of the per-frame time ratio to the first candidate (the virtual board before this
change), measured in the same run.  The clip (every ``--clip-every``-th frame): boxes per frame for every
candidate, time as above, and against a reference detector run on the host (dlib's CNN
``mmod_human_face_detector`` upsampled once, or dlib's HOG) on every ``--ref-every``-th frame.

    nice -n 10 python3 bench/bench_detectors.py --data ../shared/data --n 20 --seed 0 [--out results.json]

Prints Markdown tables.  numpy + OpenCV (+ dlib for the reference only).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "threads;1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)

from wearface.firmware import align as geom  # noqa: E402
from wearface.firmware.board import DetectorConfig, boards_dir, load_board  # noqa: E402
from wearface.firmware.detect import FaceDetector  # noqa: E402
from wearface.firmware.facemodel import detector_settings, frame_downscale, make_detector  # noqa: E402
from wearface.firmware.follow import box_of_window  # noqa: E402
from wearface.firmware.tracker import iou as box_iou  # noqa: E402
from wearface.host_tools.train.align_data import ImageZip, read_index  # noqa: E402

FRAME_W, FRAME_H, PHOTO_PX = 640, 480, 250
SIZES = (24, 32, 48, 64, 96, 160, 250, 400)
OTHER = ("close-up", "closer", "photo", "ramp", "gamma", "shadow", "profile", "grey")
HIT_IOU = 0.3


# --- conditions -------------------------------------------------------------------------------------------------
def true_box_128(landmarks: np.ndarray) -> tuple:
    """The default cascade's box (x, y, w, h) for a face with these 5 landmarks, image px."""
    return box_of_window(geom.fit_window(landmarks))


def background(rng: np.random.Generator, flat: bool) -> np.ndarray:
    """A faceless 640x480 BGR background: flat grey, or low-frequency shading plus random blurred shapes."""
    if flat:
        return np.full((FRAME_H, FRAME_W, 3), int(rng.integers(40, 216)), np.uint8)
    base = cv2.resize(rng.uniform(30, 220, (6, 8)).astype(np.float32), (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)
    img = np.clip(base, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(10, 30))):
        grey = int(rng.integers(0, 256))
        x, y = (int(v) for v in rng.integers(0, (FRAME_W, FRAME_H)))
        a, b = (int(v) for v in rng.integers(5, 120, 2))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + a, y + b), grey, -1)
        elif kind == 1:
            cv2.line(img, (x, y), (x + a - 60, y + b - 60), grey, int(rng.integers(1, 8)))
        else:
            cv2.circle(img, (x, y), a // 2, grey, -1)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


def place(img: np.ndarray, box128: tuple, canvas: np.ndarray, box_w: float, x: float, y: float,
          repeat_edges: bool = False) -> tuple:
    """Scale ``img`` so its face box is ``box_w`` px wide with its top-left at (x, y) of ``canvas`` (edited in
    place; INTER_AREA when shrinking).  ``repeat_edges``: the whole canvas is filled, the image's edge pixels
    repeated past it (a close-up); else the image is pasted over the canvas.  The true box, canvas px."""
    bx, by, bw, _ = box128
    r = box_w / bw
    m = np.array([[r, 0.0, x - r * bx], [0.0, r, y - r * by]])
    h, w = canvas.shape[:2]
    if r < 1 and not repeat_edges:  # shrink with area averaging, then paste at whole pixels
        small = cv2.resize(img, None, fx=r, fy=r, interpolation=cv2.INTER_AREA)
        ox, oy = int(round(m[0, 2])), int(round(m[1, 2]))
        sx0, sy0, dx0, dy0 = max(-ox, 0), max(-oy, 0), max(ox, 0), max(oy, 0)
        dx1, dy1 = min(ox + small.shape[1], w), min(oy + small.shape[0], h)
        canvas[dy0:dy1, dx0:dx1] = small[sy0:sy0 + dy1 - dy0, sx0:sx0 + dx1 - dx0]
        return (ox + r * bx, oy + r * by, box_w, box_w)
    cv2.warpAffine(img, m, (w, h), dst=canvas, flags=cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_REPLICATE if repeat_edges else cv2.BORDER_TRANSPARENT)
    return (x, y, box_w, box_w)


def relight(frame: np.ndarray, box: tuple, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Hard light applied to the whole frame, placed by the face ``box``: "ramp", "gamma" or "shadow"."""
    f = frame.astype(np.float32)
    x, y, w, _ = box
    cols = np.arange(frame.shape[1], dtype=np.float32)
    if kind == "gamma":
        g = rng.uniform(2.2, 3.0) if rng.random() < 0.5 else rng.uniform(0.3, 0.45)
        return np.clip(255.0 * (f / 255.0) ** g, 0, 255).astype(np.uint8)
    t = np.clip((cols - x) / w, 0.0, 1.0)
    if rng.random() < 0.5:
        t = 1.0 - t
    if kind == "ramp":
        lo, hi = rng.uniform(0.1, 0.3), rng.uniform(1.2, 1.6)
        gain = lo + (hi - lo) * t
    else:  # shadow: a hard edge somewhere in the face's middle half
        edge = rng.uniform(0.25, 0.75)
        gain = np.where(t < edge, rng.uniform(0.15, 0.3), 1.3).astype(np.float32)
    return np.clip(f * gain[None, :, None], 0, 255).astype(np.uint8)


def noisy(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(frame.astype(np.float32) + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)


def make_frame(cond: str, img: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> tuple:
    """(frame uint8 BGR, true box (x, y, w, h)) for one condition and one LFW128 image."""
    box128 = true_box_128(lm)
    if cond in ("photo", "close-up", "closer"):
        w, h = (PHOTO_PX, PHOTO_PX) if cond == "photo" else (FRAME_W, FRAME_H)
        box_w = (rng.uniform(1.0, 1.3) if cond == "closer" else rng.uniform(0.7, 1.0)) * min(w, h)
        x = (w - box_w) / 2 + rng.uniform(-0.15, 0.15) * box_w * (1.0 if w > h else 1 / 3)
        y = (h - box_w) / 2 + rng.uniform(-0.05, 0.05) * box_w
        canvas = np.zeros((h, w, 3), np.uint8)
        box = place(img, box128, canvas, box_w, x, y, repeat_edges=True)
        return noisy(canvas, rng), box
    if cond.startswith("size "):
        box_w = float(cond.split()[1])
    else:
        box_w = math.exp(rng.uniform(math.log(64), math.log(160)))
    canvas = background(rng, flat=cond == "grey" or rng.random() < 0.5)
    x, y = rng.uniform(0, FRAME_W - box_w), rng.uniform(0, FRAME_H - box_w)
    box = place(img, box128, canvas, box_w, x, y)
    if cond in ("ramp", "gamma", "shadow"):
        canvas = relight(canvas, box, cond, rng)
    return noisy(canvas, rng), box


def yaw(lm: np.ndarray) -> float:
    """How turned a face is: the nose's offset from the eyes' midpoint, in eye distances (0 = frontal)."""
    eyes = lm[1] - lm[0]
    return abs(float(lm[2, 0] - (lm[0, 0] + lm[1, 0]) / 2)) / max(float(np.hypot(*eyes)), 1e-6)


def conditions(data_dir: Path, n: int, seed: int):
    """Yields (condition, frame, true box) for every condition, ``n`` frames each."""
    items = [it for it in read_index(data_dir, "lfw") if it.landmarks is not None]
    turned = sorted(items, key=lambda it: -yaw(it.landmarks))[: len(items) // 10]
    zf = ImageZip(data_dir, "lfw")
    for k, cond in enumerate([f"size {s}" for s in SIZES] + list(OTHER)):
        rng = np.random.default_rng([seed, k])
        pool = turned if cond == "profile" else items
        for i in rng.choice(len(pool), n, replace=False):
            it = pool[int(i)]
            frame, box = make_frame(cond, zf.read(it.path), it.landmarks, rng)
            yield cond, frame, box
    zf.close()


# --- candidates -------------------------------------------------------------------------------------------------
class Candidate:
    """One detector as the loop runs it: a board's ``[detector]`` (``DetectorConfig``) through ``FaceModel``'s
    path (``detector_settings`` + ``frame_downscale`` + ``max_faces``); ``profile``: also the profile cascade on
    the frame and its mirror image (boxes that overlap no frontal box added)."""

    def __init__(self, name: str, config: DetectorConfig, profile: bool = False):
        self.name, self.config, self.profile = name, config, profile
        self.detector = make_detector(config)
        self.side = FaceDetector(dataclasses.replace(detector_settings(config, (1, 1)),
                                                     cascade="haarcascade_profileface.xml")) if profile else None

    def key(self) -> tuple:
        return dataclasses.astuple(self.config) + (self.profile,)

    def __call__(self, frame: np.ndarray) -> list:
        f = frame_downscale(self.config, frame.shape)
        boxes = [(b.x, b.y, b.w, b.h) for b in self.detector.detect(frame, f)]
        if self.side is not None:
            w = frame.shape[1]
            more = [(b.x, b.y, b.w, b.h) for b in self.side.detect(frame, f)]
            more += [(w - b.x - b.w, b.y, b.w, b.h) for b in self.side.detect(frame[:, ::-1].copy(), f)]
            for m in more:
                if all(box_iou(m, b) < HIT_IOU for b in boxes):
                    boxes.append(m)
        return boxes[: self.config.max_faces]


def candidates(board_dir: Path) -> list:
    """The boards' detectors as their files say, as before (the Haar cascade with no equalisation, no padding) and,
    where a board file runs BlazeFace, the cascade with the file's other settings; variants of the virtual board's."""
    out = []
    before = {}
    for name in ("virtual", "rpi-zero2w", "a55-dotprod"):
        cfg = load_board(board_dir / f"{name}.toml").detector
        before[name] = dataclasses.replace(cfg, kind="haar", equalize="none", pad_fraction=0.0, propose_score=0.0)
        out.append(Candidate(f"{name}: before", before[name]))
        if cfg.kind != "haar":  # the cascade as the board file set it, before BlazeFace replaced it
            out.append(Candidate(f"{name}: haar", dataclasses.replace(cfg, kind="haar")))
        out.append(Candidate(f"{name}: board file", cfg))
    v = before["virtual"]
    r = dataclasses.replace
    out += [
        Candidate("pad 0.25", r(v, pad_fraction=0.25)),
        Candidate("hist", r(v, equalize="hist")),
        Candidate("clahe", r(v, equalize="clahe")),
        Candidate("pad 0.25 + clahe", r(v, pad_fraction=0.25, equalize="clahe")),
        Candidate("alt2", r(v, cascade="haarcascade_frontalface_alt2.xml")),
        Candidate("neighbours 3", r(v, min_neighbors=3)),
        Candidate("min 24 px", r(v, min_size_px=24)),
        Candidate("scale 1.05", r(v, scale_factor=1.05)),
        Candidate("+ profile cascade", v, profile=True),
        Candidate("blazeface full range", r(v, kind="blazeface", pad_fraction=0.0)),
        Candidate("blazeface full range 0.5", r(v, kind="blazeface", min_score=0.5, pad_fraction=0.0)),
        Candidate("blazeface short range", r(v, kind="blazeface", net="short_range", pad_fraction=0.0)),
        Candidate("blazeface full then short", r(v, kind="blazeface", fallback_net="short_range", pad_fraction=0.0)),
        Candidate("blazeface full 0.5 then short", r(v, kind="blazeface", fallback_net="short_range", min_score=0.5,
                                                          pad_fraction=0.0)),
        Candidate("blazeface both 0.5", r(v, kind="blazeface", net="full_range+short_range", min_score=0.5,
                                           pad_fraction=0.0)),
        Candidate("blazeface both", r(v, kind="blazeface", net="full_range+short_range", pad_fraction=0.0)),
        Candidate("blazeface 2 tiles then short", r(v, kind="blazeface", fallback_net="short_range", tiles=2,
                                                    pad_fraction=0.0)),
        Candidate("blazeface full then short + proposals 0.3", r(v, kind="blazeface", fallback_net="short_range",
                                                                propose_score=0.3, pad_fraction=0.0)),
    ]
    return out


# --- running ----------------------------------------------------------------------------------------------------
def run_lfw(cands: list, data_dir: Path, n: int, seed: int) -> dict:
    """Per candidate: hits and false boxes per condition, and per-frame times on the 640x480 frames."""
    res = {c.name: {"hits": {}, "false": 0, "frames": 0, "ms": []} for c in cands}
    base = cands[0].name
    ratios = {c.name: [] for c in cands}
    for i, (cond, frame, truth) in enumerate(conditions(data_dir, n, seed)):
        times = {}
        for c in cands[i % len(cands):] + cands[: i % len(cands)]:  # each frame starts with another candidate
            t0 = time.perf_counter()
            boxes = c(frame)
            times[c.name] = time.perf_counter() - t0
            hit = any(box_iou(b, truth) >= HIT_IOU for b in boxes)
            r = res[c.name]
            r["hits"][cond] = r["hits"].get(cond, 0) + int(hit)
            r["false"] += len(boxes) - int(hit) if hit else len(boxes)
            r["frames"] += 1
        if frame.shape[:2] == (FRAME_H, FRAME_W):
            for c in cands:
                res[c.name]["ms"].append(1e3 * times[c.name])
                ratios[c.name].append(times[c.name] / max(times[base], 1e-9))
    for c in cands:
        r = res[c.name]
        r["recall"] = {k: v / n for k, v in r["hits"].items()}
        r["false_per_frame"] = r["false"] / max(r["frames"], 1)
        r["median_ms"] = float(np.median(r.pop("ms")))
        r["x_current"] = float(np.median(ratios[c.name]))
    return res


def reference_detector(kind: str):
    """frame BGR -> boxes (x, y, w, h) with dlib, upsampled once ("cnn": mmod CNN, "hog": HOG + SVM)."""
    import dlib

    if kind == "hog":
        hog = dlib.get_frontal_face_detector()
        rects = lambda rgb: hog(rgb, 1)  # noqa: E731
    else:
        import importlib.util

        spec = importlib.util.find_spec("face_recognition_models")
        path = Path(spec.origin).parent / "models" / "mmod_human_face_detector.dat"
        cnn = dlib.cnn_face_detection_model_v1(str(path))
        rects = lambda rgb: [d.rect for d in cnn(rgb, 1)]  # noqa: E731

    def detect(frame):
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return [(r.left(), r.top(), r.width(), r.height()) for r in rects(rgb)]
    return detect


def run_clip(cands: list, video: Path, ref: str, ref_every: int, every: int) -> dict:
    """Boxes per frame on every ``every``-th clip frame for every candidate, time per frame (median ms, median
    ratio to the first candidate's); recall and unmatched boxes against the reference on every
    ``ref_every``-th frame."""
    ref_fn = reference_detector(ref) if ref != "none" else None
    cap = cv2.VideoCapture(str(video))
    out = {c.name: {"boxes": 0, "ref_hits": 0, "unmatched": 0, "ms": [], "ratios": []} for c in cands}
    index, frames, ref_frames, ref_boxes = -1, 0, 0, 0
    while True:
        ok, frame = cap.read()
        index += 1
        if not ok:
            break
        if index % every:
            continue
        truth = ref_fn(frame) if ref_fn is not None and index % ref_every == 0 else None
        if truth is not None:
            ref_frames += 1
            ref_boxes += len(truth)
        for c in cands[frames % len(cands):] + cands[: frames % len(cands)]:
            t0 = time.perf_counter()
            boxes = c(frame)
            out[c.name]["ms"].append(1e3 * (time.perf_counter() - t0))
            out[c.name]["boxes"] += len(boxes)
            if truth is not None:
                out[c.name]["ref_hits"] += sum(any(box_iou(b, t) >= HIT_IOU for b in boxes) for t in truth)
                out[c.name]["unmatched"] += sum(all(box_iou(b, t) < HIT_IOU for t in truth) for b in boxes)
        for c in cands:
            out[c.name]["ratios"].append(out[c.name]["ms"][-1] / max(out[cands[0].name]["ms"][-1], 1e-6))
        frames += 1
    cap.release()
    for r in out.values():
        r["median_ms"], r["x_current"] = float(np.median(r.pop("ms"))), float(np.median(r.pop("ratios")))
        r["per_frame"] = r["boxes"] / max(frames, 1)
        r["recall_vs_ref"] = r["ref_hits"] / ref_boxes if ref_boxes else None
        r["unmatched_per_ref_frame"] = r["unmatched"] / ref_frames if ref_frames else None
    return {"frames": frames, "ref": ref, "ref_frames": ref_frames, "ref_per_frame": ref_boxes / max(ref_frames, 1),
            "candidates": out}


def tables(lfw: dict, clip: dict | None) -> str:
    """The results as two Markdown tables (sizes; other conditions, false boxes, time and the clip)."""
    names = list(lfw)
    sizes = [f"size {s}" for s in SIZES]
    pct = lambda v: f"{100 * v:.0f}"  # noqa: E731
    lines = ["| detector | " + " | ".join(f"{s} px" for s in SIZES) + " |", "|---" * (len(SIZES) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(pct(lfw[n]["recall"][s]) for s in sizes) + " |" for n in names]
    head = list(OTHER) + ["false boxes/frame", "ms/frame", "x current"]
    if clip:
        head += ["clip boxes/frame", f"clip recall vs {clip['ref']}", "clip unmatched/ref frame", "clip x current"]
    lines += ["", "| detector | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for n in names:
        r = lfw[n]
        row = [pct(r["recall"][k]) for k in OTHER] + [f"{r['false_per_frame']:.2f}", f"{r['median_ms']:.1f}",
                                                      f"{r['x_current']:.2f}"]
        if clip:
            c = clip["candidates"][n]
            row += [f"{c['per_frame']:.2f}", "-" if c["recall_vs_ref"] is None else pct(c["recall_vs_ref"]),
                    "-" if c["unmatched_per_ref_frame"] is None else f"{c['unmatched_per_ref_frame']:.2f}",
                    f"{c['x_current']:.2f}"]
        lines.append(f"| {n} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def fit_blaze(data_dir: Path, n: int, seed: int) -> str:
    """The BlazeFace box -> cascade box constants (``blazeface.BLAZE_TO_HAAR_*``): medians over the size
    conditions' faces (32-400 px) that the full-range net finds (box centre within half a true box width)."""
    from wearface.firmware import blazeface

    det = blazeface.BlazeFaceDetector("full_range", "")
    rows = []
    for cond, frame, (x, y, w, h) in conditions(data_dir, n, seed):
        if not cond.startswith("size"):
            continue
        raw = [(b.x + b.w / 2, b.y + b.h / 2, b.w) for b in det.detect(frame)]
        near = [(math.hypot(cx - x - w / 2, cy - y - h / 2), cx, cy, bw) for cx, cy, bw in raw]
        near = [m for m in near if m[0] < 0.5 * w]
        if near:
            _, cx, cy, bw = min(near)
            # undo the constants in use, to measure against the net's own box
            side = bw / blazeface.BLAZE_TO_HAAR_WIDTH
            ox, oy = cx - blazeface.BLAZE_TO_HAAR_DX * side, cy - blazeface.BLAZE_TO_HAAR_DY * side
            rows.append(((x + w / 2 - ox) / side, (y + h / 2 - oy) / side, w / side))
    r = np.asarray(rows)
    med, iqr = np.median(r, axis=0), np.subtract(*np.percentile(r, [75, 25], axis=0))
    return (f"{len(r)} faces: BLAZE_TO_HAAR_DX = {med[0]:.4f}, BLAZE_TO_HAAR_DY = {med[1]:.4f}, "
            f"BLAZE_TO_HAAR_WIDTH = {med[2]:.4f} (IQR {iqr[0]:.3f}, {iqr[1]:.3f}, {iqr[2]:.3f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data", help="the shared data folder (lfw/, video/)")
    ap.add_argument("--n", type=int, default=20, help="frames per condition")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--boards", default=str(boards_dir()), help="folder with virtual/rpi-zero2w/a55-dotprod.toml")
    ap.add_argument("--only", default="", help="comma-separated candidate names to run (default: all)")
    ap.add_argument("--ref", choices=("cnn", "hog", "none"), default="cnn", help="the clip's reference detector")
    ap.add_argument("--clip-every", type=int, default=3, help="run the candidates on every Nth clip frame")
    ap.add_argument("--ref-every", type=int, default=30, help="run the reference on every Nth clip frame (a multiple "
                                                               "of --clip-every)")
    ap.add_argument("--no-clip", action="store_true")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--fit-blaze", action="store_true", help="only measure BlazeFace's box against the cascade's")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if args.fit_blaze:
        print(fit_blaze(data, args.n, args.seed))
        return 0
    cands = candidates(Path(args.boards))
    if args.only:
        keep = set(args.only.split(","))
        cands = [c for c in cands if c.name in keep or c is cands[0]]
    unique, alias = [], {}
    for c in cands:  # identical settings run once
        first = next((u for u in unique if u.key() == c.key()), None)
        alias[c.name] = first.name if first else c.name
        if first is None:
            unique.append(c)
    t0 = time.time()
    lfw = run_lfw(unique, data, args.n, args.seed)
    video = data / "video" / "short_hamilton_clip.mp4"
    clip = None if args.no_clip or not video.is_file() else run_clip(unique, video, args.ref, args.ref_every, args.clip_every)
    lfw = {c.name: lfw[alias[c.name]] for c in cands}
    if clip:
        clip["candidates"] = {c.name: clip["candidates"][alias[c.name]] for c in cands}
    print(f"{args.n} frames per condition, seed {args.seed}, {time.time() - t0:.0f} s; recall % (IoU >= {HIT_IOU})")
    print(tables(lfw, clip))
    if clip:
        print(f"clip: {clip['frames']} frames (--clip-every {args.clip_every}); reference {clip['ref']} "
              f"on {clip['ref_frames']} frames, "
              f"{clip['ref_per_frame']:.2f} faces per frame")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "aliases": alias, "lfw": lfw, "clip": clip}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
