"""The aarch64 dot-product tile: ``sdot`` on a 4-pixel x 16-channel register tile (the step; ``driver.py``
the rest).

Imported (hence compiled) only after ``features.arm_dot_reason()`` said the CPU executes SDOT (AT_HWCAP
asimddp) and LLVM's target has ``dotprod``: compiling ``sdot`` for a CPU without it aborts the process in
LLVM, and running it there is SIGILL.  Imports numpy, numba and llvmlite only.  Tested under qemu-user
(cortex-a76), not timed on silicon.

Sixteen <4 x i32> accumulators (4 output pixels x 4 x 4 output channels) stay in NEON registers (32 of
them) for the whole K loop.  Per step of 4 k: four 16-byte loads of packed weights ([n_block, 4] int8 per
group: 4 channels x 4 k each), and per pixel one 32-bit load of its 4 consecutive activation bytes
broadcast to the 4 lanes, then ``acc = sdot(acc, weights, broadcast)``: per lane, acc + sum of 4 products
s8 x s8 (16 MACs per instruction, no horizontal sums).  Activations are stored as int8 ``q`` (``sdot`` is
signed x signed, no offset needed); ``bias_eff = bias - zero_point * sum_k w`` (``program.py``).  Exact:
four products of at most 128 * 127 per lane and step, every accumulator below 2**31 (validator).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import cgutils

from . import driver
from .driver import I32, I64

SPEC = driver.TileSpec(n_block=16, act_offset=0, weight_dtype=np.int8, k_major=False, acc=driver.vector(32, 4),
                       n_acc=16)
_B16 = driver.vector(8, 16)


def step(builder, accs, w, pixels):
    """accs[4r + q] += sdot(weights of channels 4q .. 4q+3, broadcast(pixel r's 4 bytes))."""
    acc_t = SPEC.acc
    dot = cgutils.get_or_insert_function(builder.module, ir.FunctionType(acc_t, [acc_t, _B16, _B16]),
                                         "llvm.aarch64.neon.sdot.v4i32.v16i8")
    ws = [builder.load(builder.bitcast(builder.gep(w, [ir.Constant(I64, 16 * q)]), _B16.as_pointer()), align=1)
          for q in range(4)]
    undef = ir.Constant(acc_t, ir.Undefined)
    for r, p in enumerate(pixels):
        a = builder.load(builder.bitcast(p, I32.as_pointer()), align=1)
        b = builder.insert_element(undef, a, ir.Constant(I32, 0))
        b = builder.bitcast(builder.shuffle_vector(b, undef, ir.Constant(acc_t, None)), _B16)  # broadcast lane 0
        for q, wv in enumerate(ws):
            acc = accs[4 * r + q]
            builder.store(builder.call(dot, [builder.load(acc), wv, b]), acc)


#: accs[4r + q] = pixel r's channels 4q .. 4q+3: the tile (4, 16) in order
store = driver.store_in_order

run_ops = driver.executor(__name__)
