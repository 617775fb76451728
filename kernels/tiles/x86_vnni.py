"""The AVX-512 VNNI tile: ``vpdpbusd`` on a 4-pixel x 32-channel register tile (the step; ``driver.py`` the rest).

Imported only after ``features.x86_vnni_reason()`` said the CPU (and Numba's target) has avx512f,
avx512bw and avx512vnni.  Imports numpy, numba and llvmlite only.

Eight <16 x i32> accumulators (4 output pixels x 2 x 16 output channels) stay in zmm registers for the
whole K loop.  Per step of 4 k: two 64-byte loads of packed weights ([n_block, 4] int8 per group: 16
channels x 4 k each), and per pixel one 32-bit load of its 4 consecutive activation bytes broadcast to
all 16 lanes, then ``acc = vpdpbusd(acc, broadcast, weights)``: per lane, acc + sum of 4 products
u8 x s8 -- 64 MACs per instruction, no horizontal sums.  Activations are stored as ``q + 128`` (uint8);
the correction ``(zero_point + 128) * sum_k w`` is folded into ``bias_eff`` at load time
(``program.py``).  No saturation: ``vpdpbusd`` (not ``vpdpbusds``) adds four products of at most
255 * 127 exactly into int32, and the validator bounds every accumulator below 2**31.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import cgutils

from . import driver
from .driver import I32, I64

SPEC = driver.TileSpec(n_block=32, act_offset=128, weight_dtype=np.int8, k_major=False, acc=driver.vector(32, 16),
                       n_acc=8)


def step(builder, accs, w, pixels):
    """accs[2r + h] += vpdpbusd(broadcast(pixel r's 4 bytes), weights of channels 16h .. 16h+15)."""
    acc_t = SPEC.acc
    dot = cgutils.get_or_insert_function(builder.module, ir.FunctionType(acc_t, [acc_t, acc_t, acc_t]),
                                         "llvm.x86.avx512.vpdpbusd.512")
    w0 = builder.load(builder.bitcast(w, acc_t.as_pointer()), align=1)
    w1 = builder.load(builder.bitcast(builder.gep(w, [ir.Constant(I64, 64)]), acc_t.as_pointer()), align=1)
    undef = ir.Constant(acc_t, ir.Undefined)
    for r, p in enumerate(pixels):
        a = builder.load(builder.bitcast(p, I32.as_pointer()), align=1)
        b = builder.insert_element(undef, a, ir.Constant(I32, 0))
        b = builder.shuffle_vector(b, undef, ir.Constant(acc_t, None))  # broadcast lane 0
        for h, wv in ((0, w0), (1, w1)):
            builder.store(builder.call(dot, [builder.load(accs[2 * r + h]), b, wv]), accs[2 * r + h])


#: accs[2r + h] = pixel r's channels 16h .. 16h+15: the tile (4, 32) in order
store = driver.store_in_order

run_ops = driver.executor(__name__)
