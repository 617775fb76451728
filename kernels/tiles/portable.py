"""The portable tile path: the plain-Numba int16 im2col + GEMM of ``int_gemm.py`` (``plans.build_int_plan``).

Always available (no instruction beyond what LLVM auto-vectorises for the host); the fallback on CPUs
without a special path (aarch64 without dot product, x86 without AVX-512 VNNI) and the cross-check of
the fast paths.  Weights are packed once here, at plan build (model load).
"""
from __future__ import annotations

from ..plans import build_int_plan, fuse_nin_blocks


def build_plan(qnet, rows: list, fuse: bool, fuse_blocks: bool = True):
    plan = build_int_plan(qnet, rows, fuse)
    return fuse_nin_blocks(plan, qnet.layers) if fuse and fuse_blocks else plan
