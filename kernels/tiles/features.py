"""Which tile paths this process can compile and run, decided *before* anything is compiled.

Imports the standard library and llvmlite only (never numba's compiler: this runs before it).

* x86: the AVX2 tile needs ``avx2``; the AVX-512 VNNI tile needs ``avx512f``, ``avx512bw`` and ``avx512vnni`` in the features LLVM
  compiles for.  That is llvmlite's host detection (what Numba uses) unless ``NUMBA_CPU_NAME`` /
  ``NUMBA_CPU_FEATURES`` override it, in which case the override's feature string must name them.
* aarch64 without the dot product: the NEON ``smlal`` tile needs the CPU to be aarch64 with Advanced SIMD
  (AT_HWCAP asimd, bit 1); every LLVM aarch64 target has ``neon``, so no target check is needed.
* aarch64: the ``sdot`` tile needs the CPU to execute it -- ``getauxval(AT_HWCAP)`` bit 20, read by
  ``kernels/cpu_features.py`` (right on real boards and under qemu-user) -- *and* LLVM's target to
  have ``dotprod``, else LLVM aborts the process while selecting SDOT.  Under qemu, llvmlite sees the
  host's /proc/cpuinfo, so the emulation sets ``NUMBA_CPU_NAME`` to the board's CPU model; that name
  must then be one LLVM gives ``dotprod`` (:data:`ARM_DOTPROD_CPU_NAMES`).
"""
from __future__ import annotations

import functools
import os
import platform

from .. import cpu_features

#: LLVM aarch64 CPU names whose default features include ``dotprod`` (ARMv8.2+ dot product);
#: cortex-a53/a57/a72/a73 and "generic" do not.
ARM_DOTPROD_CPU_NAMES = frozenset({
    "cortex-a55", "cortex-a65", "cortex-a65ae", "cortex-a75", "cortex-a76", "cortex-a76ae", "cortex-a77",
    "cortex-a78", "cortex-a78c", "cortex-a710", "cortex-a715", "cortex-a720", "cortex-a510", "cortex-a520",
    "cortex-x1", "cortex-x1c", "cortex-x2", "cortex-x3", "cortex-x4", "neoverse-n1", "neoverse-n2",
    "neoverse-v1", "neoverse-v2", "neoverse-e1", "apple-m1", "apple-m2", "apple-m3", "apple-a14",
    "apple-a15", "apple-a16", "ampere1", "ampere1a",
})
X86_VNNI_FEATURES = ("avx512f", "avx512bw", "avx512vnni")


def _numba_cpu_override() -> tuple[str | None, str | None]:
    """(NUMBA_CPU_NAME, NUMBA_CPU_FEATURES) as Numba reads them; None when unset or "host"."""
    name = os.environ.get("NUMBA_CPU_NAME") or None
    feats = os.environ.get("NUMBA_CPU_FEATURES") or None
    return (None if name == "host" else name), feats


def _plus_features(feature_string: str) -> set[str]:
    return {f[1:] for f in feature_string.split(",") if f.startswith("+")}


@functools.lru_cache(maxsize=1)
def llvm_host_features() -> dict:
    """llvmlite's host CPU features {name: bool} (empty when it cannot tell, as under qemu)."""
    try:
        import llvmlite.binding as llvm

        return dict(llvm.get_host_cpu_features())
    except Exception:  # noqa: BLE001 - a missing or failing detector means "no special features"
        return {}


def x86_vnni_reason() -> str | None:
    """None when the AVX-512 VNNI tile can be compiled and run here, else why not (one line)."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return f"machine is {machine}, not x86_64"
    name, feats = _numba_cpu_override()
    if name is not None or feats is not None:
        have = _plus_features(feats or "")
        missing = [f for f in X86_VNNI_FEATURES if f not in have]
        if missing:
            return (f"NUMBA_CPU_NAME={name!r} / NUMBA_CPU_FEATURES={feats!r} override Numba's target and do not "
                    f"name +{', +'.join(missing)}")
    host = llvm_host_features()
    missing = [f for f in X86_VNNI_FEATURES if not host.get(f, False)]
    if missing:
        return f"the CPU lacks {', '.join(missing)} (llvmlite host features)"
    return None


def x86_avx2_reason() -> str | None:
    """None when the AVX2 tile (``vpmaddwd``) can be compiled and run here, else why not (one line)."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return f"machine is {machine}, not x86_64"
    name, feats = _numba_cpu_override()
    if (name is not None or feats is not None) and "avx2" not in _plus_features(feats or ""):
        return f"NUMBA_CPU_NAME={name!r} / NUMBA_CPU_FEATURES={feats!r} override Numba's target and do not name +avx2"
    if not llvm_host_features().get("avx2", False):
        return "the CPU lacks avx2 (llvmlite host features)"
    return None


def _arm_cpu_reason(flag: str, missing: str) -> str | None:
    """None when this CPU is aarch64 with AT_HWCAP ``flag``, else why not (``missing`` formats the hwcap word)."""
    cpu = cpu_features.detect()
    if cpu.machine != "aarch64":
        return f"machine is {cpu.machine}, not aarch64"
    return None if flag in cpu.flags else missing.format(cpu.hwcap)


def arm_neon_reason() -> str | None:
    """None when the aarch64 NEON ``smlal`` tile can be compiled and run here, else why not (one line)."""
    return _arm_cpu_reason("asimd", "AT_HWCAP {:#x} lacks asimd (bit 1)")


def arm_dot_reason() -> str | None:
    """None when the aarch64 ``sdot`` tile can be compiled and run here, else why not (one line)."""
    reason = _arm_cpu_reason("asimddp", "the CPU has no dot product (AT_HWCAP {:#x} lacks asimddp, bit 20)")
    if reason is not None:
        return reason
    name, feats = _numba_cpu_override()
    if feats is not None and "dotprod" in _plus_features(feats):
        return None
    if name is not None:
        if name.lower() in ARM_DOTPROD_CPU_NAMES:
            return None
        return f"NUMBA_CPU_NAME={name!r} is not a CPU LLVM compiles sdot for (set it to the board's model)"
    if llvm_host_features().get("dotprod", False):
        return None
    return "LLVM's host detection does not report dotprod (set NUMBA_CPU_NAME to the CPU model)"
