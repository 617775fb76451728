"""The pure-integer im2col + GEMM path: int16 operands, int32 accumulators, no float anywhere.

Imports numpy and numba only.  Same layout as ``exact_gemm.py`` (which it mirrors, in integers):

* Activations live in int16 buffers holding the raw int8 values q; a padded conv's input buffer
  has its border set once to the input zero point, and
  ``acc[o] = bias_eff[o] + sum_k q[k] * w[o, k]`` with ``bias_eff = bias - zp * sum_k w[o, k]``
  (precomputed at load time) equals the reference's ``bias + sum (q - zp) * w``.
* Weights are packed once to int16 (O_pad, K_pad): O rounded up to a multiple of ``TILE_O`` and K
  to a multiple of 16 with zeros, so the GEMM's tiles need no edge cases and its K loop runs on
  whole vectors; the im2col buffer's K padding columns stay zero.
* The GEMM is a register tile of 2 rows x 4 output channels: eight dot products over K that share
  their loads; every product and sum is cast to ``np.int32`` (Numba would widen to int64 and
  halve the vector width).  LLVM vectorises the K loop (vpmovsxwd + vpmulld + vpaddd here).
* Requantization (``quant.mbqm``, TFLite double rounding) and a following max-pool (applied to
  the int32 accumulators, exact because the requantization is monotone) as in ``exact_gemm``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .quant import mbqm

TILE_M = 2
TILE_O = 4
K_ALIGN = 16


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def pack_weights(weights: np.ndarray) -> np.ndarray:
    """int8 (O, ...) -> int16 (O_pad, K_pad), zero-padded; K in (kh, kw, i) order."""
    o = weights.shape[0]
    w = weights.reshape(o, -1)
    packed = np.zeros((round_up(o, TILE_O), round_up(w.shape[1], K_ALIGN)), np.int16)
    packed[:o, : w.shape[1]] = w
    return packed


@njit(cache=True)
def im2col(xp_flat, wp, c, kernel, stride, oh_n, ow_n, cols):
    """Padded int16 input (Hp*Wp*C,) -> cols int16 (OH*OW, K_pad), tap order (kh, kw, c).

    Writes the first KH*KW*C columns of each row; the padding columns keep their zeros.
    """
    span = kernel * c
    k_pad = cols.shape[1]
    flat = cols.reshape(-1)
    for oh in range(oh_n):
        for ow in range(ow_n):
            base = (oh * ow_n + ow) * k_pad
            for kh in range(kernel):
                off = ((oh * stride + kh) * wp + ow * stride) * c
                src = xp_flat[off : off + span]
                dst = flat[base + kh * span : base + kh * span + span]
                for e in range(span):
                    dst[e] = src[e]
    return cols


@njit(cache=True)
def gemm(a, w, acc):
    """acc int32 (M, O_pad) = a int16 (M, K) @ w int16 (O_pad, K)^T; exact in int32.

    O_pad is a multiple of 4; K is the (padded) shared length.  2x4 register tiles; an odd last
    row runs as a 1x4 tile.
    """
    m_n, k_n = a.shape
    o_n = w.shape[0]
    m_even = m_n - (m_n % 2)
    for m in range(0, m_even, 2):
        a0 = a[m]
        a1 = a[m + 1]
        for o in range(0, o_n, 4):
            w0 = w[o]
            w1 = w[o + 1]
            w2 = w[o + 2]
            w3 = w[o + 3]
            s00 = np.int32(0)
            s01 = np.int32(0)
            s02 = np.int32(0)
            s03 = np.int32(0)
            s10 = np.int32(0)
            s11 = np.int32(0)
            s12 = np.int32(0)
            s13 = np.int32(0)
            for k in range(k_n):
                x0 = np.int32(a0[k])
                x1 = np.int32(a1[k])
                y0 = np.int32(w0[k])
                y1 = np.int32(w1[k])
                y2 = np.int32(w2[k])
                y3 = np.int32(w3[k])
                s00 = np.int32(s00 + np.int32(x0 * y0))
                s01 = np.int32(s01 + np.int32(x0 * y1))
                s02 = np.int32(s02 + np.int32(x0 * y2))
                s03 = np.int32(s03 + np.int32(x0 * y3))
                s10 = np.int32(s10 + np.int32(x1 * y0))
                s11 = np.int32(s11 + np.int32(x1 * y1))
                s12 = np.int32(s12 + np.int32(x1 * y2))
                s13 = np.int32(s13 + np.int32(x1 * y3))
            r0 = acc[m]
            r1 = acc[m + 1]
            r0[o] = s00
            r0[o + 1] = s01
            r0[o + 2] = s02
            r0[o + 3] = s03
            r1[o] = s10
            r1[o + 1] = s11
            r1[o + 2] = s12
            r1[o + 3] = s13
    for m in range(m_even, m_n):
        a0 = a[m]
        for o in range(0, o_n, 4):
            w0 = w[o]
            w1 = w[o + 1]
            w2 = w[o + 2]
            w3 = w[o + 3]
            s0 = np.int32(0)
            s1 = np.int32(0)
            s2 = np.int32(0)
            s3 = np.int32(0)
            for k in range(k_n):
                x0 = np.int32(a0[k])
                s0 = np.int32(s0 + np.int32(x0 * np.int32(w0[k])))
                s1 = np.int32(s1 + np.int32(x0 * np.int32(w1[k])))
                s2 = np.int32(s2 + np.int32(x0 * np.int32(w2[k])))
                s3 = np.int32(s3 + np.int32(x0 * np.int32(w3[k])))
            r0 = acc[m]
            r0[o] = s0
            r0[o + 1] = s1
            r0[o + 2] = s2
            r0[o + 3] = s3
    return acc


@njit(cache=True, inline="always")
def _requant_one(a, mult, shift, ozp, lo, hi):
    y = np.int32(mbqm(a, mult, shift) + np.int32(ozp))
    return np.int16(min(max(y, np.int32(lo)), np.int32(hi)))


@njit(cache=True)
def requant(acc, oh_n, ow_n, bias_eff, multiplier, shift, output_zero_point, act_min, act_max, pad, out):
    """acc int32 (OH*OW, O_pad) -> out int16 (OH+2p, OW+2p, O) interior (C-contiguous, whole)."""
    o = bias_eff.shape[0]
    for i in range(oh_n):
        for j in range(ow_n):
            src = acc[i * ow_n + j]
            dst = out[i + pad, j + pad]
            for c in range(o):
                dst[c] = _requant_one(np.int32(src[c] + bias_eff[c]), multiplier[c], shift[c],
                                      output_zero_point, act_min, act_max)
    return out


@njit(cache=True)
def requant_pool(acc, oh_n, ow_n, bias_eff, multiplier, shift, output_zero_point, act_min, act_max,
                 size, stride, ph_n, pw_n, pad, out):
    """acc int32 (OH*OW, O_pad) -> max-pool -> requantize -> out int16 (PH+2p, PW+2p, O) interior."""
    o = bias_eff.shape[0]
    best = np.empty(o, dtype=np.int32)
    for i in range(ph_n):
        r0 = i * stride
        r1 = min(r0 + size, oh_n)
        for j in range(pw_n):
            c0 = j * stride
            c1 = min(c0 + size, ow_n)
            src = acc[r0 * ow_n + c0]
            for c in range(o):
                best[c] = src[c]
            for r in range(r0, r1):
                for s in range(c0, c1):
                    src = acc[r * ow_n + s]
                    for c in range(o):
                        best[c] = max(best[c], src[c])
            dst = out[i + pad, j + pad]
            for c in range(o):
                dst[c] = _requant_one(np.int32(best[c] + bias_eff[c]), multiplier[c], shift[c],
                                      output_zero_point, act_min, act_max)
    return out


@njit(cache=True)
def conv_layer(gather, xp_flat, wp, c, kernel, stride, oh_n, ow_n, cols, w, acc,
               bias_eff, multiplier, shift, output_zero_point, act_min, act_max,
               pool_size, pool_stride, ph_n, pw_n, pad, out):
    """One conv (or affine: OH = OW = 1) in one call: [im2col] -> GEMM -> requantize [+ max-pool].

    ``gather`` False means ``cols`` already is the input (1x1 conv, affine); ``pool_size`` 0
    means no pool.  One Numba call per layer keeps the dispatch overhead (~µs per call) small.
    """
    if gather:
        im2col(xp_flat, wp, c, kernel, stride, oh_n, ow_n, cols)
    gemm(cols, w, acc)
    if pool_size > 0:
        requant_pool(acc, oh_n, ow_n, bias_eff, multiplier, shift, output_zero_point, act_min, act_max,
                     pool_size, pool_stride, ph_n, pw_n, pad, out)
    else:
        requant(acc, oh_n, ow_n, bias_eff, multiplier, shift, output_zero_point, act_min, act_max, pad, out)
    return out


@njit(cache=True)
def nin_block(conv_args, cccp_args):
    """Fused NIN block in one call: KxK conv -> requant+ReLU [-> max-pool on the accumulators]
    -> 1x1 conv -> requant+ReLU.  Each argument is the tuple of :func:`conv_layer`'s arguments;
    the KxK conv's output buffer is the 1x1 conv's input (int16, no float between)."""
    conv_layer(*conv_args)
    conv_layer(*cccp_args)
    return cccp_args[-1]
