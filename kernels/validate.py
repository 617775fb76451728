"""Checks that an int8 net and its inputs match the contract of ``qnet.py`` before anything runs.

Every message names the layer and says what was expected and what was found.  Imports numpy only.
"""
from __future__ import annotations

import numpy as np

from . import nets, quant
from .errors import QuantizationError, ShapeError
from .qnet import QAffine, QConv, QFlatten, QMaxPool, QuantizedNet

_QTYPE_FOR_SPEC = {nets.Conv: QConv, nets.MaxPool: QMaxPool, nets.Flatten: QFlatten, nets.Affine: QAffine}


def check_array(x, shape: tuple, dtype, where: str) -> None:
    """Raise ShapeError unless ``x`` is a numpy array of ``dtype`` and ``shape``."""
    if not isinstance(x, np.ndarray):
        raise ShapeError(f"{where}: expected a numpy array {shape} {np.dtype(dtype)}, found {type(x).__name__}")
    if x.dtype != np.dtype(dtype):
        raise ShapeError(f"{where}: expected dtype {np.dtype(dtype)}, found {x.dtype}")
    if x.shape != tuple(shape):
        if len(shape) >= 3 and x.ndim == len(shape) and x.shape[:-1] == tuple(shape[:-1]):
            raise ShapeError(f"{where}: expected {shape[-1]} channels (shape {tuple(shape)}), found {x.shape[-1]} {x.shape}")
        raise ShapeError(f"{where}: expected shape {tuple(shape)}, found {x.shape}")


def _check_int8_param(value, name: str, where: str) -> None:
    if not (quant.INT8_MIN <= int(value) <= quant.INT8_MAX):
        raise QuantizationError(f"{where}: {name} = {int(value)}, expected in [-128, 127]")


def check_weighted_layer(q, in_shape: tuple, out_shape: tuple) -> None:
    """Check one QConv/QAffine's arrays and parameters against its spec and input shape."""
    where = q.spec.name
    if isinstance(q, QConv):
        k = q.spec.kernel
        wshape = (q.spec.out_channels, k, k, in_shape[2])
    else:
        wshape = (q.spec.out_features, in_shape[0])
    o = wshape[0]
    check_array(q.weights, wshape, np.int8, f"{where}.weights (O, KH, KW, I)" if len(wshape) == 4 else f"{where}.weights (O, I)")
    if q.weights.size and int(np.min(q.weights)) < -quant.WEIGHT_MAX:
        raise QuantizationError(f"{where}.weights: found -128, expected symmetric values in [-127, 127]")
    check_array(q.bias, (o,), np.int32, f"{where}.bias")
    check_array(q.multiplier, (o,), np.int32, f"{where}.multiplier")
    check_array(q.shift, (o,), np.int32, f"{where}.shift")
    quant.check_multiplier_shift(q.multiplier, q.shift, where)
    _check_int8_param(q.input_zero_point, "input_zero_point", where)
    _check_int8_param(q.output_zero_point, "output_zero_point", where)
    _check_int8_param(q.act_min, "act_min", where)
    _check_int8_param(q.act_max, "act_max", where)
    if q.act_min > q.act_max:
        raise QuantizationError(f"{where}: act_min {q.act_min} > act_max {q.act_max}")
    if getattr(q.spec, "relu", False) and q.act_min < q.output_zero_point:
        raise QuantizationError(
            f"{where}: ReLU layer needs act_min >= output_zero_point ({q.output_zero_point}), found {q.act_min}"
        )
    # int32 accumulator bound: |bias| + K * 255 * 127 must stay below 2^31 (K = taps per output).
    k_in = int(np.prod(wshape[1:]))
    worst = int(np.max(np.abs(q.bias.astype(np.int64)))) + k_in * 255 * 127 if o else 0
    if worst >= 2**31:
        raise QuantizationError(f"{where}: int32 accumulator could overflow (K={k_in}, worst |acc| {worst})")


def check_qnet(qnet: QuantizedNet) -> list:
    """Validate a whole QuantizedNet; returns ``list(nets.iter_counts(qnet.spec))`` (the shapes).

    Checks layer types and order against the spec, every array's dtype and shape, every
    parameter's range, and that each layer's input zero point is the previous output's.
    """
    if not isinstance(qnet, QuantizedNet):
        raise ShapeError(f"expected a QuantizedNet, found {type(qnet).__name__}")
    spec = qnet.spec
    if len(qnet.layers) != len(spec.layers):
        raise ShapeError(f"net {spec.name}: expected {len(spec.layers)} layers, found {len(qnet.layers)}")
    _check_int8_param(qnet.input_zero_point, "input_zero_point", f"net {spec.name}")
    rows = list(nets.iter_counts(spec))
    zero_point = qnet.input_zero_point
    for q, row in zip(qnet.layers, rows):
        want = _QTYPE_FOR_SPEC[type(row.layer)]
        if not isinstance(q, want) or q.spec != row.layer:
            found = getattr(getattr(q, "spec", None), "name", "?")
            raise ShapeError(f"{row.layer.name}: expected {want.__name__} for {row.layer}, found {type(q).__name__} ({found})")
        if isinstance(q, (QConv, QAffine)):
            check_weighted_layer(q, row.in_shape, row.out_shape)
            if q.input_zero_point != zero_point:
                raise QuantizationError(
                    f"{q.spec.name}: input_zero_point {q.input_zero_point} != previous layer's output zero point {zero_point}"
                )
            zero_point = q.output_zero_point
    if qnet.output_zero_point != zero_point:
        raise QuantizationError(
            f"net {spec.name}: output_zero_point {qnet.output_zero_point} != last layer's {zero_point}"
        )
    return rows
