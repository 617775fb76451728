"""The exact float32-GEMM path: integer convolutions summed by BLAS sgemm, bit-exact.

Imports numpy and numba only.  Why: one core's float32 BLAS runs 30-48 GMAC/s here against
7-18 for auto-vectorised integer loops, and every product and partial sum below is an integer
that float32 represents exactly, so the result equals the integer reference bit for bit.

The arithmetic, precisely:

* Activations are kept as float32 buffers holding the raw int8 values q in [-128, 127]
  (not q - zero_point).  Padding taps hold the input zero point.
* Weights w in [-127, 127] are stored float32 (K, O), K = KH*KW*I in (kh, kw, i) order.
* ``acc = bias[o] - input_zero_point * sum_k w[o, k] + sum_k q[k] * w[o, k]``; the first two
  terms are one int32 per channel (``bias_eff``) precomputed at load time; padding taps give
  zero_point * w, which ``bias_eff`` cancels, as the reference's (x - zp) = 0 padding does.
* Exactness: |q * w| <= 128 * 127 = 16256, so any partial sum of at most
  ``EXACT_K_MAX`` = 1032 products is an integer of magnitude < 2**24 (1032 * 16256 = 16776192),
  exactly representable in float32 whatever order or FMA use BLAS picks.  A longer K is split into
  chunks of at most 1032 (one sgemm each); chunks are converted to int32 and added in int32.
* Requantization then runs in int32/int64 (``quant.mbqm``, TFLite double rounding), and the
  clamped int8 result is written back as float32 for the next sgemm.
* A max-pool right after a conv is applied to the int32 accumulators before requantizing: the
  requantization is monotone non-decreasing (multiplier >= 0), so ``pool(requant(acc)) ==
  requant(pool(acc))`` exactly, and only a quarter of the values are requantized.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .quant import mbqm

#: Largest number of int8 x int8 products whose every partial sum float32 holds exactly.
EXACT_K_MAX = 1032


def k_chunks(k: int) -> list:
    """Split [0, k) into near-equal chunks of at most EXACT_K_MAX: [(start, stop), ...]."""
    n = -(-k // EXACT_K_MAX)
    edges = [round(i * k / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n)]


def pack_weights_kxo(weights: np.ndarray) -> np.ndarray:
    """int8 (O, ...) -> float32 (K, O), K in the weights' row-major order (kh, kw, i) or (i)."""
    o = weights.shape[0]
    return np.ascontiguousarray(weights.reshape(o, -1).T.astype(np.float32))


def bias_eff(bias: np.ndarray, weights: np.ndarray, input_zero_point: int) -> np.ndarray:
    """int32 (O,): bias - input_zero_point * sum_k w[o, k] (fits: |.| < 2**31, see validate)."""
    wsum = weights.reshape(weights.shape[0], -1).astype(np.int64).sum(axis=1)
    return (bias.astype(np.int64) - int(input_zero_point) * wsum).astype(np.int32)


@njit(cache=True)
def im2col(xp_flat, wp, c, kernel, stride, oh_n, ow_n, cols):
    """Padded input -> patches, no bounds checks.

    xp_flat: float32 (Hp*Wp*C,), a C-contiguous (Hp, Wp, C) buffer whose border already holds the
    input zero point; cols: float32 (OH*OW, KH*KW*C), tap order (kh, kw, c).  Each (kh) row of a
    patch is one contiguous span of KW*C floats of the input.
    """
    span = kernel * c
    k_total = cols.shape[1]
    flat = cols.reshape(-1)
    # Copies go through 0-based slice views: indexing with a computed offset (row[t + e]) makes
    # Numba emit negative-index wraparound code that blocks vectorisation (6x slower here).
    for oh in range(oh_n):
        for ow in range(ow_n):
            base = (oh * ow_n + ow) * k_total
            for kh in range(kernel):
                off = ((oh * stride + kh) * wp + ow * stride) * c
                src = xp_flat[off : off + span]
                dst = flat[base + kh * span : base + kh * span + span]
                for e in range(span):
                    dst[e] = src[e]
    return cols


@njit(cache=True, inline="always")
def _requant_one(a, mult, shift, ozp, lo, hi):
    y = np.int32(mbqm(a, mult, shift) + np.int32(ozp))
    return np.float32(min(max(y, np.int32(lo)), np.int32(hi)))


@njit(cache=True)
def requant(acc_f, oh_n, ow_n, bias_eff, multiplier, shift, output_zero_point, act_min, act_max, pad, out):
    """acc_f float32 (chunks, OH*OW, O) exact integer partial sums -> out float32 (OH+2p, OW+2p, O).

    Writes the interior ``out[pad:pad+OH, pad:pad+OW]`` (``out`` is the next conv's padded
    buffer, passed whole and C-contiguous: a strided view would stop vectorisation, ~6x slower).
    """
    nch, _, o = acc_f.shape
    a = np.empty(o, dtype=np.int32)
    for i in range(oh_n):
        for j in range(ow_n):
            r = i * ow_n + j
            src = acc_f[0, r]
            for c in range(o):
                a[c] = np.int32(src[c]) + bias_eff[c]
            for k in range(1, nch):
                src = acc_f[k, r]
                for c in range(o):
                    a[c] = np.int32(a[c] + np.int32(src[c]))
            dst = out[i + pad, j + pad]
            for c in range(o):
                dst[c] = _requant_one(a[c], multiplier[c], shift[c], output_zero_point, act_min, act_max)
    return out


@njit(cache=True)
def requant_pool(acc_f, oh_n, ow_n, bias_eff, multiplier, shift, output_zero_point, act_min, act_max,
                 size, stride, ph_n, pw_n, pad, out):
    """acc_f float32 (chunks, OH*OW, O) -> max-pool the int32 sums -> requantize -> out.

    out: float32 (PH+2p, PW+2p, O), interior written as in :func:`requant`.
    """
    nch, _, o = acc_f.shape
    best = np.empty(o, dtype=np.int32)
    a = np.empty(o, dtype=np.int32)
    for i in range(ph_n):
        r0 = i * stride
        r1 = min(r0 + size, oh_n)
        for j in range(pw_n):
            c0 = j * stride
            c1 = min(c0 + size, ow_n)
            first = True
            for r in range(r0, r1):
                for s in range(c0, c1):
                    m = r * ow_n + s
                    src = acc_f[0, m]
                    for c in range(o):
                        a[c] = np.int32(src[c])
                    for k in range(1, nch):
                        src = acc_f[k, m]
                        for c in range(o):
                            a[c] = np.int32(a[c] + np.int32(src[c]))
                    if first:
                        for c in range(o):
                            best[c] = a[c]
                        first = False
                    else:
                        for c in range(o):
                            best[c] = max(best[c], a[c])
            dst = out[i + pad, j + pad]
            for c in range(o):
                dst[c] = _requant_one(np.int32(best[c] + bias_eff[c]), multiplier[c], shift[c],
                                      output_zero_point, act_min, act_max)
    return out
