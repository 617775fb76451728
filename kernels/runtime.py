"""Run a whole int8 net (``QuantizedNet``) on one image, with buffers allocated once.

Imports numpy and numba only.  Backends (all bit-exact with the reference, tested):

* ``"tiles"`` (default): the instruction-set path chosen once per process by ``kernels.tiles``
  (``x86_vnni``: AVX-512 VNNI register tiles; ``arm_dot``: aarch64 ``sdot`` tiles; ``portable``: the
  ``"int"`` backend below), or the one named by ``path=`` / ``$WEARFACE_KERNELS``.  ``runtime.path``
  names it (the board's ``info``/``stats`` report it).
* ``"int"`` (the ``portable`` tile path): pure integer, no float anywhere -- im2col into int16
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
report); ``.run_int8(image)`` the last layer's int8 output.  The steps live in ``plans.py``.
"""
from __future__ import annotations

import numpy as np

from . import nets, reference, tiles, validate
from .errors import KernelError
from .plans import Plan, build_direct_plan, build_exact_gemm_plan, build_int_plan, fuse_nin_blocks
from .qnet import QuantizedNet

BACKENDS = ("tiles", "int", "exact_gemm", "direct", "reference")
DEFAULT_BACKEND = "tiles"


class Int8Runtime:
    """Runs one ``QuantizedNet``; validates it once and preallocates every buffer.

    ``run(image_uint8)``: image uint8 (H, W, 3) RGB = ``spec.input_shape`` -> float32 output,
    dequantized as ``(q - output_zero_point) * output_scale``; an ``"embedding"`` net's output is
    then L2-normalised.  Not thread-safe (shared buffers); one runtime per thread.
    """

    def __init__(self, qnet: QuantizedNet, backend: str = DEFAULT_BACKEND, path: str | None = None):
        if backend not in BACKENDS:
            raise KernelError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        if path is not None and backend != "tiles":
            raise KernelError(f"path={path!r} needs backend 'tiles', found {backend!r}")
        #: the tile path ("x86_vnni", "arm_dot", "portable") for the tiles backend, else None
        self.path = (tiles.require(path) if path else tiles.selected_path()) if backend == "tiles" else None
        self.rows = validate.check_qnet(qnet)
        self.qnet = qnet
        self.spec = qnet.spec
        self.backend = backend
        self._plans: dict = {}
        self._plan(True)

    def _plan(self, fuse: bool, fuse_blocks: bool = True) -> Plan:
        """fuse: pools into convs (and NIN blocks); False = one step per layer (the trace)."""
        key = (fuse, fuse and fuse_blocks)
        if key not in self._plans:
            if self.backend == "tiles":
                plan = tiles.build_plan(self.path, self.qnet, self.rows, fuse, key[1])
            elif self.backend == "exact_gemm":
                plan = build_exact_gemm_plan(self.qnet, self.rows, fuse)
            elif self.backend == "int":
                plan = build_int_plan(self.qnet, self.rows, fuse)
                if key[1]:
                    plan = fuse_nin_blocks(plan, self.qnet.layers)
            elif self.backend == "direct":
                plan = build_direct_plan(self.qnet, self.rows, fuse)
            else:
                plan = Plan()
                plan.input = np.empty(self.spec.input_shape, np.int8)
            self._plans[key] = plan
        return self._plans[key]

    def _load_input(self, image_uint8: np.ndarray, plan: Plan) -> np.ndarray:
        """Check the image and write ``pixel - 128`` into the plan's input buffer (int8 or float32)."""
        validate.check_array(image_uint8, self.spec.input_shape, np.uint8, f"net {self.spec.name} input image")
        if hasattr(plan, "load_input"):
            plan.load_input(image_uint8)
            return plan.input
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
        return _as_int8(plan, plan.steps[-1][2])

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
            outs.append((names[-1], _as_int8(plan, buf)))
        return outs


def _as_int8(plan: Plan, out) -> np.ndarray:
    """A step's output as int8 values (a copy): the tile plans store bytes differently (``to_int8``)."""
    return plan.to_int8(out) if hasattr(plan, "to_int8") else out.astype(np.int8)


def run_int8(qnet: QuantizedNet, image_uint8: np.ndarray, backend: str = DEFAULT_BACKEND) -> np.ndarray:
    """One-shot: build an ``Int8Runtime`` and return ``run(image_uint8)`` (float32)."""
    return Int8Runtime(qnet, backend).run(image_uint8)
