"""The int8 GEMM/convolution tile paths, one per instruction set, chosen ONCE per process.

One interface: ``build_plan(path, qnet, rows, fuse, fuse_blocks)`` returns the runtime's ``Plan``
(``plans.Plan``) for a whole net.  The paths (best first):

* ``x86_vnni`` (``x86_vnni.py``): AVX-512 VNNI ``vpdpbusd`` register tile, 4 pixels x 32 channels.
* ``x86_avx2`` (``x86_avx2.py``): AVX2 ``vpmaddwd`` on widened operands, 4 pixels x 8 channels.
* ``arm_dot`` (``arm_dot.py``): aarch64 ``sdot`` register tile, 4 pixels x 16 channels.
* ``arm_neon`` (``arm_neon.py``): aarch64 without the dot product (ARMv8.0, Cortex-A53): int16 ``smlal`` by
  lane, 4 pixels x 16 channels.
* ``portable`` (``portable.py``): always present, the fallback and the cross-check.

Every path is one ISA module (constants + the LLVM IR of one step of 4 k) run by the one driver
(``driver.py``): the K loop, the op loop, the fused epilogue, packing (``program.py``).

Selection rule (:func:`selected_path`): ``$WEARFACE_KERNELS`` when set (``portable``, ``x86_vnni``,
``x86_avx2``, ``arm_dot``, ``arm_neon`` or ``auto``); otherwise the first path of :data:`PATHS` the CPU has.  Whether a path is
available is decided from CPU features *before* its module is imported (``features.py``): compiling
``sdot`` for a CPU without it aborts the process inside LLVM, so a path module is imported only after
the check passes.  Forcing a path the CPU lacks raises :class:`~wearface.kernels.errors.KernelPathError`.
The choice is logged once (logger ``wearface.kernels``) and cached for the process.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os

from ..errors import KernelPathError
from . import features

#: every tile path, in order of preference
PATHS = ("x86_vnni", "x86_avx2", "arm_dot", "arm_neon", "portable")
ENV_VAR = "WEARFACE_KERNELS"
log = logging.getLogger("wearface.kernels")

_REASONS = {
    "x86_vnni": features.x86_vnni_reason,
    "x86_avx2": features.x86_avx2_reason,
    "arm_dot": features.arm_dot_reason,
    "arm_neon": features.arm_neon_reason,
    "portable": lambda: None,
}


def unavailable_reason(path: str) -> str | None:
    """None when ``path`` can run on this CPU, else why not.  Unknown names raise KernelPathError."""
    if path not in _REASONS:
        raise KernelPathError(f"{ENV_VAR}: unknown kernels path {path!r}; expected one of {PATHS} or 'auto'")
    return _REASONS[path]()


def available_paths() -> tuple[str, ...]:
    """The paths this CPU can run, best first (``portable`` always last)."""
    return tuple(p for p in PATHS if unavailable_reason(p) is None)


def require(path: str) -> str:
    """Return ``path`` when this CPU can run it; raise KernelPathError (what, why) otherwise."""
    reason = unavailable_reason(path)
    if reason is not None:
        raise KernelPathError(f"kernels path {path!r} is not available on this CPU: {reason}; "
                              f"available: {', '.join(available_paths())}")
    return path


@functools.lru_cache(maxsize=1)
def selected_path() -> str:
    """The process's kernels path: ``$WEARFACE_KERNELS`` if set (checked), else the best available.

    Decided once (cached); logged once at INFO.  Raises KernelPathError for a forced path the CPU lacks.
    """
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced and forced != "auto":
        path = require(forced)
        log.info("kernels path %s (forced by %s)", path, ENV_VAR)
        return path
    path = available_paths()[0]
    skipped = {p: unavailable_reason(p) for p in PATHS[: PATHS.index(path)]}
    log.info("kernels path %s%s", path,
             "".join(f"; {p} unavailable: {why}" for p, why in skipped.items()))
    return path


def path_module(path: str):
    """The module implementing ``path`` (imported, hence compiled, only after ``require``)."""
    require(path)
    return importlib.import_module(f"{__name__}.{path}")


def build_plan(path: str, qnet, rows: list, fuse: bool, fuse_blocks: bool = True):
    """The runtime plan of ``qnet`` on ``path`` (see ``program.TilePlan``); packing happens here, once."""
    mod = path_module(path)
    if hasattr(mod, "build_plan"):
        return mod.build_plan(qnet, rows, fuse, fuse_blocks)
    from . import driver

    return driver.build_plan(mod, qnet, rows, fuse, fuse_blocks)
