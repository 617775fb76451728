"""Plain-numpy integer reference of every int8 op: the specification the fast kernels must equal.

Like TFLite Micro's ``reference/integer_ops``: slow, obvious, bit-exact.  Imports numpy only.
Shapes are NHWC for a single image: (H, W, C); flat tensors are (N,).  Integer semantics:

* conv / affine: ``acc[c] = bias[c] + sum_k (x[k] - input_zero_point) * w[c, k]`` in int32
  (computed here in int64 and checked to fit: it cannot overflow when
  ``|bias| + K * 255 * 127 < 2**31``, which ``validate.check_weighted_layer`` enforces).
  Padding taps contribute 0, i.e. the input is padded with ``input_zero_point``.
* requantize + clamp: ``y = clamp(MBQM(acc, multiplier[c], shift[c]) + output_zero_point,
  act_min, act_max)``, MBQM = TFLite's double rounding (``quant.py``).  ReLU is act_min =
  output_zero_point.
* max-pool on int8, windows per ``nets.MaxPool`` (floor drops trailing rows; ceil's last window
  covers only the elements it overlaps).
* flatten: NHWC row-major, index ``(h*W + w)*C + c``.
"""
from __future__ import annotations

import numpy as np

from . import nets, quant
from .errors import QuantizationError
from .qnet import QAffine, QConv, QFlatten, QMaxPool, QuantizedNet


def requantize(acc: np.ndarray, multiplier, shift, output_zero_point: int, act_min: int, act_max: int) -> np.ndarray:
    """int32 accumulators (..., C) -> int8 (..., C); see the module docstring."""
    return quant.requantize_ref(acc, multiplier, shift, output_zero_point, act_min, act_max)


def im2col(x: np.ndarray, kernel: int, stride: int, padding: int, pad_value) -> np.ndarray:
    """(H, W, C) -> (OH, OW, KH*KW*C) patches, tap order (kh, kw, c) as OHWI weights; a copy."""
    h, w, c = x.shape
    xp = np.full((h + 2 * padding, w + 2 * padding, c), pad_value, dtype=x.dtype)
    xp[padding : padding + h, padding : padding + w] = x
    win = np.lib.stride_tricks.sliding_window_view(xp, (kernel, kernel), axis=(0, 1))  # (H', W', C, KH, KW)
    win = win[::stride, ::stride]
    oh, ow = win.shape[:2]
    return np.ascontiguousarray(win.transpose(0, 1, 3, 4, 2)).reshape(oh, ow, kernel * kernel * c)


def _check_acc(acc: np.ndarray, where: str) -> np.ndarray:
    if acc.size and (acc.max() > quant.INT32_MAX or acc.min() < quant.INT32_MIN):
        raise QuantizationError(f"{where}: int32 accumulator overflow ({acc.min()}..{acc.max()})")
    return acc.astype(np.int32)


def conv_acc(x: np.ndarray, q: QConv) -> np.ndarray:
    """int8 (H, W, I) -> int32 accumulators (OH, OW, O), bias included."""
    s = q.spec
    cols = im2col(x.astype(np.int64) - q.input_zero_point, s.kernel, s.stride, s.padding, 0)
    w = q.weights.reshape(q.weights.shape[0], -1).astype(np.int64)
    return _check_acc(cols @ w.T + q.bias.astype(np.int64), s.name)


def conv(x: np.ndarray, q: QConv) -> np.ndarray:
    """Int8 KxK convolution with stride/padding, requantized and clamped: int8 (OH, OW, O)."""
    return requantize(conv_acc(x, q), q.multiplier, q.shift, q.output_zero_point, q.act_min, q.act_max)


def affine_acc(x: np.ndarray, q: QAffine) -> np.ndarray:
    """int8 (I,) -> int32 accumulators (O,), bias included."""
    acc = q.weights.astype(np.int64) @ (x.astype(np.int64) - q.input_zero_point) + q.bias.astype(np.int64)
    return _check_acc(acc, q.spec.name)


def affine(x: np.ndarray, q: QAffine) -> np.ndarray:
    """Int8 fully connected layer, requantized and clamped: int8 (O,)."""
    return requantize(affine_acc(x, q), q.multiplier, q.shift, q.output_zero_point, q.act_min, q.act_max)


def max_pool(x: np.ndarray, spec: nets.MaxPool) -> np.ndarray:
    """Max-pool (H, W, C) -> (OH, OW, C) with ``nets.pool_out`` sizes; works on any dtype."""
    h, w, c = x.shape
    oh = nets.pool_out(h, spec.size, spec.stride, spec.ceil)
    ow = nets.pool_out(w, spec.size, spec.stride, spec.ceil)
    out = np.empty((oh, ow, c), dtype=x.dtype)
    for i in range(oh):
        r0 = i * spec.stride
        for j in range(ow):
            c0 = j * spec.stride
            out[i, j] = x[r0 : min(r0 + spec.size, h), c0 : min(c0 + spec.size, w)].max(axis=(0, 1))
    return out


def flatten(x: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H*W*C,), index (h*W + w)*C + c."""
    return np.ascontiguousarray(x).reshape(-1)


def run_layer(q, x: np.ndarray) -> np.ndarray:
    """Run one quantized layer on its int8 input."""
    if isinstance(q, QConv):
        return conv(x, q)
    if isinstance(q, QAffine):
        return affine(x, q)
    if isinstance(q, QMaxPool):
        return max_pool(x, q.spec)
    if isinstance(q, QFlatten):
        return flatten(x)
    raise TypeError(f"unknown quantized layer {type(q).__name__}")


def input_int8(image_uint8: np.ndarray) -> np.ndarray:
    """uint8 pixels -> int8 ``pixel - 128`` (scale 1/128, zero point 0; see ``nets.INPUT_SCALE``)."""
    return (image_uint8.astype(np.int16) - nets.INPUT_ZERO_POINT).astype(np.int8)


def forward_trace(qnet: QuantizedNet, image_uint8: np.ndarray) -> list:
    """Every layer's int8 output, in order (no validation: the runtime validates)."""
    x = input_int8(image_uint8)
    outs = []
    for q in qnet.layers:
        x = run_layer(q, x)
        outs.append(x)
    return outs
