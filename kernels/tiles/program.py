"""A whole int8 net as a table of ops over three preallocated arenas: the plan of the register-tile paths.

Imports numpy only.  Shared by every tile path (``driver.py``); the paths differ only in how an activation
byte is stored (``act_offset``), the tile's channel width (``n_block``) and the weights' type and order.

Layout, decided once at model load (nothing is allocated per frame):

* **Activations** live in one byte arena (``act``, uint8 on x86, int8 on arm).  Each tensor is an NHWC
  buffer (H+2p, W+2p, Cp): ``p`` = its consumer conv's padding, ``Cp`` = C rounded up to a multiple of 4
  (so every kernel row of a patch is whole 32-bit groups).  A stored byte is ``q + act_offset`` (x86:
  ``q + 128`` as uint8, because ``vpdpbusd`` multiplies *unsigned* by signed bytes; arm: ``q``).  The
  border and the padding channels are filled once with the consumer's input zero point (+ offset), so no
  op ever pads.  Tensors start on 64-byte boundaries.
* **Implicit GEMM**: a conv output pixel's patch is KH runs of KW*Cp contiguous bytes, ``row_elems``
  apart; the tile reads them in place (no im2col).  An affine layer is a 1x1 "conv" whose one patch is
  the whole (contiguous) input tensor, flatten included (NHWC row-major, padding channels get zero weights).
* **Weights** (``wts``, int8, or int16 where the path multiplies int16 lanes): per layer packed as
  [K/4, N_pad, 4] -- K in (kh, kw, c) order over the padded channels, four consecutive k of one output
  channel adjacent, N rounded up to ``n_block`` with zero weights -- so one load of 64 (x86) or 16 (arm)
  bytes gives 16 or 4 output channels x 4 k.  ``k_major``: within each group of 4 k, each channel block is
  [4, n_block] instead (one k's channels adjacent, for multiply-by-lane tiles); a block still starts at
  element ``nb * 4`` of its group.  64-byte aligned.
* **Constants** (``prm``, int32): per layer ``bias_eff`` (O), ``multiplier`` (O), ``shift`` (O), with
  ``bias_eff = bias - (input_zero_point + act_offset) * sum_k w[o, k]``: the stored bytes are
  ``q + act_offset``, and ``sum (q - zp) w = sum (q + off) w - (zp + off) sum w``.  Exact in int32: the
  validator bounds ``|bias| + K*255*127 < 2**31`` and ``|zp + off| <= 255``.
* **Ops** (``ops``, int64 rows of :data:`N_FIELDS`): LOAD (image -> input tensor), CONV (conv or affine,
  optionally with a fused 2x2/2 max-pool: the tile's 4 pixels are then the pool window, max-pooled on the
  int32 accumulators before requantizing, exact because requantization is monotone), POOL (any other
  max-pool, on stored bytes: the offset keeps their order).

The path's Numba executor runs ``ops[start:stop]`` in one call.
"""
from __future__ import annotations

import numpy as np

from ..errors import KernelError
from ..qnet import QAffine, QConv, QFlatten, QMaxPool

# op kinds
LOAD, CONV, POOL = 0, 1, 2
N_FIELDS = 24
# CONV fields
F_KIND, F_IN, F_ROW, F_CP, F_STRIDE, F_KH, F_SPAN4, F_OH, F_OW, F_POOL, F_PH, F_PW = range(12)
F_OUT, F_OUT_ROW, F_OUT_CP, F_OUT_PAD, F_N, F_NPAD, F_W, F_P, F_OZP, F_LO, F_HI = range(12, 23)
# POOL fields reuse: F_IN, F_ROW, F_CP, [4] in_pad, [5] h_in, [6] w_in, [7] size, [8] stride, F_PH, F_PW,
# F_OUT.., F_N = channels.  LOAD fields: [1] h, [2] w, [3] c, F_OUT.., (the image's bytes -> stored bytes)
P_IN_PAD, P_H, P_W, P_SIZE, P_STRIDE = 4, 5, 6, 7, 8
ALIGN_BYTES = 64
TILE_PIXELS = 4


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


class Tensor:
    """Where one activation tensor lives in the arena: (H+2p, W+2p, Cp) from byte ``off``; C real channels."""

    def __init__(self, shape: tuple, pad: int, fill: int):
        if len(shape) == 1:
            shape = (1, 1, shape[0])
        self.h, self.w, self.c = shape
        self.pad, self.fill = pad, fill
        self.cp = round_up(self.c, 4)
        self.hp, self.wp = self.h + 2 * pad, self.w + 2 * pad
        self.nbytes = self.hp * self.wp * self.cp
        self.off = -1

    @property
    def row_elems(self) -> int:
        return self.wp * self.cp


class Program:
    """The packed net: ``ops``, ``act``, ``wts``, ``prm`` arenas; ``tensors[i]`` = output of layer i.

    ``tile``: int32 (4, n_block) scratch for one register tile's accumulators (the epilogue reads it
    while it is in L1).  ``steps``: [(layer names, op start, op stop, output Tensor, flat)].
    """

    def __init__(self, act_dtype, act_offset: int, n_block: int):
        self.act_dtype, self.act_offset, self.n_block = np.dtype(act_dtype), act_offset, n_block
        self.tile = np.zeros((TILE_PIXELS, n_block), np.int32)

    def view(self, t: Tensor) -> np.ndarray:
        """The interior (H, W, C) of tensor ``t`` in the arena (a view)."""
        full = self.act[t.off : t.off + t.nbytes].reshape(t.hp, t.wp, t.cp)
        return full[t.pad : t.pad + t.h, t.pad : t.pad + t.w, : t.c]

    def int8(self, t: Tensor, flat: bool) -> np.ndarray:
        """Tensor ``t`` as int8 values q (a copy): (H, W, C), or (H*W*C,) for flat tensors."""
        v = self.view(t)
        q = (v ^ np.uint8(0x80)).view(np.int8) if self.act_offset else v.astype(np.int8)
        return q.reshape(-1).copy() if flat else q.copy()


def _pack_weights(w_oc: np.ndarray, n_block: int, k_major: bool = False) -> np.ndarray:
    """int8 (O, K) with K % 4 == 0 -> int8 [K/4, N_pad, 4] flattened (N_pad = O rounded up to n_block);
    ``k_major``: [K/4, N_pad/n_block, 4, n_block] instead (same size, same block starts)."""
    o, k = w_oc.shape
    n_pad = round_up(o, n_block)
    packed = np.zeros((k // 4, n_pad, 4), np.int8)
    packed[:, :o, :] = w_oc.reshape(o, k // 4, 4).transpose(1, 0, 2)
    if k_major:
        packed = packed.reshape(k // 4, n_pad // n_block, n_block, 4).transpose(0, 1, 3, 2).copy()
    return packed.reshape(-1)


def _layer_weights(q, t_in: Tensor) -> np.ndarray:
    """int8 (O, K) over the input tensor's padded channels, K in (kh, kw, c) order."""
    if isinstance(q, QConv):
        o, kh, kw, c = q.weights.shape
        w = np.zeros((o, kh, kw, t_in.cp), np.int8)
        w[..., :c] = q.weights
    else:  # affine over a flattened (H, W, C) tensor (or a previous affine's (1, 1, C))
        o = q.weights.shape[0]
        w = np.zeros((o, t_in.h, t_in.w, t_in.cp), np.int8)
        w[..., : t_in.c] = q.weights.reshape(o, t_in.h, t_in.w, t_in.c)
    return w.reshape(o, -1)


def build_program(qnet, rows: list, fuse: bool, fuse_blocks: bool, act_dtype, act_offset: int,
                  n_block: int, weight_dtype=np.int8, k_major: bool = False) -> Program:
    """Pack ``qnet`` (validated; ``rows`` = its ``nets.iter_counts``) into a :class:`Program`.

    ``weight_dtype``: the weight arena's type (int16 = the int8 values widened once, here);
    ``k_major``: the weight order of :func:`_pack_weights`.  Weight offsets count elements.

    ``fuse``: fold a 2x2/2 max-pool into the conv before it (else one op per layer: the trace).
    ``fuse_blocks``: ``steps`` is one step for the whole net (else one step per op).
    """
    prog = Program(act_dtype, act_offset, n_block)
    layers = qnet.layers
    # groups of layers that become one op: conv [+ pool 2x2/2], pool, affine; flatten is no op
    groups, i = [], 0
    while i < len(layers):
        q = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if (fuse and isinstance(q, QConv) and isinstance(nxt, QMaxPool)
                and nxt.spec.size == 2 and nxt.spec.stride == 2):
            groups.append([i, i + 1])
            i += 2
        else:
            groups.append([i])
            i += 1

    def consumer_of(g_index):
        """The first layer that reads group g's output (skipping flatten), or None."""
        for g in groups[g_index + 1 :]:
            if not isinstance(layers[g[0]], QFlatten):
                return layers[g[0]]
        return None

    def tensor_for(shape, consumer, zp):
        pad = consumer.spec.padding if isinstance(consumer, QConv) else 0
        return Tensor(shape, pad, (zp + act_offset) & 0xFF)

    first = consumer_of(-1)
    t_in = tensor_for(tuple(qnet.spec.input_shape), first, qnet.input_zero_point)
    tensors = [t_in]
    ops, wts, prm, steps = [], [], [], []
    w_elems = p_words = 0
    zp = qnet.input_zero_point
    load = np.zeros(N_FIELDS, np.int64)
    load[[F_KIND, 1, 2, 3]] = LOAD, t_in.h, t_in.w, t_in.c
    ops.append((load, t_in))
    t_cur = t_in
    for g_index, g in enumerate(groups):
        q = layers[g[0]]
        names = [layers[k].spec.name for k in g]
        out_shape = rows[g[-1]].out_shape
        if isinstance(q, QFlatten):
            steps.append((names, len(ops), len(ops), t_cur, True))
            continue
        if isinstance(q, (QConv, QAffine)):
            zp = q.output_zero_point
        t_out = tensor_for(out_shape, consumer_of(g_index), zp)
        tensors.append(t_out)
        op = np.zeros(N_FIELDS, np.int64)
        if isinstance(q, QMaxPool):
            s = q.spec
            op[[F_KIND, F_PH, F_PW, F_N]] = POOL, t_out.h, t_out.w, t_cur.c
            op[[P_IN_PAD, P_H, P_W, P_SIZE, P_STRIDE]] = t_cur.pad, t_cur.h, t_cur.w, s.size, s.stride
        elif isinstance(q, (QConv, QAffine)):
            w = _layer_weights(q, t_cur)
            o, k = w.shape
            packed = _pack_weights(w, n_block, k_major)
            wsum = q.weights.reshape(o, -1).astype(np.int64).sum(axis=1)
            beff = q.bias.astype(np.int64) - (int(q.input_zero_point) + act_offset) * wsum
            if beff.size and (beff.max() >= 2**31 or beff.min() < -(2**31)):  # pragma: no cover - validate bounds it
                raise KernelError(f"{q.spec.name}: bias_eff out of int32 range")
            if isinstance(q, QConv):
                s = q.spec
                conv_h, conv_w = rows[g[0]].out_shape[:2]
                op[[F_STRIDE, F_KH, F_SPAN4, F_OH, F_OW]] = s.stride, s.kernel, s.kernel * t_cur.cp // 4, conv_h, conv_w
            else:
                op[[F_STRIDE, F_KH, F_SPAN4, F_OH, F_OW]] = 1, 1, k // 4, 1, 1
            op[[F_KIND, F_N, F_NPAD, F_W, F_P]] = CONV, o, round_up(o, n_block), w_elems, p_words
            op[[F_OZP, F_LO, F_HI]] = q.output_zero_point, q.act_min, q.act_max
            if len(g) == 2:
                op[[F_POOL, F_PH, F_PW]] = 1, t_out.h, t_out.w
            else:
                op[[F_POOL, F_PH, F_PW]] = 0, t_out.h, t_out.w
            wts.append((w_elems, packed))
            w_elems = round_up(w_elems + packed.size, ALIGN_BYTES)
            prm.append((p_words, np.concatenate([beff.astype(np.int32), q.multiplier, q.shift])))
            p_words += 3 * o
        else:  # pragma: no cover - validate.check_qnet rejects it first
            raise KernelError(f"unknown layer {type(q).__name__}")
        op[F_ROW], op[F_CP] = t_cur.row_elems, t_cur.cp
        op[[F_OUT_ROW, F_OUT_CP, F_OUT_PAD]] = t_out.row_elems, t_out.cp, t_out.pad
        ops.append((op, (t_cur, t_out)))
        steps.append((names, len(ops) - 1, len(ops), t_out, isinstance(q, QAffine)))
        t_cur = t_out

    # arenas: tensors back to back, 64-byte aligned, filled with their zero points
    off = 0
    for t in tensors:
        t.off = off
        off = round_up(off + t.nbytes, ALIGN_BYTES)
    raw = np.empty(off + ALIGN_BYTES, np.uint8)
    shift = (-raw.ctypes.data) % ALIGN_BYTES
    prog.act = raw[shift : shift + off].view(prog.act_dtype)
    for t in tensors:
        prog.act.view(np.uint8)[t.off : t.off + t.nbytes] = t.fill
    raww = np.zeros(w_elems + ALIGN_BYTES, weight_dtype)
    wshift = (-raww.ctypes.data) % ALIGN_BYTES // raww.itemsize  # numpy's allocations are itemsize-aligned
    prog.wts = raww[wshift : wshift + max(w_elems, 1)]
    for at, packed in wts:
        prog.wts[at : at + packed.size] = packed
    prog.prm = np.zeros(max(p_words, 1), np.int32)
    for at, words in prm:
        prog.prm[at : at + words.size] = words
    prog.ops = np.zeros((len(ops), N_FIELDS), np.int64)
    for n, (op, where) in enumerate(ops):
        if op[F_KIND] == LOAD:
            op[F_OUT], op[F_OUT_ROW], op[F_OUT_CP], op[F_OUT_PAD] = where.off, where.row_elems, where.cp, where.pad
        else:
            t_src, t_dst = where
            op[F_IN], op[F_OUT] = t_src.off, t_dst.off
        prog.ops[n] = op
    prog.input = tensors[0]
    if fuse_blocks:
        names = [layer.spec.name for layer in layers]
        prog.steps = [(names, 0, len(ops), steps[-1][3], steps[-1][4])]
    else:
        steps[0] = (steps[0][0], 0, steps[0][2], steps[0][3], steps[0][4])  # the first step also loads
        prog.steps = steps
    return prog


class TilePlan:
    """The runtime's plan (``plans.Plan`` protocol) over a :class:`Program` and a path's executor.

    ``run_ops(ops, start, stop, image_flat, act, wts, prm, tile)`` is the path's Numba executor.
    ``steps``: [(layer names, fn, output)] where ``output`` is what :meth:`to_int8` reads.
    """

    def __init__(self, prog: Program, run_ops):
        self.prog = prog
        self.image = np.zeros(prog.input.h * prog.input.w * prog.input.c, np.uint8)
        self.input = self.image  # the runtime checks the image, then calls load_input
        self.steps = []
        for names, start, stop, tensor, flat in prog.steps:

            def fn(start=start, stop=stop, p=prog, image=self.image, run_ops=run_ops):
                run_ops(p.ops, start, stop, image, p.act, p.wts, p.prm, p.tile)

            self.steps.append((names, fn, (tensor, flat)))

    def load_input(self, image_uint8: np.ndarray) -> None:
        """Keep the (checked) uint8 image; the LOAD op copies it into the arena inside the Numba call."""
        self.image[:] = image_uint8.reshape(-1)

    def to_int8(self, out) -> np.ndarray:
        tensor, flat = out
        return self.prog.int8(tensor, flat)
