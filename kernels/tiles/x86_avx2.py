"""The AVX2 tile: ``vpmaddwd`` on a 4-pixel x 8-channel register tile, for x86 without VNNI (the step;
``driver.py`` the rest).

Imported only after ``features.x86_avx2_reason()`` said the CPU (and Numba's target) has avx2.  Imports
numpy, numba and llvmlite only.

Why not ``vpmaddubsw`` (u8 x s8 -> int16 pair sums): 255 * 127 * 2 = 64770 > 32767, so its pair sums
saturate.  This tile widens first: the 4 activation bytes of a patch step (stored ``q + 128``, uint8, as on
the VNNI path) are broadcast and zero-extended to 16 int16 lanes (a0 a1 a2 a3 repeated), the weights are
the same [n_block, 4] packing widened once to int16 at load, and ``vpmaddwd`` gives per int32 lane
``a0*w0 + a1*w1`` or ``a2*w2 + a3*w3`` of one channel -- exact (|.| <= 2 * 255 * 127).  Two lanes per
channel are added once, after the K loop (:func:`store`).

Eight <8 x i32> accumulators (4 pixels x 2 x 4 channels) in ymm registers for the whole K loop; per step
of 4 k: two 32-byte weight loads, per pixel one 32-bit load broadcast and widened, two ``vpmaddwd`` + two
adds (32 MACs).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import cgutils

from . import driver
from .driver import I64, lanes

SPEC = driver.TileSpec(n_block=8, act_offset=128, weight_dtype=np.int16, k_major=False, acc=driver.vector(32, 8),
                       n_acc=8)
_W16 = driver.vector(16, 16)
_B4 = driver.vector(8, 4)


def step(builder, accs, w, pixels):
    """accs[2r + h] += vpmaddwd(pixel r's 4 bytes widened and repeated x4, int16 weights of channels 4h .. 4h+3)."""
    madd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(SPEC.acc, [_W16, _W16]),
                                          "llvm.x86.avx2.pmadd.wd")
    w0 = builder.load(builder.bitcast(w, _W16.as_pointer()), align=1)
    w1 = builder.load(builder.bitcast(builder.gep(w, [ir.Constant(I64, 16)]), _W16.as_pointer()), align=1)
    repeat = lanes(*([0, 1, 2, 3] * 4))
    for r, p in enumerate(pixels):
        a = builder.load(builder.bitcast(p, _B4.as_pointer()), align=1)
        a = builder.shuffle_vector(a, ir.Constant(_B4, ir.Undefined), repeat)  # a0 a1 a2 a3 x 4
        a = builder.zext(a, _W16)  # u8 -> int16: no saturation anywhere
        for h, wv in ((0, w0), (1, w1)):
            acc = accs[2 * r + h]
            builder.store(builder.add(builder.load(acc), builder.call(madd, [a, wv])), acc)


def store(builder, accs, out):
    """Channel c of pixel r = lane 2c + lane 2c+1 of (accs[2r], accs[2r+1]) (the k0,k1 and k2,k3 halves)."""
    out = builder.bitcast(out, SPEC.acc.as_pointer())
    even, odd = lanes(*range(0, 16, 2)), lanes(*range(1, 16, 2))
    for r in range(4):
        lo_v, hi_v = builder.load(accs[2 * r]), builder.load(accs[2 * r + 1])
        sums = builder.add(builder.shuffle_vector(lo_v, hi_v, even), builder.shuffle_vector(lo_v, hi_v, odd))
        builder.store(sums, builder.gep(out, [ir.Constant(I64, r)]), align=4)


run_ops = driver.executor(__name__)
