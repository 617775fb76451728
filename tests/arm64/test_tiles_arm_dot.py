"""issue 9's aarch64 tile path under emulation: the A76-class CPU (dot product) selects ``arm_dot`` and it is
bit-exact; the Cortex-A53 never lists it.  (``test_kernels_emulated.py`` runs tests/kernels/test_tiles.py and
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
import json, numpy as np
from wearface.kernels import nets, ptq, reference, runtime, tiles
report = {"selected": tiles.selected_path()}
for name in ("align", "A"):
    qnet = ptq.random_quantized_net(nets.get_net(name), seed=11)
    image = ptq.random_images(qnet.spec.input_shape, 1, 7)[0]
    want = reference.forward_trace(qnet, image)
    rt = runtime.Int8Runtime(qnet)
    trace_ok = all(np.array_equal(g, w) for (_, g), w in zip(rt.trace(image), want))
    report[name] = {"path": rt.path, "trace": trace_ok, "fused": bool(np.array_equal(rt.run_int8(image), want[-1]))}
print(json.dumps(report))
"""


def test_a53_has_only_the_portable_path(userland):
    report = Emulated(userland, "cortex-a53").json(PATHS_REPORT)
    assert report["available"] == ["portable"], report
    assert "no dot product" in report["arm_dot_reason"], report


@pytest.mark.slow
def test_a76_selects_arm_dot_and_whole_nets_are_bit_exact(userland):
    report = Emulated(userland, "cortex-a76").json(WHOLE_NETS, timeout_s=900)
    assert report["selected"] == "arm_dot", report
    for name in ("align", "A"):
        assert report[name] == {"path": "arm_dot", "trace": True, "fused": True}, report
