"""The AVX2 tile path: ``vpmaddwd`` on a 4-pixel x 8-channel register tile, implicit GEMM, for x86 without VNNI.

Imported only after ``features.x86_avx2_reason()`` said the CPU (and Numba's target) has avx2.  Imports
numpy, numba and llvmlite only.

Why not ``vpmaddubsw`` (u8 x s8 -> int16 pair sums): 255 * 127 * 2 = 64770 > 32767, so its pair sums
saturate.  This tile widens first: the 4 activation bytes of a patch step (stored ``q + 128``, uint8, as on
the VNNI path) are broadcast and zero-extended to 16 int16 lanes (a0 a1 a2 a3 repeated), the weights are
the same [K/4, N_pad, 4] packing widened once to int16 at load, and ``vpmaddwd`` gives per int32 lane
``a0*w0 + a1*w1`` or ``a2*w2 + a3*w3`` of one channel -- exact (|.| <= 2 * 255 * 127).  Two lanes per
channel are added once, after the K loop, inside the tile.

The tile (:func:`tile_4x8`): eight <8 x i32> accumulators (4 pixels x 2 x 4 channels) in ymm registers for
the whole K loop; per step of 4 k: two 32-byte weight loads, per pixel one 32-bit load broadcast and
widened, two ``vpmaddwd`` + two adds (32 MACs).  Offsets, packing, ``bias_eff`` (the +128 fold) and the
fused epilogue are those of ``x86_vnni.py``.
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

N_BLOCK = 8
ACT_OFFSET = 128

_I16 = ir.IntType(16)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_V8 = ir.VectorType(_I32, 8)
_W16 = ir.VectorType(_I16, 16)


@intrinsic
def tile_4x8(typingctx, tile, act, o0, o1, o2, o3, row_bytes, n_kh, span4, wts, w_off, k4_elems):
    """tile int32 (4, 8) <- sum over the patch of act (uint8, flat) x wts (int16, flat, packed).

    As ``x86_vnni.tile_4x32`` but with int16 weights: ``w_off`` and ``k4_elems`` count int16 elements.
    """
    sig = types.void(tile, act, o0, o1, o2, o3, row_bytes, n_kh, span4, wts, w_off, k4_elems)

    def codegen(context, builder, sig, args):
        def i64(i):
            return context.cast(builder, args[i], sig.args[i], types.int64)

        tile_ptr = context.make_array(sig.args[0])(context, builder, args[0]).data
        act_ptr = context.make_array(sig.args[1])(context, builder, args[1]).data
        w_ptr = context.make_array(sig.args[9])(context, builder, args[9]).data
        offs = [i64(2), i64(3), i64(4), i64(5)]
        row, n_kh_v, span4_v, w_off_v, k4 = i64(6), i64(7), i64(8), i64(10), i64(11)
        madd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8, [_W16, _W16]),
                                              "llvm.x86.avx2.pmadd.wd")
        zero = ir.Constant(_V8, None)
        accs = [cgutils.alloca_once_value(builder, zero) for _ in range(8)]  # promoted to registers
        w_cur = cgutils.alloca_once_value(builder, builder.gep(w_ptr, [w_off_v]))
        b4 = ir.VectorType(ir.IntType(8), 4)
        repeat = ir.Constant(ir.VectorType(_I32, 16), [i % 4 for i in range(16)])
        with cgutils.for_range(builder, n_kh_v) as kh:
            run = builder.mul(kh.index, row)
            with cgutils.for_range(builder, span4_v) as j:
                wp = builder.load(w_cur)
                w0 = builder.load(builder.bitcast(wp, _W16.as_pointer()), align=1)
                w1 = builder.load(builder.bitcast(builder.gep(wp, [ir.Constant(_I64, 16)]), _W16.as_pointer()),
                                  align=1)
                builder.store(builder.gep(wp, [k4]), w_cur)
                at = builder.add(run, builder.shl(j.index, ir.Constant(_I64, 2)))
                for r in range(4):
                    p = builder.gep(act_ptr, [builder.add(offs[r], at)])
                    a = builder.load(builder.bitcast(p, b4.as_pointer()), align=1)
                    a = builder.shuffle_vector(a, ir.Constant(b4, ir.Undefined), repeat)  # a0 a1 a2 a3 x 4
                    a = builder.zext(a, _W16)  # u8 -> int16: no saturation anywhere
                    for h, w in ((0, w0), (1, w1)):
                        acc = accs[2 * r + h]
                        builder.store(builder.add(builder.load(acc), builder.call(madd, [a, w])), acc)
        out = builder.bitcast(tile_ptr, _V8.as_pointer())
        even = ir.Constant(_V8, [0, 2, 4, 6, 8, 10, 12, 14])
        odd = ir.Constant(_V8, [1, 3, 5, 7, 9, 11, 13, 15])
        for r in range(4):  # channel c = lane 2c + lane 2c+1 (k0,k1 and k2,k3 halves)
            lo_v, hi_v = builder.load(accs[2 * r]), builder.load(accs[2 * r + 1])
            sums = builder.add(builder.shuffle_vector(lo_v, hi_v, even), builder.shuffle_vector(lo_v, hi_v, odd))
            builder.store(sums, builder.gep(out, [ir.Constant(_I64, r)]), align=4)
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
    k4_elems = n_pad * 4
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
                    tile_4x8(tile, act, a0, a0 + (c1 - c0) * px, a2, a2 + (c1 - c0) * px, row, n_kh, span4,
                              wts, w_off + nb * 4, k4_elems)
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
                tile_4x8(tile, act, a0, a1, a2, a3, row, n_kh, span4, wts, w_off + nb * 4, k4_elems)
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
    """Pack ``qnet`` once (weights [K/4, N_pad, 4] widened to int16, bias_eff with the +128 fold); its plan."""
    prog = program.build_program(qnet, rows, fuse, fuse_blocks, np.uint8, ACT_OFFSET, N_BLOCK)
    prog.wts = prog.wts.astype(np.int16)  # same element offsets as the int8 packing
    return program.TilePlan(prog, run_ops)
