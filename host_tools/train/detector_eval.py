"""Measure the board's face detector on LFW and the shared video.

One job: for each shipped frontal cascade, paste LFW128 images into larger grey frames (random
scale, position, optional roll), detect, and report the detection rate, extra boxes, time per
frame, the box -> canonical-frame constants (medians) and the spread of the residual geometry
(box window vs the landmark-fitted window).  Also the rate on the shared video clip.

numpy + OpenCV only.  Results are printed as text and returned as a dict.
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path

import cv2
import numpy as np

from wearface.firmware import align as geom
from wearface.firmware import detect

from .align_data import ImageZip, read_index

#: Frame side of the synthetic scenes (px) and the LFW128 face box width (MediaPipe, ~85 px).
SCENE_PX = 320
LFW128_FACE_PX = 85.0


def make_scene(img128: np.ndarray, rng: random.Random, roll_deg: float = 0.0):
    """Paste an LFW128 image into a SCENE_PX grey frame at a random scale and place, rotated by
    ``roll_deg`` about its centre.  Returns (frame BGR uint8, map LFW128 px -> frame px (2, 3))."""
    r = math.exp(rng.uniform(math.log(0.6), math.log(2.0)))
    side = 128 * r
    margin = side * 0.5 * (abs(math.cos(math.radians(roll_deg))) + abs(math.sin(math.radians(roll_deg))))
    cx = rng.uniform(margin, SCENE_PX - margin)
    cy = rng.uniform(margin, SCENE_PX - margin)
    a = math.radians(roll_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * r
    m = np.zeros((2, 3))
    m[:, :2] = rot
    m[:, 2] = np.array([cx, cy]) - rot @ np.array([63.5, 63.5])
    grey = rng.randint(40, 215)
    frame = np.full((SCENE_PX, SCENE_PX, 3), grey, np.uint8)
    # Paste through a mask so the background stays a plain grey (no black corners).
    warped = cv2.warpAffine(img128, m, (SCENE_PX, SCENE_PX), flags=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((128, 128), 255, np.uint8), m, (SCENE_PX, SCENE_PX), flags=cv2.INTER_NEAREST)
    frame[mask > 0] = warped[mask > 0]
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 4, frame.shape)
    frame = np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return frame, m


def _affine_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _true_box(box: detect.FaceBox, nose_xy, face_px: float) -> bool:
    nx, ny = nose_xy
    return (box.x <= nx <= box.x + box.w and box.y <= ny <= box.y + box.h
            and 0.4 * face_px <= box.w <= 2.5 * face_px)


def measure_lfw(data_dir, n_images: int, seed: int, cascade: str, roll_deg: float = 0.0, **settings) -> dict:
    """Detection on ``n_images`` random LFW128 images in synthetic scenes; raw per-face records."""
    items = [it for it in read_index(data_dir, "lfw") if it.landmarks is not None]
    rng = random.Random(seed)
    picks = rng.sample(items, n_images)
    zf = ImageZip(data_dir, "lfw")
    det = detect.FaceDetector(cascade=cascade, **settings)
    found = extra = 0
    records = []
    t_total = 0.0
    for it in picks:
        roll = rng.uniform(-roll_deg, roll_deg) if roll_deg else 0.0
        frame, m = make_scene(zf.read(it.path), rng, roll)
        t0 = time.perf_counter()
        boxes = det.detect(frame)
        t_total += time.perf_counter() - t0
        lm_frame = _affine_points(m, it.landmarks)
        scale = math.hypot(m[0, 0], m[1, 0])
        good = [b for b in boxes if _true_box(b, lm_frame[2], LFW128_FACE_PX * scale)]
        extra += len(boxes) - (1 if good else 0)
        if not good:
            continue
        found += 1
        b = good[0]
        # The fixed LFW128 framing: canonical (u, v) -> LFW128 (u + 8, v + 8) -> frame.
        fixed = (geom._to3(m) @ np.array([[1, 0, 8.0], [0, 1, 8.0], [0, 0, 1]]))[:2]
        fcx, fcy, fs, fang = geom.window_params(fixed)
        bcx, bcy = b.centre
        records.append(dict(
            dx=(fcx - bcx) / b.w, dy=(fcy - bcy) / b.w, width=geom.FRAME_SIZE * fs / b.w,
            box=b, fixed=fixed, ideal=geom.fit_window(lm_frame), roll_deg=roll,
        ))
    zf.close()
    return dict(cascade=cascade, n=n_images, found=found, extra=extra, ms_per_frame=1e3 * t_total / n_images,
                records=records)


def residual_spread(records, dx: float, dy: float, width: float) -> dict:
    """Percentiles of the correction from the box window (with these constants) to the
    landmark-fitted window: |dx|, |dy| (frame widths), |angle| (deg), |log scale ratio|."""
    rows = []
    for r in records:
        w = detect.face_window(r["box"], dx, dy, width)
        c = geom.correction_between(w, r["ideal"])
        s_ratio = geom.window_params(r["ideal"])[2] / geom.window_params(w)[2]
        rows.append((c[0], c[1], math.degrees(c[2]), math.log(s_ratio)))
    a = np.array(rows)
    out = {}
    for i, k in enumerate(("dx", "dy", "angle_deg", "log_scale")):
        out[k] = dict(median=float(np.median(a[:, i])), std=float(a[:, i].std()),
                      p90_abs=float(np.percentile(np.abs(a[:, i]), 90)),
                      p99_abs=float(np.percentile(np.abs(a[:, i]), 99)))
    return out


def measure_video(video_path, cascade: str, **settings) -> dict:
    """Frames of the clip with >= 1 box, boxes per frame and detect time per frame."""
    cap = cv2.VideoCapture(str(video_path))
    det = detect.FaceDetector(cascade=cascade, **settings)
    frames = with_face = boxes = 0
    t_total = 0.0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames += 1
        t0 = time.perf_counter()
        b = det.detect(frame)
        t_total += time.perf_counter() - t0
        boxes += len(b)
        with_face += bool(b)
    cap.release()
    return dict(cascade=cascade, frames=frames, with_face=with_face, boxes=boxes,
                ms_per_frame=1e3 * t_total / max(frames, 1))


def run(data_dir, n_images: int = 600, seed: int = 0, cascades=detect.FRONTAL_CASCADES, rolls=(0.0, 20.0),
        **settings) -> dict:
    """The whole comparison; prints a report, returns the numbers.  The constants come from the
    first cascade's roll-0 run."""
    data_dir = Path(data_dir)
    results = {}
    print(f"LFW128 in {SCENE_PX}px grey scenes, scale 0.6-2.0, {n_images} images, seed {seed}; settings {settings or 'default'}")
    for cascade in cascades:
        for roll in rolls:
            res = measure_lfw(data_dir, n_images, seed, cascade, roll, **settings)
            results[(cascade, roll)] = res
            print(f"  {cascade:<40} roll +-{roll:>4.0f} deg: found {res['found']}/{res['n']} "
                  f"({100 * res['found'] / res['n']:.1f}%), extra boxes {res['extra']}, {res['ms_per_frame']:.1f} ms/frame")
    video = data_dir / "video" / "short_hamilton_clip.mp4"
    if video.is_file():
        print(f"video {video.name}:")
        for cascade in cascades:
            v = measure_video(video, cascade, **settings)
            results[(cascade, "video")] = v
            print(f"  {cascade:<40} frames with a face {v['with_face']}/{v['frames']}, boxes {v['boxes']}, "
                  f"{v['ms_per_frame']:.1f} ms/frame (640x360)")
    first = results[(cascades[0], rolls[0])]["records"]
    consts = {k: float(np.median([r[k] for r in first])) for k in ("dx", "dy", "width")}
    iqr = {k: float(np.subtract(*np.percentile([r[k] for r in first], [75, 25]))) for k in ("dx", "dy", "width")}
    print(f"box -> canonical frame ({cascades[0]}, {len(first)} faces): "
          f"BOX_TO_FRAME_DX = {consts['dx']:.4f}, BOX_TO_FRAME_DY = {consts['dy']:.4f}, "
          f"BOX_TO_FRAME_WIDTH = {consts['width']:.4f}  (IQR {iqr['dx']:.4f}, {iqr['dy']:.4f}, {iqr['width']:.4f})")
    for roll in rolls:
        spread = residual_spread(results[(cascades[0], roll)]["records"], **consts)
        print(f"residual box window -> landmark window, roll +-{roll:.0f} deg:")
        for k, v in spread.items():
            print(f"  {k:<10} median {v['median']:+.4f} std {v['std']:.4f} p90|.| {v['p90_abs']:.4f} p99|.| {v['p99_abs']:.4f}")
        results[("spread", roll)] = spread
    results["constants"] = consts
    return results


#: The settings compared by ``sweep`` (``wearface measure-detector --sweep``).
SWEEP = (
    {},
    {"scale_factor": 1.2},
    {"downscale": 2.0},
    {"scale_factor": 1.2, "downscale": 2.0},
    {"min_neighbors": 3},
)


def sweep(data_dir, n_images: int = 300, seed: int = 0, cascade: str = detect.FRONTAL_CASCADES[0]) -> list:
    """Detection rate and extra boxes on LFW scenes and the video for each of ``SWEEP``'s settings."""
    cv2.setNumThreads(1)
    video = Path(data_dir) / "video" / "short_hamilton_clip.mp4"
    rows = []
    for s in SWEEP:
        r = measure_lfw(data_dir, n_images, seed, cascade, 0.0, **s)
        v = measure_video(video, cascade, **s) if video.is_file() else None
        rows.append((s, r, v))
        line = f"{s or 'default'}: LFW {r['found']}/{n_images} found, {r['extra']} extra, {r['ms_per_frame']:.1f} ms/frame"
        if v:
            line += f"; video {v['with_face']}/{v['frames']} frames, {v['boxes']} boxes, {v['ms_per_frame']:.1f} ms/frame"
        print(line, flush=True)
    return rows
