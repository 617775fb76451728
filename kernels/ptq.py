"""Post-training quantization: float weights + calibration images -> a ``QuantizedNet``.

Imports numpy only (the host's quantize.py extracts weights from torch and calls this).

Scheme (TFLite int8, see ``docs/quantization.md``):

* weights: symmetric per output channel, ``w_scale[c] = max|W[c]| / 127``,
  ``q = clip(round_half_even(W / w_scale), -127, 127)``, zero point 0;
* bias: int32 ``round(b / (in_scale * w_scale[c]))``;
* activations: per tensor, from the float forward of the calibration images:
  range [lo, hi] always containing 0; ReLU outputs use [0, hi] (zero point -128);
  ``scale = (hi - lo) / 255``, ``zero_point = clip(round(-128 - lo / scale), -128, 127)``;
  ``method`` picks hi (and lo): ``"minmax"`` the extremes, ``"percentile"`` the 99.99th
  percentile of |values| per side, ``"mse"`` the clip that minimises the rounding+clipping error;
* multiplier, shift: ``quant.quantize_multiplier(in_scale * w_scale[c] / out_scale)``;
* max-pool and flatten pass scale and zero point through.

``random_quantized_net(spec, seed)`` builds a plausible int8 net for tests and test bundles:
He-initialised random float weights, calibrated on random smooth images.
"""
from __future__ import annotations

import numpy as np

from . import float_ref, nets, quant
from .errors import QuantizationError, ShapeError
from .qnet import QAffine, QConv, QFlatten, QMaxPool, QuantizedNet

METHODS = ("percentile", "minmax", "mse")
PERCENTILE = 99.99
#: values kept per layer per calibration image for the percentile / MSE searches
SAMPLES_PER_IMAGE = 20000


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float (O, ...) -> (int8 (O, ...) in [-127, 127], float64 per-channel scale (O,))."""
    w = np.asarray(w, dtype=np.float64)
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) if w.size else np.zeros(w.shape[0])
    scale = np.where(amax > 0, amax / quant.WEIGHT_MAX, 1.0)
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = np.clip(np.rint(w / scale.reshape(shape)), -quant.WEIGHT_MAX, quant.WEIGHT_MAX).astype(np.int8)
    return q, scale


def activation_params(lo: float, hi: float) -> tuple[float, int]:
    """Float range -> (scale, zero_point) with 0 in range; a degenerate range gets scale 1/255."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 1e-12:
        hi = lo + 1.0
    scale = (hi - lo) / 255.0
    zero_point = int(np.clip(np.rint(-128.0 - lo / scale), quant.INT8_MIN, quant.INT8_MAX))
    return scale, zero_point


def _mse_clip(values: np.ndarray, lo: float, hi: float, relu: bool) -> tuple[float, float]:
    best = (np.inf, lo, hi)
    for frac in np.linspace(0.2, 1.0, 41):
        clo, chi = (0.0 if relu else lo * frac), hi * frac
        scale, zp = activation_params(clo, chi)
        q = np.clip(np.rint(values / scale) + zp, -128, 127)
        err = float(np.mean(((q - zp) * scale - values) ** 2))
        if err < best[0]:
            best = (err, clo, chi)
    return best[1], best[2]


def calibration_range(samples: np.ndarray, lo: float, hi: float, relu: bool, method: str) -> tuple[float, float]:
    """Pick the float range [lo, hi] of one activation tensor from its calibration samples."""
    if relu:
        lo = 0.0
    if method == "minmax" or samples.size == 0:
        return lo, hi
    if method == "percentile":
        p_hi = float(np.percentile(samples, PERCENTILE))
        p_lo = 0.0 if relu else float(np.percentile(samples, 100.0 - PERCENTILE))
        return min(p_lo, 0.0), max(p_hi, 0.0)
    if method == "mse":
        return _mse_clip(samples.astype(np.float64), lo, hi, relu)
    raise QuantizationError(f"unknown calibration method {method!r}; expected one of {METHODS}")


def _collect_ranges(spec, weights, images, rng) -> dict:
    """Per weighted layer: (min, max, samples) of its float output over the calibration images."""
    stats: dict = {}
    for image in images:
        outs = float_ref.forward_trace(spec, weights, image)
        for layer, y in zip(spec.layers, outs):
            if not isinstance(layer, (nets.Conv, nets.Affine)):
                continue
            flat = y.reshape(-1)
            pick = flat if flat.size <= SAMPLES_PER_IMAGE else rng.choice(flat, SAMPLES_PER_IMAGE, replace=False)
            lo, hi, parts = stats.get(layer.name, (np.inf, -np.inf, []))
            parts.append(pick)
            stats[layer.name] = (min(lo, float(flat.min())), max(hi, float(flat.max())), parts)
    return stats


def quantize_net(spec: nets.NetSpec, float_weights: dict, calibration_images_uint8, method: str = "percentile") -> QuantizedNet:
    """Quantize float weights to an int8 ``QuantizedNet`` (see the module docstring).

    float_weights: ``{layer_name: (W, b)}``, conv W (O, KH, KW, I), affine W (O, I) in NHWC flatten
    order, BatchNorm folded.  calibration_images_uint8: iterable of uint8 (H, W, 3) = spec.input_shape.
    """
    if method not in METHODS:
        raise QuantizationError(f"unknown calibration method {method!r}; expected one of {METHODS}")
    float_ref.check_float_weights(spec, float_weights)
    images = list(calibration_images_uint8)
    if not images:
        raise ShapeError(f"net {spec.name}: quantize_net needs at least one calibration image")
    for i, im in enumerate(images):
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.shape != tuple(spec.input_shape):
            raise ShapeError(
                f"net {spec.name}: calibration image {i} expected uint8 {spec.input_shape}, "
                f"found {getattr(im, 'dtype', type(im).__name__)} {getattr(im, 'shape', '')}"
            )
    stats = _collect_ranges(spec, float_weights, images, np.random.default_rng(0))

    in_scale, in_zp = nets.INPUT_SCALE, 0
    layers: list = []
    for layer in spec.layers:
        if isinstance(layer, nets.MaxPool):
            layers.append(QMaxPool(layer))
            continue
        if isinstance(layer, nets.Flatten):
            layers.append(QFlatten(layer))
            continue
        w, b = float_weights[layer.name]
        qw, w_scale = quantize_weights(w)
        # Scales are rounded to float32 (as stored in TFLite and in bundles) before the bias and
        # multipliers are derived from them, so a stored net recomputes to the same integers.
        w_scale = w_scale.astype(np.float32).astype(np.float64)
        lo, hi, parts = stats[layer.name]
        lo, hi = calibration_range(np.concatenate(parts), lo, hi, layer.relu, method)
        out_scale, out_zp = activation_params(lo, hi)
        out_scale = float(np.float32(out_scale))
        bias_scale = in_scale * w_scale
        bias = np.clip(np.rint(np.asarray(b, np.float64) / bias_scale), quant.INT32_MIN // 2, quant.INT32_MAX // 2)
        mult, shift = quant.quantize_multipliers(bias_scale / out_scale)
        act_min = out_zp if layer.relu else quant.INT8_MIN
        cls = QConv if isinstance(layer, nets.Conv) else QAffine
        layers.append(
            cls(
                spec=layer, weights=qw, bias=bias.astype(np.int32), multiplier=mult, shift=shift,
                input_zero_point=in_zp, output_zero_point=out_zp, output_scale=float(out_scale),
                act_min=act_min, act_max=quant.INT8_MAX, weight_scale=w_scale.astype(np.float32),
            )
        )
        in_scale, in_zp = out_scale, out_zp
    return QuantizedNet(
        spec=spec, layers=layers, input_scale=nets.INPUT_SCALE, input_zero_point=0,
        output_scale=float(in_scale), output_zero_point=int(in_zp),
        metadata={"calibration": method, "calibration_images": len(images)},
    )


def random_float_weights(spec: nets.NetSpec, seed: int) -> dict:
    """He-normal float32 weights for every conv/affine of ``spec`` (small random biases)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for row in nets.iter_counts(spec):
        layer = row.layer
        if isinstance(layer, nets.Conv):
            shape = (layer.out_channels, layer.kernel, layer.kernel, row.in_shape[2])
        elif isinstance(layer, nets.Affine):
            shape = (layer.out_features, row.in_shape[0])
        else:
            continue
        fan_in = int(np.prod(shape[1:]))
        w = rng.standard_normal(size=shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        b = rng.normal(0.0, 0.05, size=shape[0]).astype(np.float32)
        weights[layer.name] = (w, b)
    return weights


def random_images(shape: tuple, count: int, seed: int) -> list:
    """``count`` smooth random uint8 images (H, W, 3): blurred noise plus a gradient, face-like range."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    images = []
    for _ in range(count):
        coarse = rng.uniform(0, 255, size=(h // 8 + 2, w // 8 + 2, c))
        up = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[:h, :w]
        noise = rng.normal(0, 20, size=(h, w, c))
        grad = np.linspace(-40, 40, w)[None, :, None]
        images.append(np.clip(0.7 * up + 0.3 * 128 + noise + grad, 0, 255).astype(np.uint8))
    return images


def random_quantized_net(spec: nets.NetSpec, seed: int, calibration_count: int = 2) -> QuantizedNet:
    """A plausible random int8 net: ``random_float_weights`` calibrated (minmax) on random images."""
    weights = random_float_weights(spec, seed)
    images = random_images(spec.input_shape, calibration_count, seed + 1)
    qnet = quantize_net(spec, weights, images, method="minmax")
    qnet.metadata["random_seed"] = seed
    return qnet
