"""The one driver of every register tile: the K loop around an ISA's step, the op loop, the fused epilogue.

Imports numpy, numba and llvmlite only.  An ISA module (``x86_vnni.py``, ``x86_avx2.py``, ``arm_dot.py``,
``arm_neon.py``, ``portable.py``) holds only its constants and the LLVM IR of one step; it ends with
``run_ops = driver.executor(__name__)``.  Its interface:

* ``SPEC``: a :class:`TileSpec` (channel block, activation offset, weight type and order, accumulators).
* ``step(builder, accs, w, pixels)``: emit one step of 4 k -- ``w``: pointer (weight type) to this step's
  weights of the channel block; ``pixels``: 4 pointers (i8) to each pixel's 4 activation bytes;
  ``accs``: the ``n_acc`` accumulator slots (allocas LLVM promotes to registers).
* ``store(builder, accs, out)``: write the accumulators as the int32 tile (4, n_block) at ``out`` (i32*).

How one Numba source serves every ISA: :func:`executor` returns a ``run_ops`` closure over the ISA
module's *key* (a string constant: its name and a hash of its source), which reaches :func:`tile` as a
string literal; ``tile``'s typing imports that module and emits its step.  Numba caches each closure apart
(the cache key hashes the closure variables: the key and two ints, stable across processes), and the shared
helpers below are compiled once per literal.  The source hash is in the key because Numba's cache checks
only the file of the function it caches (this one): without it, an edited ISA module would keep running
its old cached step.  Compiling an ISA's step happens only when its ``run_ops`` is first called, after
``features.py`` said the CPU has it.

The op loop and the epilogue (``_conv``): a CONV op's output pixels go 4 at a time through the tile, whose
int32 sums the same function then takes from an L1 scratch: adds ``bias_eff``, requantizes
(``quant.mbqm``, TFLite double rounding), clamps (ReLU is the clamp) and stores ``y + act_offset``.  With
a fused 2x2/2 max-pool the tile's 4 pixels are the pool window and the max of the 4 sums is requantized
(exact: requantization is monotone).  See ``program.py`` for the op fields and the arenas.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..quant import mbqm
from . import program
from .common import pool_op

I8, I16, I32, I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)


def vector(bits: int, n: int) -> ir.VectorType:
    """The LLVM vector type <n x i{bits}>."""
    return ir.VectorType(ir.IntType(bits), n)


def lanes(*indices) -> ir.Constant:
    """A shufflevector mask (<n x i32> constant)."""
    return ir.Constant(vector(32, len(indices)), list(indices))


@dataclass(frozen=True)
class TileSpec:
    """What an ISA module declares about its tile (``SPEC``).

    ``n_block``: output channels per tile (the tile is 4 pixels x n_block channels, int32).
    ``act_offset``: a stored activation byte is ``q + act_offset`` (128 as uint8 on x86, whose ``vpdpbusd``
    multiplies *unsigned* bytes; 0 as int8 elsewhere).
    ``weight_dtype``: np.int8, or np.int16 (widened once, at load).
    ``k_major``: within one channel block of one group of 4 k the weights are [n_block, 4] (False: 4
    consecutive k of a channel adjacent, for dot-product instructions) or [4, n_block] (True: one k's
    channels adjacent, for multiply-by-lane).
    ``acc``, ``n_acc``: the accumulators' LLVM vector type and count, in registers for the whole K loop.
    """

    n_block: int
    act_offset: int
    weight_dtype: type
    k_major: bool
    acc: ir.VectorType
    n_acc: int


def isa_module(key: str):
    """The ISA module of ``key`` (``module name`` or ``module name:source hash``, as the closures carry it)."""
    return importlib.import_module(key.split(":")[0])


def isa_key(name: str) -> str:
    """``name:hash``: the ISA module's name and the first 16 hex digits of its source's sha256."""
    spec = importlib.util.find_spec(name)
    source = spec.loader.get_data(spec.origin) if spec and spec.origin else b""
    return f"{name}:{hashlib.sha256(source).hexdigest()[:16]}"


@intrinsic
def tile(typingctx, isa, out, act, o0, o1, o2, o3, row, n_kh, span4, wts, w_off, k4):
    """out int32 (4, n_block) <- sum over the patch of act (bytes, flat) x wts (packed, flat).

    ``isa``: the ISA module's key (:func:`isa_key`), a string literal.  Pixel r's patch starts at byte ``o_r`` of ``act``:
    ``n_kh`` runs of ``span4`` groups of 4 bytes, ``row`` bytes apart.  This channel block's weights start
    at element ``w_off`` of ``wts``; consecutive groups of 4 k are ``k4`` (= 4 * N_pad) elements apart.
    Overwrites the whole tile.
    """
    if not isinstance(isa, types.StringLiteral):
        return None  # Numba retries with the literal type
    mod = isa_module(isa.literal_value)
    sig = types.void(isa, out, act, o0, o1, o2, o3, row, n_kh, span4, wts, w_off, k4)

    def codegen(context, builder, sig, args):
        def i64(i):
            return context.cast(builder, args[i], sig.args[i], types.int64)

        out_ptr = context.make_array(sig.args[1])(context, builder, args[1]).data
        act_ptr = context.make_array(sig.args[2])(context, builder, args[2]).data
        w_ptr = context.make_array(sig.args[10])(context, builder, args[10]).data
        offs = [i64(3), i64(4), i64(5), i64(6)]
        row_v, n_kh_v, span4_v, w_off_v, k4_v = i64(7), i64(8), i64(9), i64(11), i64(12)
        zero = ir.Constant(mod.SPEC.acc, None)
        accs = [cgutils.alloca_once_value(builder, zero) for _ in range(mod.SPEC.n_acc)]  # promoted to registers
        w_cur = cgutils.alloca_once_value(builder, builder.gep(w_ptr, [w_off_v]))
        act_i8 = builder.bitcast(act_ptr, I8.as_pointer())
        with cgutils.for_range(builder, n_kh_v) as kh:
            run = builder.mul(kh.index, row_v)
            with cgutils.for_range(builder, span4_v) as j:
                wp = builder.load(w_cur)
                at = builder.add(run, builder.shl(j.index, ir.Constant(I64, 2)))
                pixels = [builder.gep(act_i8, [builder.add(o, at)]) for o in offs]
                mod.step(builder, accs, wp, pixels)
                builder.store(builder.gep(wp, [k4_v]), w_cur)
        mod.store(builder, accs, builder.bitcast(out_ptr, I32.as_pointer()))
        return context.get_dummy_value()

    return sig, codegen


def store_in_order(builder, accs, out):
    """The usual ``store``: accumulator n is elements [n * lanes, (n + 1) * lanes) of the int32 tile at ``out``."""
    acc_type = accs[0].type.pointee
    out = builder.bitcast(out, acc_type.as_pointer())
    for n, acc in enumerate(accs):
        builder.store(builder.load(acc), builder.gep(out, [ir.Constant(I64, n)]), align=4)


@njit(cache=True, inline="always")
def _requant(a, mult, shift, ozp, lo, hi, act_offset):
    """int32 sum (bias included) -> the stored byte's value: clamp(mbqm + zero point) + offset, as int32."""
    y = np.int32(mbqm(a, mult, shift) + np.int32(ozp))
    return np.int32(min(max(y, np.int32(lo)), np.int32(hi)) + np.int32(act_offset))


@njit(cache=True, inline="always")
def _pixel(mm, m_n, ow_n, in_off, in_row_step, px, out_off, out_row, out_cp, out_pad):
    """(patch start in act, output address) of output pixel ``mm`` (clamped to the last: a tile's tail)."""
    mm = min(mm, m_n - 1)
    oh = mm // ow_n
    ow = mm - oh * ow_n
    return in_off + oh * in_row_step + ow * px, out_off + (oh + out_pad) * out_row + (ow + out_pad) * out_cp


@njit(cache=True)
def _conv(op, act, wts, prm, out, isa, n_block, act_offset):
    """One CONV op (conv or affine, optional fused 2x2/2 max-pool); see ``program.py`` for the fields.

    ``out``: the int32 (4, n_block) tile scratch.  Stores into ``act`` (uint8 or int8) truncate the int32
    ``y + act_offset``, which is in the byte's range by the clamp.
    """
    in_off, row, cp, stride, n_kh, span4 = op[1], op[2], op[3], op[4], op[5], op[6]
    oh_n, ow_n, pooled, ph_n, pw_n = op[7], op[8], op[9], op[10], op[11]
    out_off, out_row, out_cp, out_pad = op[12], op[13], op[14], op[15]
    n, n_pad, w_off, p_off, ozp, lo, hi = op[16], op[17], op[18], op[19], op[20], op[21], op[22]
    beff = prm[p_off : p_off + n]
    mult = prm[p_off + n : p_off + 2 * n]
    shift = prm[p_off + 2 * n : p_off + 3 * n]
    k4 = n_pad * 4
    px = stride * cp
    t0, t1, t2, t3 = out[0], out[1], out[2], out[3]
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
                for nb in range(0, n_pad, n_block):
                    tile(isa, out, act, a0, a0 + (c1 - c0) * px, a2, a2 + (c1 - c0) * px, row, n_kh, span4,
                         wts, w_off + nb * 4, k4)
                    nc = min(n_block, n - nb)
                    d = act[dst + nb : dst + nb + nc]
                    b, m, s = beff[nb : nb + nc], mult[nb : nb + nc], shift[nb : nb + nc]
                    for c in range(nc):
                        v = max(max(t0[c], t1[c]), max(t2[c], t3[c]))
                        d[c] = _requant(np.int32(v + b[c]), m[c], s[c], ozp, lo, hi, act_offset)
    else:
        m_n = oh_n * ow_n
        for m0 in range(0, m_n, 4):
            rows_n = min(4, m_n - m0)
            a0, d0 = _pixel(m0, m_n, ow_n, in_off, stride * row, px, out_off, out_row, out_cp, out_pad)
            a1, d1 = _pixel(m0 + 1, m_n, ow_n, in_off, stride * row, px, out_off, out_row, out_cp, out_pad)
            a2, d2 = _pixel(m0 + 2, m_n, ow_n, in_off, stride * row, px, out_off, out_row, out_cp, out_pad)
            a3, d3 = _pixel(m0 + 3, m_n, ow_n, in_off, stride * row, px, out_off, out_row, out_cp, out_pad)
            for nb in range(0, n_pad, n_block):
                tile(isa, out, act, a0, a1, a2, a3, row, n_kh, span4, wts, w_off + nb * 4, k4)
                nc = min(n_block, n - nb)
                b, m, s = beff[nb : nb + nc], mult[nb : nb + nc], shift[nb : nb + nc]
                for r in range(rows_n):
                    t = out[r]
                    dst = d0 if r == 0 else (d1 if r == 1 else (d2 if r == 2 else d3))
                    d = act[dst + nb : dst + nb + nc]
                    for c in range(nc):
                        d[c] = _requant(np.int32(t[c] + b[c]), m[c], s[c], ozp, lo, hi, act_offset)


@njit(cache=True)
def _load(op, image, act, act_offset):
    """The image's uint8 pixels -> stored bytes ``q + act_offset`` with ``q = pixel - 128`` (truncating store:
    uint8 ``pixel`` when the offset is 128, int8 ``pixel - 128`` when it is 0)."""
    h_n, w_n, c_n = op[1], op[2], op[3]
    out_off, out_row, out_cp, out_pad = op[12], op[13], op[14], op[15]
    delta = np.int32(act_offset - 128)
    for h in range(h_n):
        at = out_off + (h + out_pad) * out_row + out_pad * out_cp
        d = act[at : at + w_n * out_cp]
        s = image[h * w_n * c_n : (h + 1) * w_n * c_n]
        if c_n == 3 and out_cp == 4:  # RGB: one 4-byte group per pixel (the 4th byte's weights are 0)
            for w in range(w_n):
                d[4 * w] = np.int32(s[3 * w]) + delta
                d[4 * w + 1] = np.int32(s[3 * w + 1]) + delta
                d[4 * w + 2] = np.int32(s[3 * w + 2]) + delta
        else:
            for w in range(w_n):
                for c in range(c_n):
                    d[w * out_cp + c] = np.int32(s[w * c_n + c]) + delta


def executor(name: str):
    """``run_ops(ops, start, stop, image, act, wts, prm, tile)`` of the ISA module named ``name``: runs the
    program's ops ``[start, stop)`` (int64 rows) on the arenas in one Numba call."""
    mod = isa_module(name)
    isa = isa_key(name)
    n_block, act_offset = int(mod.SPEC.n_block), int(mod.SPEC.act_offset)

    @njit(cache=True)
    def run_ops(ops, start, stop, image, act, wts, prm, out):
        for i in range(start, stop):
            op = ops[i]
            kind = op[0]
            if kind == program.CONV:
                _conv(op, act, wts, prm, out, isa, n_block, act_offset)
            elif kind == program.POOL:
                pool_op(op, act)
            else:
                _load(op, image, act, act_offset)

    return run_ops


def build_plan(mod, qnet, rows: list, fuse: bool, fuse_blocks: bool = True) -> program.TilePlan:
    """Pack ``qnet`` once for ISA module ``mod`` (its block, offset, weight type and order) and return its plan."""
    spec = mod.SPEC
    act_dtype = np.uint8 if spec.act_offset else np.int8
    prog = program.build_program(qnet, rows, fuse, fuse_blocks, act_dtype, spec.act_offset, spec.n_block,
                                 spec.weight_dtype, spec.k_major)
    return program.TilePlan(prog, mod.run_ops)
