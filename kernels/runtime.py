"""Run a whole int8 net (``QuantizedNet``) on one image, with buffers allocated once.

Imports numpy and numba only.  Backends (all bit-exact with the reference, tested):

* ``"int"`` (default, fastest here): pure integer, no float anywhere -- im2col into int16
  buffers, an int16 x int16 -> int32 register-tiled GEMM, requantization with a following max-pool
  applied to the accumulators; each NIN block (KxK conv [+pool] + 1x1 conv) is one Numba call
  (``int_gemm.py``).
* ``"exact_gemm"``: the same structure with float32 buffers and BLAS sgemm, exact because every
  partial sum is an integer below 2**24 (``exact_gemm.py`` states the bound).  Its speed depends
  on OpenBLAS's thread setting (set ``OPENBLAS_NUM_THREADS=1`` on small boards).
* ``"direct"``: straightforward Numba loops (``conv.py``, ``affine.py``, ``pool.py``), with the
  fused NIN-block kernel ``conv.nin_block_int8``; slow, kept as a second independent check.
* ``"reference"``: the plain-numpy specification (``reference.py``), slowest.

``Int8Runtime(qnet).run(image)`` returns the dequantized float32 output, L2-normalised for an
``"embedding"`` net.  ``.trace(image)`` returns every layer's int8 output (the quantizer's drift
report); ``.run_int8(image)`` the last layer's int8 output.
"""
from __future__ import annotations

import numpy as np

from . import affine as affine_k
from . import conv as conv_k
from . import exact_gemm as eg
from . import int_gemm as ig
from . import nets, reference, validate
from .errors import KernelError
from .pool import max_pool
from .qnet import QAffine, QConv, QFlatten, QMaxPool, QuantizedNet

BACKENDS = ("exact_gemm", "int", "direct", "reference")
DEFAULT_BACKEND = "int"


class _Plan:
    """A list of steps; each step runs some layers and exposes its output buffer.

    ``steps``: [(layer_names, fn, out_buffer)], fn() reads the previous step's buffer.
    """

    def __init__(self):
        self.steps: list = []


def _build_int_plan(qnet: QuantizedNet, rows: list, fuse: bool) -> _Plan:
    plan = _Plan()
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


def _build_gemm_plan(qnet: QuantizedNet, rows: list, fuse: bool) -> _Plan:
    plan = _Plan()
    layers = qnet.layers
    groups, i = [], 0
    while i < len(layers):
        if fuse and isinstance(layers[i], QConv) and i + 1 < len(layers) and isinstance(layers[i + 1], QMaxPool):
            groups.append((i, i + 1))
            i += 2
        else:
            groups.append((i,))
            i += 1
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


def _fuse_nin_blocks(plan: _Plan, layers: list) -> _Plan:
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


def _build_int_gemm_plan(qnet: QuantizedNet, rows: list, fuse: bool) -> _Plan:
    """Plan of the pure-integer im2col + int16 GEMM path (``int_gemm.py``): one Numba call per layer."""
    plan = _Plan()
    layers = qnet.layers
    groups, i = [], 0
    while i < len(layers):
        if fuse and isinstance(layers[i], QConv) and i + 1 < len(layers) and isinstance(layers[i + 1], QMaxPool):
            groups.append((i, i + 1))
            i += 2
        else:
            groups.append((i,))
            i += 1
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


class Int8Runtime:
    """Runs one ``QuantizedNet``; validates it once and preallocates every buffer.

    ``run(image_uint8)``: image uint8 (H, W, 3) RGB = ``spec.input_shape`` -> float32 output,
    dequantized as ``(q - output_zero_point) * output_scale``; an ``"embedding"`` net's output is
    then L2-normalised.  Not thread-safe (shared buffers); one runtime per thread.
    """

    def __init__(self, qnet: QuantizedNet, backend: str = DEFAULT_BACKEND):
        if backend not in BACKENDS:
            raise KernelError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        self.rows = validate.check_qnet(qnet)
        self.qnet = qnet
        self.spec = qnet.spec
        self.backend = backend
        self._plans: dict = {}
        self._plan(True)

    def _plan(self, fuse: bool, fuse_blocks: bool = True) -> _Plan:
        """fuse: pools into convs (and NIN blocks); False = one step per layer (the trace)."""
        key = (fuse, fuse and fuse_blocks)
        if key not in self._plans:
            if self.backend == "exact_gemm":
                plan = _build_gemm_plan(self.qnet, self.rows, fuse)
            elif self.backend == "int":
                plan = _build_int_gemm_plan(self.qnet, self.rows, fuse)
                if key[1]:
                    plan = _fuse_nin_blocks(plan, self.qnet.layers)
            elif self.backend == "direct":
                plan = _build_int_plan(self.qnet, self.rows, fuse)
            else:
                plan = _Plan()
                plan.input = np.empty(self.spec.input_shape, np.int8)
            self._plans[key] = plan
        return self._plans[key]

    def _load_input(self, image_uint8: np.ndarray, plan: _Plan) -> np.ndarray:
        """Check the image and write ``pixel - 128`` into the plan's input buffer (int8 or float32)."""
        validate.check_array(image_uint8, self.spec.input_shape, np.uint8, f"net {self.spec.name} input image")
        np.subtract(image_uint8, nets.INPUT_ZERO_POINT, out=plan.input, casting="unsafe", dtype=np.int16)
        return plan.input

    def run_int8(self, image_uint8: np.ndarray) -> np.ndarray:
        """The last layer's int8 output (a copy)."""
        plan = self._plan(True)
        x = self._load_input(image_uint8, plan)
        if self.backend == "reference":
            for q in self.qnet.layers:
                x = reference.run_layer(q, x)
            return x.copy()
        for _, fn, _ in plan.steps:
            fn()
        return plan.steps[-1][2].astype(np.int8)

    def steps_for(self, image_uint8: np.ndarray, fuse_blocks: bool = True) -> list:
        """Load ``image_uint8`` and return the run's steps [(layer_names, fn)], in order (benchmarks).

        Calling every fn in order is exactly ``run_int8`` without the final copy.  With
        ``fuse_blocks=False`` a NIN block is two steps (KxK conv [+pool], 1x1 conv); a GEMM step
        (``int``, ``exact_gemm``) then also has ``gather``/``multiply``/``finish`` parts.
        Empty for the reference backend.
        """
        plan = self._plan(True, fuse_blocks)
        self._load_input(image_uint8, plan)
        return [(names, fn) for names, fn, _ in plan.steps]

    def run(self, image_uint8: np.ndarray) -> np.ndarray:
        """Dequantized float32 output; L2-normalised for an embedding net."""
        q = self.run_int8(image_uint8)
        y = (q.astype(np.float32) - np.float32(self.qnet.output_zero_point)) * np.float32(self.qnet.output_scale)
        if self.spec.output == "embedding":
            y /= np.float32(max(float(np.linalg.norm(y)), 1e-12))
        return y

    def trace(self, image_uint8: np.ndarray) -> list:
        """Every layer's int8 output in layer order: [(layer_name, int8 array copy), ...]."""
        plan = self._plan(False)
        x = self._load_input(image_uint8, plan)
        if self.backend == "reference":
            outs = []
            for q in self.qnet.layers:
                x = reference.run_layer(q, x)
                outs.append((q.spec.name, x.copy()))
            return outs
        outs = []
        for names, fn, buf in plan.steps:
            fn()
            outs.append((names[-1], buf.astype(np.int8)))
        return outs


def run_int8(qnet: QuantizedNet, image_uint8: np.ndarray, backend: str = DEFAULT_BACKEND) -> np.ndarray:
    """One-shot: build an ``Int8Runtime`` and return ``run(image_uint8)`` (float32)."""
    return Int8Runtime(qnet, backend).run(image_uint8)
