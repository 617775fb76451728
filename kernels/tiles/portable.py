"""The portable tile: plain LLVM vector IR (no target intrinsic) on a 4-pixel x 8-channel register tile (the
step; ``driver.py`` the rest).  Always available: the fallback where no ISA tile applies, and the cross-check.

Imports numpy, numba and llvmlite only.  The IR uses only ``sext``, ``mul``, ``add`` and shuffles on
explicit vector types, so every LLVM target compiles it and picks its own instructions: the pair-product
form below is the one x86's instruction selector turns into ``pmaddwd`` (SSE2, AVX2, AVX-512BW: two
int16 products summed per int32 lane) and aarch64's into ``smull``/``smlal`` + pairwise adds.  Written as
explicit vectors rather than left to the auto-vectoriser because that one chooses its vector width per CPU
(256 bits on Intel's AVX-512 parts) and vectorised the old im2col GEMM along K with ``pmovsxwd`` +
``pmulld`` per 8 MACs (``docs/kernels.md``, "The portable path").

Activations are stored as int8 ``q`` (no offset); weights are the [n_block, 4] packing widened once to
int16.  Per step of 4 k and per pixel: the pixel's 4 bytes sign-extended and repeated for the 8 channels,
multiplied lane by lane with the 8 x 4 weights, and adjacent products added: lane 2c = a0*w0 + a1*w1 and
lane 2c+1 = a2*w2 + a3*w3 of channel c (16 int32 lanes), each exact (|.| <= 2 * 128 * 127); the two
halves of a channel are added once, after the K loop (:func:`store`).  Four <16 x i32> accumulators (one
per pixel) for the whole K loop.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from . import driver
from .driver import I64, lanes

SPEC = driver.TileSpec(n_block=8, act_offset=0, weight_dtype=np.int16, k_major=False, acc=driver.vector(32, 16),
                       n_acc=4)
_B4, _H32, _P32 = driver.vector(8, 4), driver.vector(16, 32), driver.vector(32, 32)


def step(builder, accs, w, pixels):
    """accs[r] lane 2c + h += a[2h] * w[c, 2h] + a[2h + 1] * w[c, 2h + 1] (pixel r, channel c, half h)."""
    w32 = builder.sext(builder.load(builder.bitcast(w, _H32.as_pointer()), align=2), _P32)  # 8 channels x 4 k
    repeat = lanes(*([0, 1, 2, 3] * 8))
    undef = ir.Constant(_B4, ir.Undefined)
    even, odd = lanes(*range(0, 32, 2)), lanes(*range(1, 32, 2))
    for r, p in enumerate(pixels):
        a = builder.load(builder.bitcast(p, _B4.as_pointer()), align=1)
        a32 = builder.sext(builder.shuffle_vector(a, undef, repeat), _P32)  # a0 a1 a2 a3 x 8
        prod = builder.mul(a32, w32)  # exact: |.| <= 128 * 127
        undef_p = ir.Constant(_P32, ir.Undefined)
        pairs = builder.add(builder.shuffle_vector(prod, undef_p, even), builder.shuffle_vector(prod, undef_p, odd))
        builder.store(builder.add(builder.load(accs[r]), pairs), accs[r])


def store(builder, accs, out):
    """Channel c of pixel r = lane 2c + lane 2c+1 of accs[r]: the tile (4, 8)."""
    out = builder.bitcast(out, driver.vector(32, 8).as_pointer())
    even, odd = lanes(*range(0, 16, 2)), lanes(*range(1, 16, 2))
    undef = ir.Constant(SPEC.acc, ir.Undefined)
    for r in range(4):
        v = builder.load(accs[r])
        sums = builder.add(builder.shuffle_vector(v, undef, even), builder.shuffle_vector(v, undef, odd))
        builder.store(sums, builder.gep(out, [ir.Constant(I64, r)]), align=4)


run_ops = driver.executor(__name__)
