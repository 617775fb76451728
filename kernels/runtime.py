"""Run a whole int8 net (``QuantizedNet``) on one image, with buffers allocated once.

Imports numpy and numba only.  Two backends, bit-exact with each other (tested):

* ``"tiles"`` (default): the instruction-set path chosen once per process by ``kernels.tiles``
  (``x86_vnni``, ``x86_avx2``, ``arm_dot``, ``arm_neon`` register tiles, or ``portable``), or the one named
  by ``path=`` / ``$WEARFACE_KERNELS``.  ``runtime.path`` names it (the board's ``info``/``stats`` report
  it).  One program (op table + arenas) built at load; a frame is one Numba call.
* ``"reference"``: the plain-numpy specification (``reference.py``), slowest; the check of everything else.

``Int8Runtime(qnet).run(image)`` returns the dequantized float32 output, L2-normalised for an
``"embedding"`` net.  ``.trace(image)`` returns every layer's int8 output (the quantizer's drift
report); ``.run_int8(image)`` the last layer's int8 output.
"""
from __future__ import annotations

import numpy as np

from . import nets, reference, tiles, validate
from .errors import KernelError
from .qnet import QuantizedNet, dequantize_output

BACKENDS = ("tiles", "reference")
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
        #: the tile path (``tiles.PATHS``) for the tiles backend, else None
        self.path = (tiles.require(path) if path else tiles.selected_path()) if backend == "tiles" else None
        self.rows = validate.check_qnet(qnet)
        self.qnet = qnet
        self.spec = qnet.spec
        self.backend = backend
        self._plans: dict = {}
        if backend == "tiles":
            self._plan(True)

    def _plan(self, fuse: bool, fuse_blocks: bool = True):
        """The tile plan (``tiles.program.TilePlan``); fuse: pools into convs; False = one step per layer (trace)."""
        key = (fuse, fuse and fuse_blocks)
        if key not in self._plans:
            self._plans[key] = tiles.build_plan(self.path, self.qnet, self.rows, fuse, key[1])
        return self._plans[key]

    def _check(self, image_uint8: np.ndarray) -> None:
        validate.check_array(image_uint8, self.spec.input_shape, np.uint8, f"net {self.spec.name} input image")

    def _reference_input(self, image_uint8: np.ndarray) -> np.ndarray:
        """The image as int8 values ``pixel - 128`` (the reference's input)."""
        self._check(image_uint8)
        return (image_uint8.astype(np.int16) - nets.INPUT_ZERO_POINT).astype(np.int8)

    def run_int8(self, image_uint8: np.ndarray) -> np.ndarray:
        """The last layer's int8 output (a copy)."""
        if self.backend == "reference":
            x = self._reference_input(image_uint8)
            for q in self.qnet.layers:
                x = reference.run_layer(q, x)
            return x.copy()
        plan = self._plan(True)
        self._check(image_uint8)
        plan.load_input(image_uint8)
        for _, fn, _ in plan.steps:
            fn()
        return plan.to_int8(plan.steps[-1][2])

    def steps_for(self, image_uint8: np.ndarray, fuse_blocks: bool = True) -> list:
        """Load ``image_uint8`` and return the run's steps [(layer_names, fn)], in order (benchmarks).

        Calling every fn in order is exactly ``run_int8`` without the final copy.  With
        ``fuse_blocks=False`` each op (conv [+ fused pool], pool, affine) is a step.
        Empty for the reference backend.
        """
        if self.backend == "reference":
            return []
        plan = self._plan(True, fuse_blocks)
        self._check(image_uint8)
        plan.load_input(image_uint8)
        return [(names, fn) for names, fn, _ in plan.steps]

    def run(self, image_uint8: np.ndarray) -> np.ndarray:
        """Dequantized float32 output; L2-normalised for an embedding net (``qnet.dequantize_output``)."""
        return dequantize_output(self.qnet, self.run_int8(image_uint8))

    def trace(self, image_uint8: np.ndarray) -> list:
        """Every layer's int8 output in layer order: [(layer_name, int8 array copy), ...]."""
        if self.backend == "reference":
            x = self._reference_input(image_uint8)
            outs = []
            for q in self.qnet.layers:
                x = reference.run_layer(q, x)
                outs.append((q.spec.name, x.copy()))
            return outs
        plan = self._plan(False)
        self._check(image_uint8)
        plan.load_input(image_uint8)
        outs = []
        for names, fn, buf in plan.steps:
            fn()
            outs.append((names[-1], plan.to_int8(buf)))
        return outs


def run_int8_dequantized(qnet: QuantizedNet, image_uint8: np.ndarray, backend: str = DEFAULT_BACKEND) -> np.ndarray:
    """One-shot: build an ``Int8Runtime`` and return ``run(image_uint8)``: the int8 net's output dequantized
    to float32 (L2-normalised for an embedding net)."""
    return Int8Runtime(qnet, backend).run(image_uint8)
