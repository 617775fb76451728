"""Execution plans of the int8 runtime: the layers of a net as a list of preallocated steps.

Imports numpy and numba only.  One builder per backend (see ``runtime.py`` for what each is):
``build_int_plan`` (int16 GEMM, ``int_gemm.py``), ``build_exact_gemm_plan`` (float32 BLAS on exact
integers, ``exact_gemm.py``), ``build_direct_plan`` (plain Numba loops, ``conv.py``/``affine.py``).

A plan owns every buffer: ``plan.input`` (the image as int8 values, in the backend's dtype) and one
output buffer per step.  A producer writes straight into its consumer's input buffer; a padded
conv's buffer has its border set once to that conv's input zero point, so no step ever pads.
``fuse=True`` folds a max-pool into the conv before it (pooling the int32 accumulators, exact
because the requantization is monotone); ``fuse=False`` gives one step per layer (the trace).
"""
from __future__ import annotations

import numpy as np

from . import affine as affine_k
from . import conv as conv_k
from . import exact_gemm as eg
from . import int_gemm as ig
from .errors import KernelError
from .pool import max_pool
from .qnet import QAffine, QConv, QFlatten, QMaxPool, QuantizedNet


class Plan:
    """A list of steps; each step runs some layers and exposes its output buffer.

    ``steps``: [(layer_names, fn, out_buffer)], fn() reads the previous step's buffer.
    """

    def __init__(self):
        self.steps: list = []


def build_direct_plan(qnet: QuantizedNet, rows: list, fuse: bool) -> Plan:
    """Plan of the plain Numba loops on int8 buffers; with ``fuse``, conv [+pool] + 1x1 conv is one
    ``conv.nin_block_int8`` call (the pool runs on int8 here, not on the accumulators)."""
    plan = Plan()
    plan.input = np.empty(qnet.spec.input_shape, np.int8)
    layers = qnet.layers
    x = plan.input
    i = 0
    acc = np.empty(max([1] + [r.out_shape[-1] for r in rows]), dtype=np.int32)
    while i < len(layers):
        q, row = layers[i], rows[i]
        if isinstance(q, QConv):
            w = conv_k.pack_conv_weights(q.weights)
            j = i + 1
            pool = None
            if fuse and j < len(layers) and isinstance(layers[j], QMaxPool):
                pool, j = layers[j], j + 1
            nxt = layers[j] if j < len(layers) else None
            if fuse and isinstance(nxt, QConv) and nxt.spec.kernel == 1 and nxt.spec.stride == 1 and nxt.spec.padding == 0:
                mid = np.empty(row.out_shape, np.int8)
                pooled = np.empty(rows[i + 1].out_shape if pool else (1, 1, 1), np.int8)
                out = np.empty(rows[j].out_shape, np.int8)
                w2 = conv_k.pack_conv_weights(nxt.weights)
                psize, pstride = (pool.spec.size, pool.spec.stride) if pool else (0, 1)

                def fn(x=x, q=q, w=w, mid=mid, psize=psize, pstride=pstride, pooled=pooled, n=nxt, w2=w2, out=out):
                    conv_k.nin_block_int8(
                        x, w, q.bias, q.input_zero_point, q.spec.stride, q.spec.padding, q.multiplier, q.shift,
                        q.output_zero_point, q.act_min, q.act_max, mid, psize, pstride, pooled,
                        w2, n.bias, n.multiplier, n.shift, n.output_zero_point, n.act_min, n.act_max, acc, out)

                names = [l.spec.name for l in layers[i : j + 1]]
                plan.steps.append((names, fn, out))
                x, i = out, j + 1
                continue
            out = np.empty(row.out_shape, np.int8)

            def fn(x=x, q=q, w=w, out=out):
                conv_k.conv_int8(x, w, q.bias, q.input_zero_point, q.spec.stride, q.spec.padding, q.multiplier,
                                 q.shift, q.output_zero_point, q.act_min, q.act_max, acc, out)

        elif isinstance(q, QMaxPool):
            out = np.empty(row.out_shape, np.int8)

            def fn(x=x, q=q, out=out):
                max_pool(x, q.spec.size, q.spec.stride, out)

        elif isinstance(q, QFlatten):
            out = x.reshape(-1)

            def fn():
                pass

        elif isinstance(q, QAffine):
            w = affine_k.pack_affine_weights(q.weights)
            out = np.empty(row.out_shape, np.int8)
            xz = np.empty(row.in_shape, np.int16)

            def fn(x=x, q=q, w=w, out=out, xz=xz):
                affine_k.affine_int8(x, w, q.bias, q.input_zero_point, q.multiplier, q.shift, q.output_zero_point,
                                     q.act_min, q.act_max, xz, out)

        else:  # pragma: no cover - validate.check_qnet rejects it first
            raise KernelError(f"unknown layer {type(q).__name__}")
        plan.steps.append(([q.spec.name], fn, out))
        x, i = out, i + 1
    return plan


def _padded_buffer(shape: tuple, consumer) -> tuple:
    """float32 buffer for a tensor of ``shape`` as its consumer wants it: (full, interior, pad).

    A padded conv consumer gets a (H+2p, W+2p, C) buffer whose border holds its input zero
    point once and for all; the producer writes the interior view.
    """
    if isinstance(consumer, QConv) and consumer.spec.padding > 0:
        p = consumer.spec.padding
        h, w, c = shape
        full = np.full((h + 2 * p, w + 2 * p, c), np.float32(consumer.input_zero_point), np.float32)
        return full, full[p : p + h, p : p + w], p
    full = np.zeros(shape, np.float32)
    return full, full, 0


def _layer_groups(layers: list, fuse: bool) -> list:
    """Layer indices in execution groups: a conv followed by a max-pool is one group when ``fuse``
    (the pool runs on the conv's int32 accumulators), every other layer a group of its own."""
    groups, i = [], 0
    while i < len(layers):
        if fuse and isinstance(layers[i], QConv) and i + 1 < len(layers) and isinstance(layers[i + 1], QMaxPool):
            groups.append((i, i + 1))
            i += 2
        else:
            groups.append((i,))
            i += 1
    return groups


def build_exact_gemm_plan(qnet: QuantizedNet, rows: list, fuse: bool) -> Plan:
    """Plan of the float32-BLAS path on exact integers (``exact_gemm.py``): one step per layer."""
    plan = Plan()
    layers = qnet.layers
    groups = _layer_groups(layers, fuse)
    x_full, plan.input, _ = _padded_buffer(tuple(qnet.spec.input_shape), layers[0])
    for g_index, group in enumerate(groups):
        q, row = layers[group[0]], rows[group[0]]
        last_row = rows[group[-1]]
        consumer = layers[groups[g_index + 1][0]] if g_index + 1 < len(groups) else None
        if isinstance(q, QFlatten):
            out_full = out = x_full.reshape(-1)
            fn = _noop
        else:
            out_full, out, pad = _padded_buffer(last_row.out_shape, consumer)
            ph, pw = (last_row.out_shape + (1, 1))[:2] if len(last_row.out_shape) == 3 else (1, 1)
        if isinstance(q, (QConv, QAffine)):
            wk = eg.pack_weights_kxo(q.weights)
            beff = eg.bias_eff(q.bias, q.weights, q.input_zero_point)
            k_total, o = wk.shape
            chunks = eg.k_chunks(k_total)
            gather = None
            if isinstance(q, QConv):
                s = q.spec
                oh, ow, _ = row.out_shape
                m = oh * ow
                if s.kernel == 1 and s.stride == 1 and s.padding == 0:
                    cols = x_full.reshape(m, k_total)
                else:
                    cols = np.empty((m, k_total), np.float32)
                    gather = (x_full.reshape(-1), x_full.shape[1], x_full.shape[2], s.kernel, s.stride, oh, ow, cols)
            else:
                oh = ow = m = 1
                cols = x_full.reshape(1, k_total)
            acc_f = np.empty((len(chunks), m, o), np.float32)
            gemms = tuple((cols[:, a:b], wk[a:b], acc_f[n]) for n, (a, b) in enumerate(chunks))
            rq = (beff, q.multiplier, q.shift, q.output_zero_point, q.act_min, q.act_max)
            if len(group) == 2:
                pool = layers[group[1]].spec
                fn = _GemmStep(gather, gemms, eg.requant_pool,
                               (acc_f, oh, ow) + rq + (pool.size, pool.stride, ph, pw, pad, out_full))
            else:
                fn = _GemmStep(gather, gemms, eg.requant,
                               (acc_f, oh, ow) + rq + (pad, out_full.reshape(oh + 2 * pad, ow + 2 * pad, o)))

        elif isinstance(q, QMaxPool):

            def fn(x=x_full, q=q, out=out):
                max_pool(x, q.spec.size, q.spec.stride, out)

        elif not isinstance(q, QFlatten):  # pragma: no cover - validate.check_qnet rejects it first
            raise KernelError(f"unknown layer {type(q).__name__}")
        plan.steps.append(([layers[k].spec.name for k in group], fn, out))
        x_full = out_full
    return plan


class _IntLayer:
    """One int-GEMM layer call; ``args`` are ``int_gemm.conv_layer``'s."""

    __slots__ = ("args",)

    def __init__(self, args):
        self.args = args

    def __call__(self):
        ig.conv_layer(*self.args)

    # the three parts, separately, for the benchmark's breakdown
    def gather(self):
        a = self.args
        if a[0]:
            ig.im2col(*a[1:9])

    def multiply(self):
        ig.gemm(*self.args[8:11])

    def finish(self):
        a = self.args
        rq = (a[10], a[6], a[7]) + a[11:17]
        if a[17] > 0:
            ig.requant_pool(*rq, a[17], a[18], a[19], a[20], a[21], a[22])
        else:
            ig.requant(*rq, a[21], a[22])


def fuse_nin_blocks(plan: Plan, layers: list) -> Plan:
    """Merge each (KxK conv [+pool]) step followed by a 1x1 conv step into one ``int_gemm.nin_block`` call."""
    by_name = {layer.spec.name: layer for layer in layers}
    steps, i = [], 0
    while i < len(plan.steps):
        names, fn, out = plan.steps[i]
        if i + 1 < len(plan.steps) and isinstance(fn, _IntLayer):
            names2, fn2, out2 = plan.steps[i + 1]
            nxt = by_name[names2[0]]
            if (isinstance(fn2, _IntLayer) and isinstance(nxt, QConv) and nxt.spec.kernel == 1
                    and isinstance(by_name[names[0]], QConv)):

                def fused(a=fn.args, b=fn2.args):
                    ig.nin_block(a, b)

                steps.append((names + names2, fused, out2))
                i += 2
                continue
        steps.append((names, fn, out))
        i += 1
    plan.steps = steps
    return plan


def _noop():
    pass


def _int16_buffer(shape: tuple, consumer) -> tuple:
    """int16 version of :func:`_padded_buffer`: (full, interior, pad)."""
    if isinstance(consumer, QConv) and consumer.spec.padding > 0:
        p = consumer.spec.padding
        h, w, c = shape
        full = np.full((h + 2 * p, w + 2 * p, c), consumer.input_zero_point, np.int16)
        return full, full[p : p + h, p : p + w], p
    full = np.zeros(shape, np.int16)
    return full, full, 0


def build_int_plan(qnet: QuantizedNet, rows: list, fuse: bool) -> Plan:
    """Plan of the pure-integer im2col + int16 GEMM path (``int_gemm.py``): one Numba call per layer
    (``fuse_nin_blocks`` then merges each NIN block into one call)."""
    plan = Plan()
    layers = qnet.layers
    groups = _layer_groups(layers, fuse)
    x_full, plan.input, _ = _int16_buffer(tuple(qnet.spec.input_shape), layers[0])
    for g_index, group in enumerate(groups):
        q, row = layers[group[0]], rows[group[0]]
        last_row = rows[group[-1]]
        consumer = layers[groups[g_index + 1][0]] if g_index + 1 < len(groups) else None
        if isinstance(q, QFlatten):
            out_full = out = x_full.reshape(-1)
            fn = _noop
        else:
            out_full, out, pad = _int16_buffer(last_row.out_shape, consumer)
        if isinstance(q, (QConv, QAffine)):
            w = ig.pack_weights(q.weights)
            beff = eg.bias_eff(q.bias, q.weights, q.input_zero_point)
            k_total = int(np.prod(q.weights.shape[1:]))
            if isinstance(q, QConv):
                s = q.spec
                oh, ow, _ = row.out_shape
                m = oh * ow
                gather = not (s.kernel == 1 and s.stride == 1 and s.padding == 0)
                if gather:
                    cols = np.zeros((m, w.shape[1]), np.int16)
                else:
                    cols = x_full.reshape(m, k_total)
            else:
                s = None
                oh = ow = m = 1
                gather = False
                cols = x_full.reshape(1, k_total)
            acc = np.empty((m, w.shape[0]), np.int32)
            src = x_full if gather else cols
            if len(group) == 2:
                pool = layers[group[1]].spec
                pool_args = (pool.size, pool.stride) + tuple(last_row.out_shape[:2])
            else:
                pool_args = (0, 1, oh, ow)
            if isinstance(q, QAffine):
                out_arr = out_full.reshape(1, 1, -1)
            else:
                out_arr = out_full
            args = (gather, src.reshape(-1), src.shape[1] if src.ndim == 3 else 1, src.shape[-1],
                    s.kernel if s else 1, s.stride if s else 1, oh, ow, cols, w, acc,
                    beff, q.multiplier, q.shift, q.output_zero_point, q.act_min, q.act_max) + pool_args + (pad, out_arr)

            fn = _IntLayer(args)

        elif isinstance(q, QMaxPool):

            def fn(x=x_full, q=q, out=out):
                max_pool(x, q.spec.size, q.spec.stride, out)

        elif not isinstance(q, QFlatten):  # pragma: no cover
            raise KernelError(f"unknown layer {type(q).__name__}")
        plan.steps.append(([layers[k].spec.name for k in group], fn, out))
        x_full = out_full
    return plan


class _GemmStep:
    """One exact-GEMM layer: [im2col] -> sgemm per K chunk -> requantize (+pool) into the next buffer.

    The three parts are callable separately (``gather``, ``multiply``, ``finish``) for the
    benchmark's breakdown of where the time goes.
    """

    __slots__ = ("_gather", "_gemms", "_finish", "_finish_args")

    def __init__(self, gather, gemms, finish, finish_args):
        self._gather, self._gemms, self._finish, self._finish_args = gather, gemms, finish, finish_args

    def gather(self):
        if self._gather is not None:
            eg.im2col(*self._gather)

    def multiply(self):
        for a, b, c in self._gemms:
            np.matmul(a, b, out=c)

    def finish(self):
        self._finish(*self._finish_args)

    def __call__(self):
        if self._gather is not None:
            eg.im2col(*self._gather)
        for a, b, c in self._gemms:
            np.matmul(a, b, out=c)
        self._finish(*self._finish_args)
