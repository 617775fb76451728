"""The requantization primitive: TFLite's double rounding, golden vectors, numpy == Numba."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearface.kernels import quant
from wearface.kernels.errors import QuantizationError


def _c_trunc_div(a, b):
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _tflite_mbqm(x, m, s):
    """Line-by-line transcription of TFLite's MultiplyByQuantizedMultiplier (double rounding)."""
    left, right = (s, 0) if s > 0 else (0, -s)
    a = max(min(x * (1 << left), 2**31 - 1), -(2**31))
    if a == m == -(2**31):
        high = 2**31 - 1
    else:
        ab = a * m
        nudge = (1 << 30) if ab >= 0 else (1 - (1 << 30))
        high = _c_trunc_div(ab + nudge, 1 << 31)
    mask = (1 << right) - 1
    rem = high & mask
    thr = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if rem > thr else 0)


@pytest.mark.parametrize("x,m,s,want", quant.GOLDEN_MBQM)
def test_golden_vectors_double_rounding(x, m, s, want):
    assert _tflite_mbqm(x, m, s) == want
    assert int(quant.multiply_by_quantized_multiplier_ref(np.int32(x), np.int32(m), np.int32(s))) == want
    assert int(quant.mbqm(np.int32(x), np.int32(m), np.int32(s))) == want


def test_double_rounding_differs_from_single_rounding_on_5_times_quarter():
    # 5 * 0.25 = 1.25: single rounding gives 1, TFLite's double rounding gives 2.
    assert int(quant.multiply_by_quantized_multiplier_ref(np.int32(5), np.int32(1 << 30), np.int32(-1))) == 2


@settings(max_examples=50, deadline=None)
@given(
    x=st.integers(-(2**31), 2**31 - 1),
    m=st.one_of(st.just(0), st.integers(2**30, 2**31 - 1)),
    s=st.integers(-31, 30),
)
def test_numpy_and_numba_equal_the_c_transcription(x, m, s):
    want = _tflite_mbqm(x, m, s)
    assert int(quant.multiply_by_quantized_multiplier_ref(np.int32(x), np.int32(m), np.int32(s))) == want
    assert int(quant.mbqm(np.int32(x), np.int32(m), np.int32(s))) == want


def test_quantize_multiplier_hand_cases():
    assert quant.quantize_multiplier(0.0) == (0, 0)
    assert quant.quantize_multiplier(0.5) == (1 << 30, 0)
    assert quant.quantize_multiplier(0.25) == (1 << 30, -1)
    assert quant.quantize_multiplier(1.0) == (1 << 30, 1)
    # mantissa rounding up to 2^31 renormalises
    assert quant.quantize_multiplier(1.0 - 2.0**-40) == (1 << 30, 1)
    assert quant.quantize_multiplier(2.0**-40) == (0, 0)


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=2.0**-30, max_value=1000.0, allow_nan=False))
def test_quantize_multiplier_represents_the_real(real):
    m, s = quant.quantize_multiplier(real)
    assert 2**30 <= m < 2**31 and -31 <= s <= 30
    assert math.isclose(m * 2.0 ** (s - 31), real, rel_tol=2.0**-30)


@pytest.mark.parametrize("real", [-1.0, float("nan"), float("inf"), 2.0**31])
def test_quantize_multiplier_rejects_bad_reals(real):
    with pytest.raises(QuantizationError):
        quant.quantize_multiplier(real)


def test_check_multiplier_shift_names_where_and_what():
    with pytest.raises(QuantizationError, match=r"conv1: shift\[1\] = 31, expected in \[-31, 30\]"):
        quant.check_multiplier_shift(np.array([1 << 30, 1 << 30], np.int32), np.array([0, 31], np.int32), "conv1")
    with pytest.raises(QuantizationError, match=r"fc1: multiplier\[0\] = 5"):
        quant.check_multiplier_shift(np.array([5], np.int32), np.array([0], np.int32), "fc1")
