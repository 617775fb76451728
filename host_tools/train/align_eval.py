"""Evaluate the alignment net the way the board uses it.

One job: on LFW128 images pasted into grey scenes (as ``detector_eval``), run the board's
detector -> ``face_window`` -> float alignment net (1..N corrections), and measure where the 5
landmark pseudo-labels land in the canonical 112 frame against ``align.LANDMARK_TEMPLATE``
(canonical px), next to two oracles: the landmark-fitted centre and angle with the box's scale
(the best any 3-number correction can do) and the full landmark-fitted similarity.  Also the
residual error on held-out CelebA with synthetic perturbations.
"""
from __future__ import annotations

import math
import random

import numpy as np

from wearface.firmware import align as geom
from wearface.firmware import detect

from . import detector_eval
from . import train_align as T
from .align_data import ImageZip, read_index


def landmark_errors(window, landmarks_frame) -> np.ndarray:
    """Distance (canonical px) of each of the 5 landmarks from the template under ``window``: (5,)."""
    pts = geom.unmap_points(window, landmarks_frame)
    return np.linalg.norm(pts - geom.LANDMARK_TEMPLATE, axis=1)


def lfw_with_detector(predict, data_dir, n_images: int, iterations: int, seed: int, roll_deg: float = 0.0) -> dict:
    """Landmark errors (per method: (n, 5) array) and correction residuals on LFW scenes.
    ``predict``: alignment inputs (N, 50, 50, 3) uint8 -> corrections (N, 3)."""
    items = [it for it in read_index(data_dir, "lfw") if it.landmarks is not None]
    rng = random.Random(seed)
    picks = rng.sample(items, n_images)
    zf = ImageZip(data_dir, "lfw")
    det = detect.FaceDetector()
    errs = {k: [] for k in ["box", *[f"box+net x{i}" for i in range(1, iterations + 1)], "oracle centre+angle",
                            "oracle similarity"]}
    resid_shift, resid_angle, angles = [], [], []
    found = 0
    for it in picks:
        roll = rng.uniform(-roll_deg, roll_deg) if roll_deg else 0.0
        frame, m = detector_eval.make_scene(zf.read(it.path), rng, roll)
        lm = detector_eval._affine_points(m, it.landmarks)
        scale = math.hypot(m[0, 0], m[1, 0])
        boxes = [b for b in det.detect(frame) if detector_eval._true_box(b, lm[2], detector_eval.LFW128_FACE_PX * scale)]
        if not boxes:
            continue
        found += 1
        w = detect.face_window(boxes[0])
        ideal = geom.fit_window(lm)
        oracle_corr = geom.correction_between(w, ideal)
        errs["box"].append(landmark_errors(w, lm))
        errs["oracle centre+angle"].append(landmark_errors(geom.apply_correction(w, oracle_corr), lm))
        errs["oracle similarity"].append(landmark_errors(ideal, lm))
        cur = w
        for i in range(1, iterations + 1):
            corr = predict(geom.alignment_input(frame, cur)[None])[0]
            if i == 1:
                resid_shift.append(geom.FRAME_SIZE * np.linalg.norm(corr[:2] - oracle_corr[:2]))
                resid_angle.append(math.degrees(abs(corr[2] - oracle_corr[2])))
                angles.append((math.degrees(oracle_corr[2]), math.degrees(corr[2])))
            cur = geom.apply_correction(cur, corr)
            errs[f"box+net x{i}"].append(landmark_errors(cur, lm))
    zf.close()
    return dict(n=n_images, found=found, roll_deg=roll_deg, errors={k: np.array(v) for k, v in errs.items()},
                resid_shift_px=np.array(resid_shift), resid_angle_deg=np.array(resid_angle),
                angles_deg=np.array(angles).reshape(-1, 2))


def _print_lfw(res: dict) -> None:
    print(f"LFW128 scenes (roll +-{res['roll_deg']:.0f} deg): {res['found']}/{res['n']} faces detected; landmark error "
          f"in canonical 112-frame px (mean over faces; eyes = mean of 2 eyes, mouth = mean of 2 corners):")
    print(f"  {'window':<22} {'all 5':>7} {'eyes':>7} {'nose':>7} {'mouth':>7} {'p90 all':>8}")
    for k, e in res["errors"].items():
        all5 = e.mean(1)
        print(f"  {k:<22} {all5.mean():7.2f} {e[:, :2].mean():7.2f} {e[:, 2].mean():7.2f} {e[:, 3:].mean():7.2f} "
              f"{np.percentile(all5, 90):8.2f}")
    s, a = res["resid_shift_px"], res["resid_angle_deg"]
    print(f"  net's first correction vs the oracle's: shift {s.mean():.2f} px mean ({np.percentile(s, 90):.2f} p90), "
          f"angle {a.mean():.2f} deg mean ({np.percentile(a, 90):.2f} p90)")
    oracle, net = res["angles_deg"][:, 0], res["angles_deg"][:, 1]
    slope, bias = np.polyfit(oracle, net, 1)
    print(f"  net's first angle vs the oracle's: slope {slope:.3f}, offset {bias:+.2f} deg "
          f"(slope < 1: large rolls are under-corrected in one pass)")


def int8_predictor(checkpoint, data_dir, count: int = 128):
    """The board's path: the checkpoint quantized by ``host_tools.train.quantize`` (calibrated on
    ``count`` CelebA alignment inputs) and run by ``kernels.runtime.Int8Runtime``."""
    from wearface.kernels.runtime import Int8Runtime

    from .quantize import quantize_checkpoint

    qnet, _ = quantize_checkpoint(checkpoint, data_dir, count=count)
    runtime = Int8Runtime(qnet)
    return lambda x: np.stack([np.asarray(runtime.run(np.ascontiguousarray(im)), np.float64) for im in x])


def report(data_dir, checkpoint, n_images: int = 2000, iterations: int = 2, seed: int = 0, int8: bool = False) -> dict:
    """Print and return the whole evaluation (float net, or with ``int8`` the board's int8 net on LFW)."""
    import torch

    torch.set_num_threads(1)
    model, ckpt = T.load_align_model(checkpoint)
    cfg = ckpt["config"]
    predict = int8_predictor(checkpoint, data_dir) if int8 else (lambda x: T.predict(model, x))
    print(f"alignment net: {checkpoint} ({'int8, kernels runtime' if int8 else 'float, torch'})")
    out = {}
    for roll in (0.0, 20.0):
        res = lfw_with_detector(predict, data_dir, n_images, iterations, seed, roll)
        _print_lfw(res)
        out[("lfw", roll)] = res
    _, val = T.load_images(data_dir, tuple(cfg["sources"]), cfg["val_percent"], cfg["max_per_source"], cfg["seed"],
                           verbose=False, held_out_only=True)
    p = T.Perturbation(**cfg["perturb"]) if isinstance(cfg["perturb"], dict) else cfg["perturb"]
    for label, q in (("broad", T.broad(p)), ("narrow", T.narrow(p))):
        held = T.held_out_error(model, val, q, seed=seed + 1, n=4000)
        what = (f"uniform shift +-{q.shift}, angle +-{q.angle_deg} deg, log scale +-{q.log_scale}" if label == "broad" else
                f"Gaussian shift sd {q.narrow_shift}, angle sd {q.narrow_angle_deg} deg, log scale sd {q.narrow_log_scale}")
        print(f"held-out CelebA, float net, {label} ({len(val)} images, {held['n']} perturbations: {what}): residual shift "
              f"{held['shift_px_mean']:.2f} px mean ({held['shift_px_p90']:.2f} p90), angle {held['angle_deg_mean']:.2f} deg "
              f"mean ({held['angle_deg_p90']:.2f} p90); landmark error {held['landmark_px_before']:.2f} -> "
              f"{held['landmark_px_after']:.2f} px")
        out[("held_out", label)] = held
    return out
