"""The int8 form of a net: quantized layers with their parameters, as the runtime runs them.

This is the contract between the quantizer (host), the bundle format (stored tensors) and the
runtime (board).  Must not import torch or OpenCV.

Integer semantics (TFLite int8 conventions, see ``docs/quantization.md``):

* real = scale * (q - zero_point).  Activations: int8, per tensor, zero point in [-128, 127].
  Weights: int8, symmetric per output channel, zero point 0, values in [-127, 127].
  Biases: int32, scale = input_scale * weight_scale[c], zero point 0.
* A conv/affine output is ``acc = bias[c] + sum (x - input_zero_point) * w``, accumulated in
  int32, then ``requantize(acc, multiplier[c], shift[c]) + output_zero_point``, clamped to
  [act_min, act_max].  ReLU is fused as act_min = output_zero_point.
* multiplier is a Q31 int32 in [2^30, 2^31) (or 0), shift an int in [-31, 30]: the real
  multiplier is multiplier * 2^(shift - 31).  Positive shift = left shift (TFLite's sign).
* Max-pool works on int8 directly (it commutes with the monotone requantization).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import nets


@dataclass
class QConv:
    """Int8 convolution.  weights: int8 (O, KH, KW, I); bias, multiplier, shift: int32 (O,)."""

    spec: nets.Conv
    weights: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    input_zero_point: int
    output_zero_point: int
    output_scale: float
    act_min: int
    act_max: int
    #: float per-channel weight scales, kept for dequantization reports and re-export
    weight_scale: np.ndarray = field(default=None)


@dataclass
class QAffine:
    """Int8 fully connected layer.  weights: int8 (O, I); bias, multiplier, shift: int32 (O,)."""

    spec: nets.Affine
    weights: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    input_zero_point: int
    output_zero_point: int
    output_scale: float
    act_min: int
    act_max: int
    weight_scale: np.ndarray = field(default=None)


@dataclass
class QMaxPool:
    """Int8 max-pool; scale and zero point pass through unchanged."""

    spec: nets.MaxPool


@dataclass
class QFlatten:
    """(H, W, C) -> (H*W*C,), NHWC row-major; scale and zero point pass through unchanged."""

    spec: nets.Flatten


@dataclass
class QuantizedNet:
    """A whole int8 net.

    The input is uint8 pixels (H, W, 3, RGB); the runtime feeds ``pixel - 128`` as int8 with
    ``input_scale`` = 1/128 and ``input_zero_point`` = 0 (see ``nets.INPUT_SCALE``).
    The output is dequantized with (``output_scale``, ``output_zero_point``); an
    ``"embedding"`` net's output is then L2-normalised in float.
    """

    spec: nets.NetSpec
    layers: list
    input_scale: float = nets.INPUT_SCALE
    input_zero_point: int = 0
    output_scale: float = 1.0
    output_zero_point: int = 0
    metadata: dict = field(default_factory=dict)


# --- int8 back to real values -------------------------------------------------------------------

def dequantize(values: np.ndarray, scale, zero_point, dtype=np.float32) -> np.ndarray:
    """int8 values -> real ``(q - zero_point) * scale``, computed in ``dtype`` (float32 as the board;
    float64 for the host's drift report)."""
    dtype = np.dtype(dtype).type
    return (np.asarray(values).astype(dtype) - dtype(zero_point)) * dtype(scale)


def dequantize_output(qnet: QuantizedNet, out_int8: np.ndarray) -> np.ndarray:
    """A net's int8 output -> float32 ``(q - output_zero_point) * output_scale``, L2-normalised for an
    ``"embedding"`` net.  The one definition: ``Int8Runtime.run``, the bundle's golden vectors
    (``firmware/bundle.py``) and the host's quantizer all call it."""
    y = dequantize(out_int8, qnet.output_scale, qnet.output_zero_point, np.float32)
    if qnet.spec.output == "embedding":
        y /= np.float32(max(float(np.linalg.norm(y)), 1e-12))
    return y
