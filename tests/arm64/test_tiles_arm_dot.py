"""The aarch64 tile paths under emulation (both arm tiles, despite the file name): the A76-class CPU (dot product)
selects ``arm_dot``, the Cortex-A53 (ARMv8.0, no dot product) selects ``arm_neon`` (int16 ``smlal`` by lane), and each is
bit-exact on whole nets;
the A53 never lists ``arm_dot``.  (``test_kernels_emulated.py`` runs tests/kernels/test_tiles.py and
test_kernels_bitexact.py on both CPUs at once: every available path on drawn shapes.)"""
from __future__ import annotations

import pytest

from .conftest import Emulated

PATHS_REPORT = """
import json
from wearface.kernels import tiles
print(json.dumps({"available": list(tiles.available_paths()), "arm_dot_reason": tiles.unavailable_reason("arm_dot")}))
"""

WHOLE_NETS = """
import json, sys, numpy as np
from wearface.kernels import nets, ptq, reference, runtime, tiles
from wearface.kernels.tiles import asm
report = {"selected": tiles.selected_path()}
for name in sys.argv[1].split(","):
    qnet = ptq.random_quantized_net(nets.get_net(name), seed=11)
    image = ptq.random_images(qnet.spec.input_shape, 1, 7)[0]
    want = reference.forward_trace(qnet, image)
    rt = runtime.Int8Runtime(qnet)
    trace_ok = all(np.array_equal(g, w) for (_, g), w in zip(rt.trace(image), want))
    report[name] = {"path": rt.path, "trace": trace_ok, "fused": bool(np.array_equal(rt.run_int8(image), want[-1]))}
report["asm"] = asm.report(report["selected"])
print(json.dumps(report))
"""


def test_a53_lists_the_neon_path_and_not_the_dot_product(userland):
    report = Emulated(userland, "cortex-a53").json(PATHS_REPORT)
    assert report["available"] == ["arm_neon", "portable"], report
    assert "no dot product" in report["arm_dot_reason"], report


@pytest.mark.slow
def test_a53_selects_arm_neon_and_whole_nets_are_bit_exact(userland):
    nets = ("align", "A", "B")
    report = Emulated(userland, "cortex-a53").json(WHOLE_NETS, ",".join(nets), timeout_s=1500)
    assert report["selected"] == "arm_neon", report
    for name in nets:
        assert report[name] == {"path": "arm_neon", "trace": True, "fused": True}, report
    # the compiled K loop multiplies with smlal/smlal2 by lane: 4 MACs each, 64 of them per step of 4 k x 16 x 4
    assert report["asm"]["macs"] == 4 * report["asm"]["mac_instructions"] and report["asm"]["macs"] % 256 == 0, report


@pytest.mark.slow
def test_a76_selects_arm_dot_and_whole_nets_are_bit_exact(userland):
    nets = ("align", "A")
    report = Emulated(userland, "cortex-a76").json(WHOLE_NETS, ",".join(nets), timeout_s=900)
    assert report["selected"] == "arm_dot", report
    for name in nets:
        assert report[name] == {"path": "arm_dot", "trace": True, "fused": True}, report
    assert report["asm"]["macs"] == 16 * report["asm"]["mac_instructions"], report  # sdot: 16 MACs each
