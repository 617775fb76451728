"""Self-supervised training and evaluation of the alignment net (``nets.ALIGN_NET``).

One job: teach the net the 3 numbers of ``wearface.firmware.align`` (dx, dy, angle_rad) that move
a face window onto the face.  Each training image has 5 landmark pseudo-labels; the similarity
fitted to them (``align.fit_window``) is the *ideal* window.  A random similarity perturbation of
it (shift, rotation, scale, spread a little wider than the detector's measured residuals) is the
*start* window; the 50x50 input is rendered from the start window through the board's own
``align.alignment_input``; the target is ``align.correction_between(start, ideal)``.

Loss: the mean Huber distance (canonical px) between where the predicted and the true
corrections put the 5 template landmarks, so dx, dy and angle are weighed by what they do to the
face.  Scale is perturbed but not corrected (the net's 3 numbers have none).

Data: CelebA only (``wild`` 128 crops, ``more`` 112 crops, ``aligned`` 89x109 images; a hash of
the identity picks ~5% held out); LFW is used for evaluation only.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from wearface.firmware import align as geom
from wearface.kernels import nets

from ..errors import DataError
from .align_data import ImageZip, read_index

#: progress of loading and training; ``wearface align train`` prints it on stdout (``host_tools/cli.py``)
_log = logging.getLogger(__name__)

#: The template landmarks relative to the canonical centre, canonical px (5, 2).
_TEMPLATE_REL = geom.LANDMARK_TEMPLATE - geom.FRAME_CENTRE
#: Edge-replicating padding (px) around a stored crop, so perturbed windows never see black
#: (reflection was tried: it mirrors half-faces into the context).
PAD_PX = 48
#: Order of the template rows after a horizontal flip (reye <-> leye, rmouth <-> lmouth).
FLIP_ORDER = (1, 0, 2, 4, 3)


@dataclass
class Perturbation:
    """Start-window perturbations: shift (frame widths, each axis), rotation (degrees), log scale.

    A ``narrow_fraction`` of the samples is Gaussian with the ``narrow_*`` standard deviations
    (about the detector's measured residual spread on LFW: dx 0.023, dy 0.015, angle 2.7 deg,
    log scale 0.075), so the net is most precise where most faces are; the rest is uniform
    within the broad ranges, which every sample is also clipped to.  Broad defaults: ~1.3x the
    detector's p99 residual on LFW with +-20 deg roll (dx 0.097, dy 0.057, log scale 0.24) and
    a little more than the +-20 deg roll the cascade still detects (95.8%).
    """

    shift: float = 0.12
    angle_deg: float = 25.0
    log_scale: float = 0.3
    narrow_fraction: float = 0.0
    narrow_shift: float = 0.03
    narrow_angle_deg: float = 6.0
    narrow_log_scale: float = 0.1


@dataclass
class AlignTrainConfig:
    net: str = "align"
    batchnorm: bool = True
    data: str = ""
    sources: tuple = ("wild", "more", "aligned")
    max_per_source: int = 0
    val_percent: int = 5
    epochs: int = 24
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 1
    perturb: Perturbation = field(default_factory=Perturbation)


def is_held_out(identity: str, val_percent: int) -> bool:
    """Deterministic identity-level split: the same identity is always on the same side."""
    h = int(hashlib.sha1(identity.encode()).hexdigest()[:8], 16)
    return h % 100 < val_percent


@dataclass
class FaceImage:
    """A stored crop, edge-padded by PAD_PX, and its ideal window in padded-image pixels."""

    image: np.ndarray
    landmarks: np.ndarray  # (5, 2) in padded-image pixels


def load_images(data_dir, sources, val_percent: int, max_per_source: int = 0, seed: int = 0,
                verbose: bool = True, held_out_only: bool = False) -> tuple[list[FaceImage], list[FaceImage]]:
    """Decode every image with landmarks from ``sources``: (train, held_out) lists (train stays
    empty with ``held_out_only``).  Logs one line per source (at DEBUG when not ``verbose``)."""
    train, val = [], []
    rng = np.random.default_rng(seed)
    for name in sources:
        items = [it for it in read_index(data_dir, name) if it.landmarks is not None]
        if max_per_source and len(items) > max_per_source:
            items = [items[i] for i in sorted(rng.choice(len(items), max_per_source, replace=False))]
        zf = ImageZip(data_dir, name)
        t0 = time.time()
        for it in items:
            held = is_held_out(f"{name}:{it.identity}", val_percent)
            if held_out_only and not held:
                continue
            img = cv2.copyMakeBorder(zf.read(it.path), PAD_PX, PAD_PX, PAD_PX, PAD_PX, cv2.BORDER_REPLICATE)
            face = FaceImage(img, it.landmarks + PAD_PX)
            (val if held else train).append(face)
        zf.close()
        _log.log(logging.INFO if verbose else logging.DEBUG,
                 f"loaded {len(items)} images from {name} in {time.time() - t0:.1f} s")
    if not train and not held_out_only:
        raise DataError(f"{data_dir}: no training images with landmarks in {list(sources)}")
    return train, val


def random_start(ideal: np.ndarray, rng: np.random.Generator, p: Perturbation) -> np.ndarray:
    """A start window: ``ideal`` o Q, Q a random canonical similarity within ``p``."""
    if p.narrow_fraction and rng.random() < p.narrow_fraction:
        tx, ty = np.clip(rng.normal(0, p.narrow_shift, 2), -p.shift, p.shift)
        a = math.radians(float(np.clip(rng.normal(0, p.narrow_angle_deg), -p.angle_deg, p.angle_deg)))
        s = math.exp(float(np.clip(rng.normal(0, p.narrow_log_scale), -p.log_scale, p.log_scale)))
    else:
        tx, ty = rng.uniform(-p.shift, p.shift, 2)
        a = math.radians(rng.uniform(-p.angle_deg, p.angle_deg))
        s = math.exp(rng.uniform(-p.log_scale, p.log_scale))
    q = geom.window_from_params((geom.FRAME_CENTRE + geom.FRAME_SIZE * tx, geom.FRAME_CENTRE + geom.FRAME_SIZE * ty), s, a)
    return (geom._to3(ideal) @ geom._to3(q))[:2]


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness/contrast, sometimes grey or blurred; uint8 in and out."""
    out = img.astype(np.float32) * rng.uniform(0.6, 1.4) + rng.uniform(-40, 40)
    if rng.random() < 0.15:
        out[:] = out.mean(axis=2, keepdims=True)
    if rng.random() < 0.2:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.0))
    if rng.random() < 0.3:
        out += rng.normal(0, rng.uniform(1, 6), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def flip_face(face: FaceImage) -> FaceImage:
    """The mirror image, with landmarks mirrored and relabelled (the image's left eye stays "reye")."""
    img = cv2.flip(face.image, 1)  # SIMD copy; numpy's [:, ::-1] copy was ~1 ms per image
    lm = face.landmarks[list(FLIP_ORDER)].copy()
    lm[:, 0] = img.shape[1] - 1 - lm[:, 0]
    return FaceImage(img, lm)


def make_example(face: FaceImage, rng: np.random.Generator, p: Perturbation, augment: bool = True):
    """(uint8 (50, 50, 3) RGB alignment input, float32 (3,) target correction).  The target is
    always computed from the landmarks of the image actually rendered (after any flip)."""
    if augment and rng.random() < 0.5:
        face = flip_face(face)
    img, lm = face.image, face.landmarks
    ideal = geom.fit_window(lm)
    start = random_start(ideal, rng, p)
    x = geom.alignment_input(img, start)
    if augment:
        x = photometric(x, rng)
    return x, geom.correction_between(start, ideal).astype(np.float32)


def make_batch(faces, idx, rng, p, augment=True):
    xs, ys = zip(*(make_example(faces[i], rng, p, augment) for i in idx))
    return np.stack(xs), np.stack(ys)


def template_points(corr: torch.Tensor) -> torch.Tensor:
    """Where a correction's transform T puts the 5 template landmarks, relative to the canonical
    centre: (N, 5, 2) canonical px.  Differentiable."""
    dx, dy, a = corr[:, 0:1], corr[:, 1:2], corr[:, 2:3]
    t = torch.as_tensor(_TEMPLATE_REL, dtype=corr.dtype)
    cos, sin = torch.cos(a), torch.sin(a)
    x = cos * t[:, 0] - sin * t[:, 1] + geom.FRAME_SIZE * dx
    y = sin * t[:, 0] + cos * t[:, 1] + geom.FRAME_SIZE * dy
    return torch.stack([x, y], dim=-1)


def landmark_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Huber (beta 1 px) distance between the landmarks moved by ``pred`` and by ``target``."""
    d = (template_points(pred) - template_points(target)).norm(dim=-1)
    return F.smooth_l1_loss(d, torch.zeros_like(d), beta=1.0)


def build_model(cfg: AlignTrainConfig):
    from .torch_nets import build_torch_net

    return build_torch_net(nets.get_net(cfg.net), batchnorm=cfg.batchnorm)


def to_input(x_uint8_nhwc: np.ndarray) -> torch.Tensor:
    from .torch_nets import to_input as _to_input

    return _to_input(x_uint8_nhwc)


def checkpoint_dict(cfg, model, opt=None, sched=None, epoch=0, step=0, metrics=None, wall_s=0.0) -> dict:
    cfg_d = asdict(cfg)
    ckpt = {
        "config": cfg_d,
        "model": model.state_dict(),
        "epoch": epoch,
        "step": step,
        "wall_s": wall_s,
        "metrics": metrics or {},
        "output": "align correction (dx, dy in 112-frame widths, angle_rad); see wearface.firmware.align",
    }
    if opt is not None:
        ckpt["optimizer"] = opt.state_dict()
        ckpt["scheduler"] = sched.state_dict()
        ckpt["torch_rng"] = torch.get_rng_state()
    return ckpt


def _save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_align_model(path):
    """(model in eval mode, checkpoint dict) from an align checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint missing")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        cfg = ckpt["config"]
        if cfg.get("net") != "align":
            raise DataError(f"{path}: checkpoint is for net {cfg.get('net')!r}, expected 'align'")
        from .torch_nets import build_torch_net

        model = build_torch_net(nets.get_net("align"), batchnorm=cfg.get("batchnorm", True))
        model.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError, OSError, TypeError, ValueError, EOFError, AttributeError, pickle.UnpicklingError) as exc:
        raise DataError(f"{path}: not an align checkpoint ({exc})") from None
    return model.eval(), ckpt


@torch.no_grad()
def predict(model, inputs_uint8: np.ndarray) -> np.ndarray:
    """Corrections (N, 3) float64 for alignment inputs (N, 50, 50, 3) uint8 RGB."""
    model.eval()
    return model(to_input(inputs_uint8)).double().numpy()


def broad(p: Perturbation) -> Perturbation:
    """Only the broad uniform perturbations of ``p`` (for comparable held-out numbers)."""
    return replace(p, narrow_fraction=0.0)


def narrow(p: Perturbation) -> Perturbation:
    """Only the narrow Gaussian (detector-like) perturbations of ``p``."""
    return replace(p, narrow_fraction=1.0)


@torch.no_grad()
def held_out_error(model, faces, p: Perturbation, seed: int = 1, n: int = 2000) -> dict:
    """Residual error of one correction on held-out images with fresh perturbations: mean and
    p90 of |shift| (canonical px), |angle| (deg), and the landmark error before and after (px)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(faces), min(n, len(faces)), replace=len(faces) < n)
    x, y = make_batch(faces, idx, rng, p, augment=False)
    pred = predict(model, x)
    t = torch.as_tensor(y, dtype=torch.float64)
    res_shift = geom.FRAME_SIZE * np.linalg.norm(pred[:, :2] - y[:, :2], axis=1)
    res_angle = np.degrees(np.abs(pred[:, 2] - y[:, 2]))
    before = (template_points(torch.zeros_like(t)) - template_points(t)).norm(dim=-1).mean(1).numpy()
    after = (template_points(torch.as_tensor(pred)) - template_points(t)).norm(dim=-1).mean(1).numpy()
    return dict(n=len(idx), shift_px_mean=float(res_shift.mean()), shift_px_p90=float(np.percentile(res_shift, 90)),
                angle_deg_mean=float(res_angle.mean()), angle_deg_p90=float(np.percentile(res_angle, 90)),
                landmark_px_before=float(before.mean()), landmark_px_after=float(after.mean()))


def train(cfg: AlignTrainConfig, out_dir, resume: bool = True) -> dict:
    """Train; checkpoints ``out_dir/last.pt`` every epoch (resumes from it) and returns metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    train_faces, val_faces = load_images(cfg.data, cfg.sources, cfg.val_percent, cfg.max_per_source, cfg.seed)
    _log.info(f"train {len(train_faces)} images, held out {len(val_faces)}")
    model = build_model(cfg)
    steps_per_epoch = max(len(train_faces) // cfg.batch_size, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.1)
    epoch = step = 0
    wall_s = 0.0
    last = out / "last.pt"
    if resume and last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["torch_rng"])
        epoch, step, wall_s = ckpt["epoch"], ckpt["step"], ckpt["wall_s"]
        _log.info(f"resumed from {last} at epoch {epoch}")
    metrics = {}
    while epoch < cfg.epochs:
        t0 = time.time()
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(len(train_faces))
        model.train()
        total = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x, y = make_batch(train_faces, idx, rng, cfg.perturb)
            loss = landmark_loss(model(to_input(x)), torch.as_tensor(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total += float(loss.detach())
        epoch += 1
        wall_s += time.time() - t0
        metrics = held_out_error(model, val_faces or train_faces, broad(cfg.perturb), n=1000)
        metrics["train_loss"] = total / steps_per_epoch
        _log.info(f"epoch {epoch}/{cfg.epochs} loss {metrics['train_loss']:.3f} held-out: "
                  f"shift {metrics['shift_px_mean']:.2f} px, "
            f"angle {metrics['angle_deg_mean']:.2f} deg, landmarks {metrics['landmark_px_before']:.2f} -> "
            f"{metrics['landmark_px_after']:.2f} px ({time.time() - t0:.0f} s, lr {sched.get_last_lr()[0]:.2e})")
        _save(checkpoint_dict(cfg, model, opt, sched, epoch, step, metrics, wall_s), last)
    final = checkpoint_dict(cfg, model, epoch=epoch, step=step, metrics=metrics, wall_s=wall_s)
    _save(final, out / "align.pt")
    metrics["held_out_broad"] = held_out_error(model, val_faces or train_faces, broad(cfg.perturb), n=4000)
    metrics["held_out_narrow"] = held_out_error(model, val_faces or train_faces, narrow(cfg.perturb), n=4000)
    _log.info(f"done: {out / 'align.pt'} ({wall_s / 60:.1f} min); held-out broad {metrics['held_out_broad']}; "
        f"narrow {metrics['held_out_narrow']}")
    return metrics
