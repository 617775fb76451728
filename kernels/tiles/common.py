"""Numba ops shared by the register-tile paths (they work on either arena byte type).  numpy + numba only."""
from __future__ import annotations

from numba import njit


@njit(cache=True)
def pool_op(op, act):
    """A standalone max-pool op (``program.POOL`` fields) on stored bytes: uint8 ``q + 128`` (x86) and
    int8 ``q`` (arm) both keep the order of q, so the max of stored bytes is the stored max."""
    in_off, row, cp, in_pad, h, w, size, stride = op[1], op[2], op[3], op[4], op[5], op[6], op[7], op[8]
    ph_n, pw_n, out_off, out_row, out_cp, out_pad, c_n = op[10], op[11], op[12], op[13], op[14], op[15], op[16]
    for i in range(ph_n):
        r0 = i * stride
        r1 = min(r0 + size, h)
        for j in range(pw_n):
            c0 = j * stride
            c1 = min(c0 + size, w)
            dst = out_off + (i + out_pad) * out_row + (j + out_pad) * out_cp
            d = act[dst : dst + c_n]
            src = in_off + (r0 + in_pad) * row + (c0 + in_pad) * cp
            d[:] = act[src : src + c_n]
            for r in range(r0, r1):
                for s in range(c0, c1):
                    src = in_off + (r + in_pad) * row + (s + in_pad) * cp
                    x = act[src : src + c_n]
                    for c in range(c_n):
                        d[c] = max(d[c], x[c])
