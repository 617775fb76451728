"""The AVX-512 VNNI tile path: ``vpdpbusd`` on a 4-pixel x 32-channel register tile, implicit GEMM.

Imported only after ``features.x86_vnni_reason()`` said the CPU (and Numba's target) has avx512f,
avx512bw and avx512vnni.  Imports numpy, numba and llvmlite only.

The tile (:func:`tile_4x32`, a Numba ``@intrinsic`` emitting LLVM IR): eight <16 x i32> accumulators
(4 output pixels x 2 x 16 output channels) stay in zmm registers for the whole K loop.  Per step of 4 k:
two 64-byte loads of packed weights ([K/4, N_pad, 4] int8: 16 channels x 4 k each), and per pixel one
32-bit load of its 4 consecutive activation bytes broadcast to all 16 lanes, then
``acc = vpdpbusd(acc, broadcast, weights)``: per lane, acc + sum of 4 products u8 x s8 -- 64 MACs per
instruction, no horizontal sums.  Activations are stored as ``q + 128`` (uint8); the correction
``(zero_point + 128) * sum_k w`` is folded into ``bias_eff`` at load time (``program.py``).  No
saturation: ``vpdpbusd`` (not ``vpdpbusds``) adds four products of at most 255 * 127 exactly into int32,
and the validator bounds every accumulator below 2**31.  The K loop walks the patch in place: ``n_kh``
runs of ``span4`` groups of 4 bytes, ``row_bytes`` apart (the input tensor's padded row).

The epilogue (:func:`_conv`) reads the tile's 4 x 32 int32 sums from an L1 scratch right after the
tile: adds ``bias_eff``, requantizes (``quant.mbqm``, TFLite double rounding), clamps (ReLU) and stores
``y + 128``; with a fused 2x2/2 max-pool the 4 pixels are the pool window and their max is taken first.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..quant import mbqm
from . import program
from .common import pool_op

N_BLOCK = 32
ACT_OFFSET = 128

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_V16 = ir.VectorType(_I32, 16)


@intrinsic
def tile_4x32(typingctx, tile, act, o0, o1, o2, o3, row_bytes, n_kh, span4, wts, w_off, k4_bytes):
    """tile int32 (4, 32) <- sum over the patch of act (uint8, flat) x wts (int8, flat, packed).

    Pixel r's patch starts at byte ``o_r`` of ``act``: ``n_kh`` runs of ``4 * span4`` bytes, ``row_bytes``
    apart.  Weights for this 32-channel block start at byte ``w_off`` of ``wts``; consecutive groups of 4 k
    are ``k4_bytes`` (= 4 * N_pad) apart.  Overwrites the whole tile.
    """
    sig = types.void(tile, act, o0, o1, o2, o3, row_bytes, n_kh, span4, wts, w_off, k4_bytes)

    def codegen(context, builder, sig, args):
        def i64(i):
            return context.cast(builder, args[i], sig.args[i], types.int64)

        tile_ptr = context.make_array(sig.args[0])(context, builder, args[0]).data
        act_ptr = context.make_array(sig.args[1])(context, builder, args[1]).data
        w_ptr = context.make_array(sig.args[9])(context, builder, args[9]).data
        offs = [i64(2), i64(3), i64(4), i64(5)]
        row, n_kh_v, span4_v, w_off_v, k4 = i64(6), i64(7), i64(8), i64(10), i64(11)
        dot = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V16, [_V16, _V16, _V16]),
                                             "llvm.x86.avx512.vpdpbusd.512")
        zero = ir.Constant(_V16, None)
        accs = [cgutils.alloca_once_value(builder, zero) for _ in range(8)]  # promoted to registers
        w_cur = cgutils.alloca_once_value(builder, builder.gep(w_ptr, [w_off_v]))
        undef = ir.Constant(_V16, ir.Undefined)
        with cgutils.for_range(builder, n_kh_v) as kh:
            run = builder.mul(kh.index, row)
            with cgutils.for_range(builder, span4_v) as j:
                wp = builder.load(w_cur)
                w0 = builder.load(builder.bitcast(wp, _V16.as_pointer()), align=1)
                w1 = builder.load(builder.bitcast(builder.gep(wp, [ir.Constant(_I64, 64)]), _V16.as_pointer()),
                                  align=1)
                builder.store(builder.gep(wp, [k4]), w_cur)
                at = builder.add(run, builder.shl(j.index, ir.Constant(_I64, 2)))
                for r in range(4):
                    p = builder.gep(act_ptr, [builder.add(offs[r], at)])
                    a = builder.load(builder.bitcast(p, _I32.as_pointer()), align=1)
                    b = builder.insert_element(undef, a, ir.Constant(_I32, 0))
                    b = builder.shuffle_vector(b, undef, ir.Constant(_V16, None))  # broadcast lane 0
                    for h, w in ((0, w0), (1, w1)):
                        acc = accs[2 * r + h]
                        builder.store(builder.call(dot, [builder.load(acc), b, w]), acc)
        out = builder.bitcast(tile_ptr, _V16.as_pointer())
        for n, acc in enumerate(accs):
            builder.store(builder.load(acc), builder.gep(out, [ir.Constant(_I64, n)]), align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def _requant_u8(a, mult, shift, ozp, lo, hi):
    y = np.int32(mbqm(a, mult, shift) + np.int32(ozp))
    return np.uint8(min(max(y, np.int32(lo)), np.int32(hi)) + np.int32(ACT_OFFSET))


@njit(cache=True)
def _conv(op, act, wts, prm, tile):
    """One CONV op (conv or affine, optional fused 2x2/2 max-pool); see ``program.py`` for the fields."""
    in_off, row, cp, stride, n_kh, span4 = op[1], op[2], op[3], op[4], op[5], op[6]
    oh_n, ow_n, pooled, ph_n, pw_n = op[7], op[8], op[9], op[10], op[11]
    out_off, out_row, out_cp, out_pad = op[12], op[13], op[14], op[15]
    n, n_pad, w_off, p_off, ozp, lo, hi = op[16], op[17], op[18], op[19], op[20], op[21], op[22]
    beff = prm[p_off : p_off + n]
    mult = prm[p_off + n : p_off + 2 * n]
    shift = prm[p_off + 2 * n : p_off + 3 * n]
    k4_bytes = n_pad * 4
    px = stride * cp
    t0, t1, t2, t3 = tile[0], tile[1], tile[2], tile[3]
    if pooled:
        for i in range(ph_n):
            r0 = 2 * i
            r1 = min(r0 + 1, oh_n - 1)
            for j in range(pw_n):
                c0 = 2 * j
                c1 = min(c0 + 1, ow_n - 1)
                a0 = in_off + r0 * stride * row + c0 * px
                a2 = in_off + r1 * stride * row + c0 * px
                dst = out_off + (i + out_pad) * out_row + (j + out_pad) * out_cp
                for nb in range(0, n_pad, N_BLOCK):
                    tile_4x32(tile, act, a0, a0 + (c1 - c0) * px, a2, a2 + (c1 - c0) * px, row, n_kh, span4,
                              wts, w_off + nb * 4, k4_bytes)
                    nc = min(N_BLOCK, n - nb)
                    d = act[dst + nb : dst + nb + nc]
                    b, m, s = beff[nb : nb + nc], mult[nb : nb + nc], shift[nb : nb + nc]
                    for c in range(nc):
                        v = max(max(t0[c], t1[c]), max(t2[c], t3[c]))
                        d[c] = _requant_u8(np.int32(v + b[c]), m[c], s[c], ozp, lo, hi)
    else:
        m_n = oh_n * ow_n
        for m0 in range(0, m_n, 4):
            rows_n = min(4, m_n - m0)
            a0, d0 = _pixel(m0, m_n, ow_n, in_off, stride * row, px, out_off, out_row, out_cp, out_pad)
            a1, d1 = _pixel(m0 + 1, m_n, ow_n, in_off, stride * row, px, out_off, out_row, out_cp, out_pad)
            a2, d2 = _pixel(m0 + 2, m_n, ow_n, in_off, stride * row, px, out_off, out_row, out_cp, out_pad)
            a3, d3 = _pixel(m0 + 3, m_n, ow_n, in_off, stride * row, px, out_off, out_row, out_cp, out_pad)
            for nb in range(0, n_pad, N_BLOCK):
                tile_4x32(tile, act, a0, a1, a2, a3, row, n_kh, span4, wts, w_off + nb * 4, k4_bytes)
                nc = min(N_BLOCK, n - nb)
                b, m, s = beff[nb : nb + nc], mult[nb : nb + nc], shift[nb : nb + nc]
                for r in range(rows_n):
                    t = tile[r]
                    dst = d0 if r == 0 else (d1 if r == 1 else (d2 if r == 2 else d3))
                    d = act[dst + nb : dst + nb + nc]
                    for c in range(nc):
                        d[c] = _requant_u8(np.int32(t[c] + b[c]), m[c], s[c], ozp, lo, hi)


@njit(cache=True, inline="always")
def _pixel(mm, m_n, ow_n, in_off, in_row_step, px, out_off, out_row, out_cp, out_pad):
    """(patch start in act, output address) of output pixel ``mm`` (clamped to the last: a tile's tail)."""
    mm = min(mm, m_n - 1)
    oh = mm // ow_n
    ow = mm - oh * ow_n
    return in_off + oh * in_row_step + ow * px, out_off + (oh + out_pad) * out_row + (ow + out_pad) * out_cp


@njit(cache=True)
def _load(op, image, act):
    """The image's uint8 pixels are already ``q + 128`` (q = pixel - 128): copy into the input tensor."""
    h_n, w_n, c_n = op[1], op[2], op[3]
    out_off, out_row, out_cp, out_pad = op[12], op[13], op[14], op[15]
    for h in range(h_n):
        at = out_off + (h + out_pad) * out_row + out_pad * out_cp
        d = act[at : at + w_n * out_cp]
        s = image[h * w_n * c_n : (h + 1) * w_n * c_n]
        if c_n == 3 and out_cp == 4:  # RGB: one 4-byte group per pixel (the 4th byte's weights are 0)
            for w in range(w_n):
                d[4 * w] = s[3 * w]
                d[4 * w + 1] = s[3 * w + 1]
                d[4 * w + 2] = s[3 * w + 2]
        else:
            for w in range(w_n):
                for c in range(c_n):
                    d[w * out_cp + c] = s[w * c_n + c]


@njit(cache=True)
def run_ops(ops, start, stop, image, act, wts, prm, tile):
    """Run ``ops[start:stop]`` (the program's op table, int64 rows) on the arenas; one Numba call."""
    for i in range(start, stop):
        op = ops[i]
        kind = op[0]
        if kind == program.CONV:
            _conv(op, act, wts, prm, tile)
        elif kind == program.POOL:
            pool_op(op, act)
        else:
            _load(op, image, act)


def build_plan(qnet, rows: list, fuse: bool, fuse_blocks: bool = True) -> program.TilePlan:
    """Pack ``qnet`` once (weights [K/4, N_pad, 4], bias_eff with the +128 fold) and return its plan."""
    prog = program.build_program(qnet, rows, fuse, fuse_blocks, np.uint8, ACT_OFFSET, N_BLOCK)
    return program.TilePlan(prog, run_ops)
