"""Augmentation of whole batches in torch, on the training device: what a wearable camera does to a face.

One job: turn a batch of clean 112x112 RGB uint8 crops into the nets' float input, damaged the way a
head-worn camera damages faces and LFW hides.  Each damage is applied to a random share of the batch, drawn
from a ``torch.Generator`` the caller seeds per step (so a resumed run draws the same damage).  The student
is trained towards the teacher's descriptor of the *clean* crop, so it learns the invariance.

Damage (probabilities per image, all independent):

* geometry: flip; the detector's box jitter (shift, rotation, scale); faces that fill the frame (zoom in);
* light: brightness/contrast; grey; strong one-sided light (a linear ramp of gain across the face); hard
  shadows (a half-plane darkened with a sharp edge); low light with gamma;
* optics: blur (down- then up-sampling: low resolution and defocus alike); sensor noise;
* occlusion: a hand-like block from an edge; a dark band over the eyes (sunglasses); a mask over the mouth
  and chin;
* JPEG at low quality (cv2, on the CPU: only where the images already are).

``HARD`` is the strong setting used for training towards invariance and, with a fixed seed, for the "hard
validation" copy of the held-out identities (``hard_copy``).  ``Damage(0)`` leaves only flip and the
detector's small jitter.

Shapes: input uint8 (B, 112, 112, 3) NHWC RGB; output float32 (B, 3, 112, 112) NCHW, ``(pixel - 128) / 128``
as ``torch_nets.to_input``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wearface.kernels import nets


@dataclass(frozen=True)
class Damage:
    """Per-image probabilities and ranges of each damage; ``strength`` scales every probability (0: geometry only)."""

    strength: float = 1.0
    flip: float = 0.5
    shift_px: float = 5.0  # detector box jitter, pixels of the 112 frame
    rotate_deg: float = 10.0
    scale: float = 0.08  # box size jitter, ± fraction
    fill_p: float = 0.10  # face fills the frame: zoom in 1.15-1.4x
    color_p: float = 0.8  # brightness ± 25, contrast × (1 ± 0.3)
    grey_p: float = 0.15
    side_light_p: float = 0.20  # gain ramp 0.15-0.6 on the dark side to 1.0-1.4 on the lit side
    shadow_p: float = 0.10  # half-plane × 0.25-0.6
    low_light_p: float = 0.15  # × 0.25-0.6, then gamma 0.7-1.8
    blur_p: float = 0.20  # resize to 24-72 px and back
    noise_p: float = 0.20  # Gaussian, σ 2-14 grey levels
    hand_p: float = 0.06
    glasses_p: float = 0.05
    mask_p: float = 0.05
    jpeg_p: float = 0.10  # quality 12-50 (CPU only)

    def p(self, name: str) -> float:
        return min(1.0, getattr(self, name) * self.strength)

    def as_dict(self) -> dict:
        return asdict(self)


HARD = Damage(1.0)
GEOMETRY_ONLY = Damage(0.0)


def _u(gen: torch.Generator, n: int, lo: float, hi: float, device) -> torch.Tensor:
    return torch.rand(n, generator=gen).to(device) * (hi - lo) + lo


def _mask(gen: torch.Generator, n: int, p: float, device) -> torch.Tensor:
    """(n,) bool: which images get a damage of probability ``p``."""
    return torch.rand(n, generator=gen).to(device) < p


def jpeg_damage(images: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """JPEG round trip (quality 12-50) of a random share ``p`` of a uint8 NHWC batch on the CPU (in place)."""
    if p <= 0 or images.device.type != "cpu":
        return images
    import cv2

    pick = torch.rand(len(images), generator=gen) < p
    quality = torch.randint(12, 51, (len(images),), generator=gen)
    for i in torch.nonzero(pick).flatten().tolist():
        ok, buf = cv2.imencode(".jpg", images[i].numpy(), [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
        if ok:
            images[i] = torch.from_numpy(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(images[i].shape))
    return images


def _geometry(x: torch.Tensor, gen: torch.Generator, d: Damage) -> torch.Tensor:
    """Flip, box jitter and zoom as one affine resampling (border pixels replicated)."""
    n, dev = x.shape[0], x.device
    angle = _u(gen, n, -d.rotate_deg, d.rotate_deg, dev) * (math.pi / 180)
    zoom = 1.0 + _u(gen, n, -d.scale, d.scale, dev)
    fill = _mask(gen, n, d.p("fill_p"), dev)
    zoom = torch.where(fill, _u(gen, n, 1.15, 1.4, dev), zoom)
    shift = _u(gen, 2 * n, -d.shift_px, d.shift_px, dev).view(n, 2) * (2.0 / x.shape[-1])
    flip = torch.where(_mask(gen, n, d.flip, dev), -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _ramp(gen: torch.Generator, n: int, size: int, device) -> torch.Tensor:
    """(n, 1, size, size) values in [-1, 1] varying linearly along a random direction per image."""
    phi = _u(gen, n, 0, 2 * math.pi, device)
    t = torch.linspace(-1, 1, size, device=device)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    r = torch.cos(phi)[:, None, None] * xx + torch.sin(phi)[:, None, None] * yy
    return (r / math.sqrt(2)).unsqueeze(1)


def _pick(gen: torch.Generator, n: int, p: float, device) -> torch.Tensor:
    """Indices of the images (of ``n``) that get a damage of probability ``p``: ops run on those only."""
    return torch.nonzero(torch.rand(n, generator=gen) < p).flatten().to(device)


def _col(v: torch.Tensor) -> torch.Tensor:
    return v[:, None, None, None]


def _light(x: torch.Tensor, gen: torch.Generator, d: Damage) -> torch.Tensor:
    n, dev, size = x.shape[0], x.device, x.shape[-1]
    # brightness / contrast around each image's mean: most images get it, so the whole batch is computed
    m = _mask(gen, n, d.p("color_p"), dev)
    c = torch.where(m, 1.0 + _u(gen, n, -0.3, 0.3, dev), torch.ones(n, device=dev))
    b = torch.where(m, _u(gen, n, -25, 25, dev) / 255, torch.zeros(n, device=dev))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * _col(c) + mean + _col(b)
    i = _pick(gen, n, d.p("grey_p"), dev)
    if len(i):
        grey = (x[i] * torch.tensor([0.299, 0.587, 0.114], device=dev)[None, :, None, None]).sum(1, keepdim=True)
        x[i] = grey.expand(-1, 3, -1, -1)
    i = _pick(gen, n, d.p("side_light_p"), dev)  # one-sided light: gain from `dark` to `lit` across the face
    if len(i):
        dark, lit = _col(_u(gen, len(i), 0.15, 0.6, dev)), _col(_u(gen, len(i), 1.0, 1.4, dev))
        x[i] = x[i] * (dark + (lit - dark) * (_ramp(gen, len(i), size, dev) + 1) / 2)
    i = _pick(gen, n, d.p("shadow_p"), dev)  # hard shadow: a half-plane with a sharp edge
    if len(i):
        edge, level = _col(_u(gen, len(i), -0.4, 0.4, dev)), _col(_u(gen, len(i), 0.25, 0.6, dev))
        x[i] = x[i] * torch.where(_ramp(gen, len(i), size, dev) > edge, level, torch.ones_like(level))
    i = _pick(gen, n, d.p("low_light_p"), dev)  # low light and gamma
    if len(i):
        gamma, level = _col(_u(gen, len(i), 0.7, 1.8, dev)), _col(_u(gen, len(i), 0.25, 0.6, dev))
        x[i] = x[i].clamp(0, 1) ** gamma * level
    return x


def _optics(x: torch.Tensor, gen: torch.Generator, d: Damage) -> torch.Tensor:
    n, dev, size = x.shape[0], x.device, x.shape[-1]
    i = _pick(gen, n, d.p("blur_p"), dev)
    small = int(torch.randint(24, 73, (1,), generator=gen))  # one size per batch: the resize is batched
    if len(i):
        low = F.interpolate(x[i], size=(small, small), mode="area")
        x[i] = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    i = _pick(gen, n, d.p("noise_p"), dev)
    if len(i):
        sigma = _col(_u(gen, len(i), 2, 14, dev) / 255)
        x[i] = x[i] + torch.randn((len(i), *x.shape[1:]), generator=gen).to(dev) * sigma
    return x


def _box(size: int, y0, y1, x0, x1, device) -> torch.Tensor:
    """(n, 1, size, size) bool: per image the rectangle rows [y0, y1) x cols [x0, x1) (tensors of n pixels)."""
    r = torch.arange(size, device=device)
    rows = (r[None, :] >= y0[:, None]) & (r[None, :] < y1[:, None])
    cols = (r[None, :] >= x0[:, None]) & (r[None, :] < x1[:, None])
    return (rows[:, :, None] & cols[:, None, :]).unsqueeze(1)


def _occlusion(x: torch.Tensor, gen: torch.Generator, d: Damage) -> torch.Tensor:
    n, dev, size = x.shape[0], x.device, x.shape[-1]
    i = _pick(gen, n, d.p("hand_p"), dev)  # a hand from the left or right edge, lower two thirds
    if len(i):
        k = len(i)
        skin = torch.tensor([0.78, 0.57, 0.45], device=dev)[None, :, None, None] * _col(_u(gen, k, 0.5, 1.2, dev))
        w = (_u(gen, k, 0.2, 0.45, dev) * size).long()
        x0 = torch.where(torch.rand(k, generator=gen).to(dev) < 0.5, torch.zeros_like(w), size - w)
        y0 = (_u(gen, k, 0.3, 0.6, dev) * size).long()
        x[i] = torch.where(_box(size, y0, torch.full_like(y0, size), x0, x0 + w, dev), skin.expand(-1, -1, size, size), x[i])
    i = _pick(gen, n, d.p("glasses_p"), dev)  # sunglasses: a dark band over the eyes (near row 50 of the 112 frame)
    if len(i):
        yc = _u(gen, len(i), 44, 56, dev).long()
        band = _box(size, yc - 9, yc + 9, torch.full_like(yc, 14), torch.full_like(yc, size - 14), dev)
        dark = torch.rand(len(i), 3, generator=gen).to(dev)[:, :, None, None] * 0.15
        x[i] = torch.where(band, dark.expand(-1, -1, size, size), x[i])
    i = _pick(gen, n, d.p("mask_p"), dev)  # a mask over nose tip, mouth and chin
    if len(i):
        top = _u(gen, len(i), 66, 78, dev).long()
        cover = _box(size, top, torch.full_like(top, size), torch.full_like(top, 12), torch.full_like(top, size - 12), dev)
        colour = 0.4 + 0.6 * torch.rand(len(i), 3, generator=gen).to(dev)[:, :, None, None]
        x[i] = torch.where(cover, colour.expand(-1, -1, size, size), x[i])
    return x


class BatchAugment:
    """Callable: ``(uint8 (B, 112, 112, 3) tensor, generator) -> float32 (B, 3, 112, 112)`` network input.

    Runs where ``device`` says (the uint8 batch is moved there first); the generator lives on the CPU, so the
    draws are identical on every device.  ``damage=None``: no augmentation at all (plain ``to_input``)."""

    def __init__(self, damage: Damage | None = HARD, device: str | torch.device = "cpu"):
        self.damage, self.device = damage, torch.device(device)

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        d = self.damage
        if d is not None:
            images = jpeg_damage(images.clone(), gen, d.p("jpeg_p"))
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float() / 255.0
        if d is not None:
            x = _geometry(x, gen, d)
            x = _light(x, gen, d)
            x = _optics(x, gen, d)
            x = _occlusion(x, gen, d)
        x = x.clamp(0, 1) * 255.0
        return (x - nets.INPUT_ZERO_POINT) * nets.INPUT_SCALE


def hard_copy(images: np.ndarray, seed: int = 2024, damage: Damage = HARD) -> np.ndarray:
    """A fixed damaged copy of uint8 (N, 112, 112, 3) crops (the "hard validation" images), uint8 NHWC."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in range(0, len(images), 256):
        x = BatchAugment(damage)(torch.from_numpy(np.ascontiguousarray(images[s:s + 256])), gen)
        pixels = (x / nets.INPUT_SCALE + nets.INPUT_ZERO_POINT).round().clamp(0, 255).to(torch.uint8)
        out.append(pixels.permute(0, 2, 3, 1).numpy())
    return np.concatenate(out) if out else images.copy()
