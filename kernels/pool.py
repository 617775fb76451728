"""Numba 2x2 (any size/stride) max-pool on NHWC tensors, floor or ceil as ``nets.MaxPool`` says.

Imports numpy and numba only.  Works on int8 (the int path) and on float32 buffers that hold
exact integers (the exact-GEMM path); max commutes with the monotone requantization, so pooling
int32 accumulators before requantizing gives the same int8 as pooling after (see conv.py).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def max_pool(x, size, stride, out):
    """x (H, W, C) -> out (OH, OW, C); a window hanging over the edge (ceil) covers only real rows.

    ``out``'s shape fixes OH, OW (computed by ``nets.pool_out``).  Returns ``out``.
    """
    h, w, c = x.shape
    oh, ow, _ = out.shape
    for i in range(oh):
        r0 = i * stride
        r1 = min(r0 + size, h)
        for j in range(ow):
            c0 = j * stride
            c1 = min(c0 + size, w)
            dst = out[i, j]
            src = x[r0, c0]
            for k in range(c):
                dst[k] = src[k]
            for r in range(r0, r1):
                for s in range(c0, c1):
                    src = x[r, s]
                    for k in range(c):
                        if src[k] > dst[k]:
                            dst[k] = src[k]
    return out
