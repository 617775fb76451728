"""Instructions per MAC of a tile path's inner loop, read from the code Numba compiles for this CPU.

    python3 -m wearface.kernels.tiles.asm [PATH ...]      # default: every path this CPU has
    NUMBA_CPU_NAME=icelake-server NUMBA_CPU_FEATURES=+avx512f,+avx512bw,+avx512vnni,... \
        python3 -m wearface.kernels.tiles.asm --compile-only x86_vnni   # code for another CPU, never run

Speed on a CPU we cannot time (the boards, under qemu) is estimated from the compiled code: the tile's
innermost loop (the K loop, one step of 4 k per iteration unless LLVM unrolled it) is found in the
assembly of the driver's ``_conv`` compiled for that path, and its instructions are counted, with the
multiply-accumulates its MAC instructions do.  Numba prints the assembly (``inspect_asm``) only for code it
compiled in this process, so ``_conv`` is compiled afresh here (not from the cache).  Imports numpy and
numba only; prints one JSON line per path.
"""
from __future__ import annotations

import json
import re
import sys

import numpy as np

#: MAC instructions: mnemonic -> {register class or arrangement: multiply-accumulates per instruction}
MAC_INSTRUCTIONS = {
    "vpdpbusd": {"zmm": 64, "ymm": 32, "xmm": 16},  # 4 u8 x s8 products per int32 lane
    "vpmaddwd": {"zmm": 32, "ymm": 16, "xmm": 8},  # 2 int16 products per int32 lane
    "vpdpwssd": {"zmm": 32, "ymm": 16, "xmm": 8},  # vpmaddwd + add fused (AVX512-VNNI / AVX-VNNI)
    "vpmulld": {"zmm": 16, "ymm": 8, "xmm": 4},
    "sdot": {".4s": 16, ".2s": 8},
    "smlal": {".4s": 4, ".8h": 8, ".2d": 2},  # smlal and smlal2: one product per widened lane
    "smull": {".4s": 4, ".8h": 8, ".2d": 2},
    "mla": {".4s": 4, ".8h": 8},
}
_LABEL = re.compile(r"^([.\w$]+):")


def _instructions(asm: str) -> list:
    """[(kind, text)] with kind 'label' (text = name) or 'insn' (text = the instruction), in order."""
    out = []
    for raw in asm.splitlines():
        line = raw.split("//")[0].split("#")[0].split(";")[0].strip()
        if not line:
            continue
        m = _LABEL.match(line)
        if m:
            out.append(("label", m.group(1)))
        elif not line.startswith("."):
            out.append(("insn", line))
    return out


def _macs(insn: str) -> int:
    """Multiply-accumulates of one instruction (0 for anything else)."""
    mnemonic = insn.split()[0]
    for name, by_reg in MAC_INSTRUCTIONS.items():
        if mnemonic == name or (mnemonic.startswith(name) and mnemonic[len(name):] in ("2", "")):
            first = insn.split(",")[0] + "," + (insn.split(",")[1] if "," in insn else "")
            for reg, n in by_reg.items():
                if reg in first:
                    return n
    return 0


def inner_loops(asm: str) -> list:
    """Innermost loops that multiply: [{"instructions", "mac_instructions", "macs"}], one per copy in the code.

    A loop is a label and a later branch back to it; innermost = no other such loop strictly inside.
    """
    items = _instructions(asm)
    where = {}
    loops = []
    for i, (kind, text) in enumerate(items):
        if kind == "label":
            where[text] = i
            continue
        target = text.replace(",", " ").split()[-1]
        if target in where and text.split()[0][0] in "bjc":  # a branch back (x86 j*, arm b*/cb*)
            loops.append((where[target], i))
    found = []
    for a, b in loops:
        if any(a <= c and d <= b and (c, d) != (a, b) for c, d in loops):
            continue
        body = [t for k, t in items[a : b + 1] if k == "insn"]
        macs = [_macs(t) for t in body]
        if any(macs):
            found.append({"instructions": len(body), "mac_instructions": sum(1 for m in macs if m),
                          "macs": sum(macs)})
    return found


def report(path: str, compile_only: bool = False) -> dict:
    """Compile the driver's ``_conv`` for ``path`` afresh and measure its tile's innermost loop.

    ``compile_only``: skip the check that this CPU runs the path (the code is compiled, never run; Numba's
    target must still have the path's features, e.g. from ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES``).
    """
    import importlib

    import numba
    from numba import types

    from . import driver, require

    if not compile_only:
        require(path)
    mod = importlib.import_module(f"{__package__}.{path}")
    spec = mod.SPEC
    act = types.Array(types.uint8 if spec.act_offset else types.int8, 1, "C")
    sig = (types.Array(types.int64, 1, "C"), act, numba.typeof(np.zeros(1, spec.weight_dtype)),
           types.Array(types.int32, 1, "C"), types.Array(types.int32, 2, "C"),
           types.literal(driver.isa_key(mod.__name__)), types.literal(int(spec.n_block)),
           types.literal(int(spec.act_offset)))
    fresh = numba.njit(driver._conv.py_func)
    fresh.compile(sig)
    loops = inner_loops(fresh.inspect_asm(sig))
    if not loops:
        return {"path": path, "error": "no loop with MAC instructions found"}
    best = min(loops, key=lambda d: d["instructions"] / d["macs"])
    return {"path": path, "cpu": numba.config.CPU_NAME or "host", "loops": len(loops), **best,
            "instructions_per_mac": round(best["instructions"] / best["macs"], 4)}


def main(argv=None) -> int:
    from . import available_paths

    args = list(sys.argv[1:] if argv is None else argv)
    compile_only = "--compile-only" in args
    paths = [a for a in args if not a.startswith("--")] or available_paths()
    for path in paths:
        print(json.dumps(report(path, compile_only)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
