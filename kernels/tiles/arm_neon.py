"""The aarch64 tile without the dot product (ARMv8.0 NEON, Cortex-A53): int16 ``smlal`` by lane on a
4-pixel x 16-channel register tile (the step; ``driver.py`` the rest).

Imported only after ``features.arm_neon_reason()`` said the CPU is aarch64 with Advanced SIMD (AT_HWCAP
asimd; every ARMv8-A Linux board has it).  Imports numpy, numba and llvmlite only.  Tested under qemu-user
(cortex-a53), not timed on silicon.

The form (XNNPACK's ``qs8-gemm 4x16 neon-mlal-lane`` kernels, its choice for the Cortex-A53): weights
widened once, at load, to int16 and packed k-major inside each 16-channel block ([4, 16] int16 per group
of 4 k: one k's 16 channels adjacent); per pixel the 4 activation bytes of a step are loaded as one
32-bit word and sign-extended to 4 int16 lanes; then for each k and each 4 channels
``acc = smlal(acc, weights_k.4h, act.h[k])`` (``smlal2`` on the upper 4 channels of a register): 4 exact
int16 x int16 -> int32 products added per instruction.  Sixteen <4 x i32> accumulators (4 pixels x 16
channels) + 8 weight registers + 4 activation registers = 28 of the 32 NEON registers.

Why this form and not int8 ``smull``/``smlal`` + ``sadalp`` (ruy's, 16 MACs per 3 instructions): that one
pairs *adjacent* k into int16 (two products of at most 128 * 127 fit; the validator excludes -128 weights)
and needs each pixel's patch in steps of 8 or 16 k, while the implicit GEMM walks patches in runs of
KW * Cp bytes that are only a multiple of 4 (model A's first layer: 20 bytes a run); it also leaves one
accumulator per (pixel, channel) to reduce horizontally after the K loop.  The by-lane form keeps the
driver's 4-k step, needs no horizontal sums and no tail code, and is exact without any bound beyond
int32's.  Cost: twice the weight bytes (int16), and 0.25 multiply instructions per MAC instead of 0.19.

Activations are stored as int8 ``q`` (as on ``arm_dot``); ``bias_eff = bias - zero_point * sum_k w``.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import cgutils

from . import driver
from .driver import I64, lanes

SPEC = driver.TileSpec(n_block=16, act_offset=0, weight_dtype=np.int16, k_major=True, acc=driver.vector(32, 4),
                       n_acc=16)
_H4, _H8, _B4 = driver.vector(16, 4), driver.vector(16, 8), driver.vector(8, 4)


def step(builder, accs, w, pixels):
    """accs[4r + q] += sum over k of (int16 weights of k, channels 4q .. 4q+3) x pixel r's k-th byte."""
    smull = cgutils.get_or_insert_function(builder.module, ir.FunctionType(SPEC.acc, [_H4, _H4]),
                                           "llvm.aarch64.neon.smull.v4i32")
    # weights of this group: [4 k][16 channels] int16 = 8 registers of 8 channels
    ws = [builder.load(builder.bitcast(builder.gep(w, [ir.Constant(I64, 8 * n)]), _H8.as_pointer()), align=2)
          for n in range(8)]
    lo, hi = lanes(0, 1, 2, 3), lanes(4, 5, 6, 7)
    undef8 = ir.Constant(_H8, ir.Undefined)
    undef4 = ir.Constant(_H4, ir.Undefined)
    # channels 4q .. 4q+3 of k: the low (q even) or high (q odd, smlal2) half of register 2k + q // 2
    w_kq = [[builder.shuffle_vector(ws[2 * k + q // 2], undef8, hi if q % 2 else lo) for q in range(4)]
            for k in range(4)]
    for r, p in enumerate(pixels):
        a = builder.load(builder.bitcast(p, _B4.as_pointer()), align=1)
        a = builder.sext(a, _H4)  # 4 k as int16 lanes
        for k in range(4):
            lane = builder.shuffle_vector(a, undef4, lanes(k, k, k, k))  # a[k] x 4
            for q in range(4):
                acc = accs[4 * r + q]
                builder.store(builder.add(builder.load(acc), builder.call(smull, [w_kq[k][q], lane])), acc)


#: accs[4r + q] = pixel r's channels 4q .. 4q+3: the tile (4, 16) in order
store = driver.store_in_order

run_ops = driver.executor(__name__)
