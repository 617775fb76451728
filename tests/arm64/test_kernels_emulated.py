"""The kernel bit-exactness suite (tests/kernels) run by pytest *inside* the emulated aarch64 python, on the
Cortex-A53 (no dot product) and the A55-class board's model (dot product), and what the A53 must never do."""
from __future__ import annotations

import json
import re
import signal

import pytest

from .conftest import REPO, describe_failure

#: the files of tests/kernels that state bit-exactness against the integer reference, for every backend and every
#: tile path the running CPU has (tiles.available_paths(): arm_dot, arm_neon, portable on the A76; arm_neon,
#: portable on the A53); kept to these so the emulated set stays small
KERNEL_TEST_FILES = ("tests/kernels/test_kernels_bitexact.py", "tests/kernels/test_tiles.py", "tests/kernels/test_quant.py")
#: left out under emulation: path-selection and allocation checks that each start more interpreters (a fresh
#: numba import and compile in qemu costs 5-15 s each) and say nothing about arithmetic on this ISA; the
#: selection on these CPUs is checked below and in test_tiles_arm_dot.py
DESELECTED = ("test_forcing_each_available_path_runs_it", "test_a_frame_allocates_nothing_on_the_tile_paths")


@pytest.mark.slow
def test_kernel_suite_is_bit_exact_on_every_emulated_cpu(all_cpus):
    files = [f for f in KERNEL_TEST_FILES if (REPO / f).is_file()]
    assert files, f"none of {KERNEL_TEST_FILES} exists"
    deselect = " and ".join(f"not {name}" for name in DESELECTED)
    results = all_cpus.run(lambda cpu: ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", deselect, *files],
                           timeout_s=900)
    for cpu, done in results.items():
        assert done.returncode == 0, describe_failure(cpu, done)
        summary = done.stdout.strip().splitlines()[-1]
        assert re.search(r"\d+ passed", summary) and "failed" not in summary, f"{cpu}: {summary}"


PATH_REPORT = """
import json, numpy as np
from wearface.kernels import cpu_features, nets, ptq
from wearface.kernels.runtime import Int8Runtime
rt = Int8Runtime(ptq.random_quantized_net(nets.MODEL_A, 5))
rt.run_int8(np.zeros(nets.MODEL_A.input_shape, np.uint8))
print(json.dumps({"path": str(getattr(rt, "path", None) or rt.backend), "dotprod_cpu": cpu_features.detect().arm_dotprod}))
"""


def test_a53_runs_a_path_without_the_dot_product(all_cpus):
    a53 = type(all_cpus)(all_cpus.userland, ["cortex-a53"])
    done = a53.run(lambda cpu: ["-c", PATH_REPORT], timeout_s=600)["cortex-a53"]
    assert done.returncode not in (-signal.SIGILL, -signal.SIGABRT), describe_failure("cortex-a53", done)
    assert done.returncode == 0, describe_failure("cortex-a53", done)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["dotprod_cpu"] is False
    assert not re.search(r"dot|sdot|udot", report["path"], re.I), f"the A53 runs the kernels path {report['path']!r}"


def _kernel_selector_exists() -> bool:
    """issue 9's selector: the kernels package reads WEARFACE_KERNELS (absent until that issue lands)."""
    return any("WEARFACE_KERNELS" in p.read_text(errors="replace") for p in (REPO / "kernels").rglob("*.py"))


FORCE_DOT = """
import json
try:
    from wearface.kernels import nets, ptq
    from wearface.kernels.runtime import Int8Runtime
    Int8Runtime(ptq.random_quantized_net(nets.ALIGN_NET, 5))
    print(json.dumps({"error": None}))
except Exception as exc:
    from wearface.kernels.errors import KernelError
    print(json.dumps({"error": type(exc).__name__, "kernel_error": isinstance(exc, KernelError), "message": str(exc)}))
"""


def test_forcing_the_dot_product_path_on_the_a53_is_the_packages_error(all_cpus):
    if not _kernel_selector_exists():
        pytest.skip("no WEARFACE_KERNELS selector in kernels/ yet (issue 9 adds the arm_dot path and the variable)")
    a53 = type(all_cpus)(all_cpus.userland, ["cortex-a53"])
    done = a53.run(lambda cpu: ["-c", FORCE_DOT], env=dict(__import__("os").environ, WEARFACE_KERNELS="arm_dot"),
                   timeout_s=600)["cortex-a53"]
    # LLVM asked to select SDOT for a CPU without it aborts the process; running it there is SIGILL
    assert done.returncode not in (-signal.SIGILL, -signal.SIGABRT), describe_failure("cortex-a53", done)
    assert done.returncode == 0, describe_failure("cortex-a53", done)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["error"] and report["kernel_error"], report
    assert "arm_dot" in report["message"] or "dot" in report["message"].lower(), report
