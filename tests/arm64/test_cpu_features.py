"""kernels/cpu_features.py: AT_HWCAP decoding on the host, and the dotprod bit as each emulated CPU reports it."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wearface.kernels import cpu_features

from .conftest import has_dotprod


def test_decode_aarch64_hwcap_names_bit_20_asimddp():
    assert cpu_features.decode_aarch64_hwcap(1 << 20) == {"asimddp"}
    assert cpu_features.decode_aarch64_hwcap(0b11) == {"fp", "asimd"}
    assert cpu_features.decode_aarch64_hwcap(0) == frozenset()


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_decode_aarch64_hwcap_sets_exactly_the_known_bits(hwcap):
    flags = cpu_features.decode_aarch64_hwcap(hwcap)
    assert flags == {name for name, bit in cpu_features.AARCH64_HWCAP_BITS.items() if hwcap & (1 << bit)}


def test_host_is_never_reported_as_arm_dotprod_unless_aarch64():
    features = cpu_features.detect()
    assert features.arm_dotprod == (features.machine == "aarch64" and "asimddp" in features.flags)


DETECT = """
import json
from wearface.kernels import cpu_features
f = cpu_features.detect()
print(json.dumps({"machine": f.machine, "hwcap": f.hwcap, "dotprod": f.arm_dotprod, "flags": sorted(f.flags)}))
"""


def test_emulated_cpu_reports_dotprod_exactly_when_it_has_it(emulated):
    report = emulated.json(DETECT)
    assert report["machine"] == "aarch64"
    assert "asimd" in report["flags"], report  # every ARMv8-A board has NEON
    assert report["dotprod"] is has_dotprod(emulated.qemu_cpu), report
