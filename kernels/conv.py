"""Numba int8 convolution (KxK, stride, padding) and the fused NIN block: the pure-integer path.

Imports numpy and numba only.  NHWC, single image.  No float anywhere: int32 accumulators with a
cast to ``np.int32`` after every step (Numba widens int32 * int32 to int64, which halves the
vector width), the requantization is ``quant.mbqm`` (TFLite double rounding), ReLU is the clamp.

Semantics are ``reference.conv`` exactly (bit for bit, tested).  Weights are re-packed once at
load time by :func:`pack_conv_weights` to int16 (KH, KW, I, O) so that the innermost loop runs
over output channels with contiguous loads (LLVM vectorises it: one broadcast input, O lanes).
Accumulator bound: |bias| + KH*KW*I * 255 * 127 < 2**31 (checked by ``validate``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .pool import max_pool
from .quant import mbqm


def pack_conv_weights(weights_ohwi: np.ndarray) -> np.ndarray:
    """int8 (O, KH, KW, I) -> int16 (KH, KW, I, O), C-contiguous (load-time packing)."""
    return np.ascontiguousarray(weights_ohwi.transpose(1, 2, 3, 0).astype(np.int16))


@njit(cache=True)
def conv_int8(x, w_hwio, bias, input_zero_point, stride, padding,
              multiplier, shift, output_zero_point, act_min, act_max, acc, out):
    """Int8 conv + requantize + clamp.

    x: int8 (H, W, I); w_hwio: int16 (KH, KW, I, O) from :func:`pack_conv_weights`; bias,
    multiplier, shift: int32 (O,); acc: int32 (O,) scratch; out: int8 (OH, OW, O).
    Padding taps are skipped (they would contribute (zero_point - zero_point) * w = 0).
    """
    h, w, ci = x.shape
    kh_n, kw_n, _, co = w_hwio.shape
    oh_n, ow_n, _ = out.shape
    izp = np.int32(input_zero_point)
    for oh in range(oh_n):
        for ow in range(ow_n):
            for o in range(co):
                acc[o] = bias[o]
            for kh in range(kh_n):
                ih = oh * stride - padding + kh
                if ih < 0 or ih >= h:
                    continue
                for kw in range(kw_n):
                    iw = ow * stride - padding + kw
                    if iw < 0 or iw >= w:
                        continue
                    for c in range(ci):
                        xv = np.int32(np.int32(x[ih, iw, c]) - izp)
                        wk = w_hwio[kh, kw, c]
                        for o in range(co):
                            acc[o] = np.int32(acc[o] + np.int32(xv * np.int32(wk[o])))
            dst = out[oh, ow]
            for o in range(co):
                y = np.int32(mbqm(acc[o], multiplier[o], shift[o]) + np.int32(output_zero_point))
                if y < act_min:
                    y = np.int32(act_min)
                elif y > act_max:
                    y = np.int32(act_max)
                dst[o] = np.int8(y)
    return out


@njit(cache=True)
def nin_block_int8(x,
                   w1, b1, izp1, stride1, pad1, m1, s1, ozp1, lo1, hi1, mid,
                   pool_size, pool_stride, pooled,
                   w2, b2, m2, s2, ozp2, lo2, hi2, acc, out):
    """Fused NIN block: KxK conv -> requant+ReLU -> [max-pool] -> 1x1 conv -> requant+ReLU.

    All int8/int32, no float between.  ``mid``: int8 (OH, OW, O) scratch for the KxK output;
    ``pooled``: int8 scratch for the pool output (ignored when ``pool_size == 0``); the 1x1
    conv's input zero point is the KxK conv's output zero point ``ozp1``.  acc: int32 scratch
    of max(O1, O2).  out: int8 (PH, PW, O2).
    """
    conv_int8(x, w1, b1, izp1, stride1, pad1, m1, s1, ozp1, lo1, hi1, acc, mid)
    src = mid
    if pool_size > 0:
        max_pool(mid, pool_size, pool_stride, pooled)
        src = pooled
    conv_int8(src, w2, b2, ozp1, 1, 0, m2, s2, ozp2, lo2, hi2, acc, out)
    return out
