"""What the CPU this process runs on can do, read from the Linux kernel's auxiliary vector.

llvmlite's host-feature detection reads ``/proc/cpuinfo``, which under qemu-user describes the *host*
(x86) CPU, so on an emulated board it reports a featureless ``generic``.  ``getauxval(AT_HWCAP)`` is what
the kernel (or qemu-user, from its ``QEMU_CPU`` model) says the process may execute: it is right on real
boards and under emulation.  A kernel selector must decide from this *before* compiling: LLVM aborts the
whole process when asked to compile ``sdot`` for a CPU without it, and running it there is SIGILL.

Imports ctypes and the standard library only (never numba: it is consulted before anything compiles).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
from dataclasses import dataclass

#: <elf.h>: the auxiliary-vector key of the first hardware-capability word
AT_HWCAP = 16
#: Linux arch/arm64/include/uapi/asm/hwcap.h: bit numbers in AT_HWCAP on aarch64
AARCH64_HWCAP_BITS = {
    "fp": 0,
    "asimd": 1,
    "aes": 3,
    "pmull": 4,
    "crc32": 7,
    "atomics": 8,
    "fphp": 9,
    "asimdhp": 10,
    "asimdrdm": 12,
    "lrcpc": 15,
    "asimddp": 20,  # the ARMv8.2 dot product: SDOT/UDOT (Cortex-A55, A76 and later; not A53)
    "sve": 22,
}


@dataclass(frozen=True)
class CpuFeatures:
    """``machine``: ``platform.machine()`` (``aarch64``, ``x86_64``); ``hwcap``: the raw AT_HWCAP word (0 when
    unknown); ``flags``: the names of the set bits this module knows for that machine."""

    machine: str
    hwcap: int
    flags: frozenset[str]

    @property
    def arm_asimd(self) -> bool:
        """True when the CPU is aarch64 with Advanced SIMD (NEON, HWCAP_ASIMD, bit 1; every ARMv8-A Linux board)."""
        return self.machine == "aarch64" and "asimd" in self.flags

    @property
    def arm_dotprod(self) -> bool:
        """True when the CPU executes the aarch64 SDOT/UDOT instructions (HWCAP_ASIMDDP, bit 20)."""
        return self.machine == "aarch64" and "asimddp" in self.flags


def decode_aarch64_hwcap(hwcap: int) -> frozenset[str]:
    """Names of the known aarch64 feature bits set in ``hwcap`` (unsigned 64-bit)."""
    return frozenset(name for name, bit in AARCH64_HWCAP_BITS.items() if hwcap >> bit & 1)


def read_hwcap() -> int:
    """``getauxval(AT_HWCAP)`` from the C library; 0 where there is none (not Linux, no glibc symbol)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        getauxval = libc.getauxval
    except (OSError, AttributeError):
        return 0
    getauxval.restype = ctypes.c_ulong
    getauxval.argtypes = [ctypes.c_ulong]
    return int(getauxval(AT_HWCAP))


@functools.lru_cache(maxsize=1)
def detect() -> CpuFeatures:
    """The features of this process's CPU (cached: they cannot change while it runs)."""
    machine = platform.machine()
    hwcap = read_hwcap()
    flags = decode_aarch64_hwcap(hwcap) if machine == "aarch64" else frozenset()
    return CpuFeatures(machine=machine, hwcap=hwcap, flags=flags)
