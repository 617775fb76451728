"""Numba int8 fully connected layer (+ReLU as clamp): the pure-integer path.

Imports numpy and numba only.  Semantics are ``reference.affine`` bit for bit:
``acc[o] = bias[o] + sum_i (x[i] - input_zero_point) * w[o, i]`` in int32, then
``clamp(mbqm(acc, multiplier[o], shift[o]) + output_zero_point, act_min, act_max)``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .quant import mbqm


def pack_affine_weights(weights_oi: np.ndarray) -> np.ndarray:
    """int8 (O, I) -> int16 (O, I) (load-time; the dot loop over I widens to int32 lanes)."""
    return np.ascontiguousarray(weights_oi.astype(np.int16))


@njit(cache=True)
def affine_int8(x, w_oi, bias, input_zero_point, multiplier, shift,
                output_zero_point, act_min, act_max, xz, out):
    """x: int8 (I,); w_oi: int16 (O, I); bias, multiplier, shift: int32 (O,);
    xz: int16 (I,) scratch for x - zero point; out: int8 (O,)."""
    n_out, n_in = w_oi.shape
    izp = np.int16(input_zero_point)
    for i in range(n_in):
        xz[i] = np.int16(np.int16(x[i]) - izp)
    for o in range(n_out):
        row = w_oi[o]
        acc = np.int32(bias[o])
        for i in range(n_in):
            acc = np.int32(acc + np.int32(np.int32(xz[i]) * np.int32(row[i])))
        y = np.int32(mbqm(acc, multiplier[o], shift[o]) + np.int32(output_zero_point))
        if y < act_min:
            y = np.int32(act_min)
        elif y > act_max:
            y = np.int32(act_max)
        out[o] = np.int8(y)
    return out
