"""Quantization parameters and the one requantization primitive of wearface.

Imports numpy and numba only.

Rounding: TFLite's *double rounding*, i.e. the reference ``MultiplyByQuantizedMultiplier``
of ``tensorflow/lite/kernels/internal/common.h`` built with ``TFLITE_SINGLE_ROUNDING`` off
(gemmlowp's ``SaturatingRoundingDoublingHighMul`` followed by ``RoundingDivideByPOT``)::

    left  = max(shift, 0);  right = max(-shift, 0)
    a     = x * 2**left                               (int32; our multipliers keep shift <= 0)
    ab    = a * multiplier                            (exact, int64)
    nudge = 2**30 if ab >= 0 else 1 - 2**30
    high  = trunc((ab + nudge) / 2**31)               (C division: toward zero)
            (saturates to 2**31 - 1 for a == multiplier == -2**31, impossible here: multiplier >= 0)
    mask  = 2**right - 1;  rem = high & mask
    thr   = (mask >> 1) + (1 if high < 0 else 0)
    out   = (high >> right) + (1 if rem > thr else 0)   (arithmetic shift: floor)

That is: two roundings to nearest.  The first (at bit 31 of the doubled product) breaks ties
toward +infinity -- the nudge ``1 - 2**30`` with a truncating division makes -2.5 give -2 while
2.5 gives 3; the second (the right shift) breaks ties away from zero.  E.g. x = 5 times 0.25
(multiplier 2**30, shift -1) gives 5*0.5 = 2.5 -> 3, then 3/2 = 1.5 -> 2, where single
rounding would give round(1.25) = 1.  The real multiplier is ``multiplier * 2**(shift - 31)`` with ``multiplier`` in
[2**30, 2**31) (or 0) and ``shift`` in [-31, 30]; positive shift = left shift (TFLite's sign).
Golden vectors: ``GOLDEN_MBQM`` below, checked by ``tests/kernels/test_quant.py``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .errors import QuantizationError

INT8_MIN = -128
INT8_MAX = 127
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
#: Weights are symmetric int8 in [-WEIGHT_MAX, WEIGHT_MAX] (TFLite: -128 is never used).
WEIGHT_MAX = 127
SHIFT_MIN = -31
SHIFT_MAX = 30
Q31_ONE = 1 << 31


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Real multiplier (>= 0) -> (multiplier, shift): TFLite's ``QuantizeMultiplier``.

    ``real == multiplier * 2**(shift - 31)`` up to rounding of the Q31 mantissa (round half away
    from zero).  multiplier is a Python int in [2**30, 2**31) or 0; shift in [-31, 30].
    Reals below 2**-32 become (0, 0) (an all-zero output), as in TFLite; reals of 2**30 or more
    raise QuantizationError (no layer of ours gets near).
    """
    real = float(real)
    if not math.isfinite(real) or real < 0:
        raise QuantizationError(f"quantize_multiplier: real multiplier must be finite and >= 0, got {real}")
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)  # real = mantissa * 2**shift, mantissa in [0.5, 1)
    q = int(math.floor(mantissa * Q31_ONE + 0.5))  # mantissa > 0: round half away from zero
    if q == Q31_ONE:
        q //= 2
        shift += 1
    if shift < SHIFT_MIN:
        return 0, 0
    if shift > SHIFT_MAX:
        raise QuantizationError(f"quantize_multiplier: real multiplier {real} needs shift {shift} > {SHIFT_MAX}")
    return q, shift


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """Vector form of :func:`quantize_multiplier`: (multiplier int32 (N,), shift int32 (N,))."""
    pairs = [quantize_multiplier(r) for r in np.asarray(reals, dtype=np.float64).ravel()]
    mult = np.array([p[0] for p in pairs], dtype=np.int32)
    shift = np.array([p[1] for p in pairs], dtype=np.int32)
    return mult, shift


def check_multiplier_shift(multiplier, shift, where: str) -> None:
    """Raise QuantizationError naming ``where`` unless every (multiplier, shift) is in range.

    multiplier: int32 (C,), each 0 or in [2**30, 2**31); shift: int32 (C,) in [-31, 30].  A
    positive (left) shift is allowed, as in TFLite; the shifted accumulator saturates to int32.
    """
    m = np.asarray(multiplier)
    s = np.asarray(shift)
    if m.dtype != np.int32 or s.dtype != np.int32:
        raise QuantizationError(f"{where}: multiplier and shift must be int32, found {m.dtype} and {s.dtype}")
    if m.shape != s.shape:
        raise QuantizationError(f"{where}: multiplier shape {m.shape} != shift shape {s.shape}")
    bad = (m != 0) & (m < (1 << 30))
    if bad.any():
        i = int(np.argmax(bad))
        raise QuantizationError(f"{where}: multiplier[{i}] = {int(m[i])}, expected 0 or in [2^30, 2^31)")
    bad = (s < SHIFT_MIN) | (s > SHIFT_MAX)
    if bad.any():
        i = int(np.argmax(bad))
        raise QuantizationError(f"{where}: shift[{i}] = {int(s[i])}, expected in [{SHIFT_MIN}, {SHIFT_MAX}]")


# --- numpy reference (the specification; vectorised, int64 inside) -------------------------

def multiply_by_quantized_multiplier_ref(x, multiplier, shift) -> np.ndarray:
    """Plain-numpy ``MultiplyByQuantizedMultiplier`` (double rounding), elementwise, broadcasting.

    x: int32 accumulators; multiplier: int32 Q31; shift: int32.  Returns int32.  The left-shifted
    value saturates to int32 before the multiply (TFLite leaves that overflow undefined).
    """
    x = np.asarray(x, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    a = np.clip(x << left, INT32_MIN, INT32_MAX)
    ab = a * m  # |a|, |m| < 2**31: exact in int64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    t = ab + nudge
    high = np.where(t >= 0, t >> 31, -((-t) >> 31))  # C division by 2**31 truncates toward zero
    high = np.clip(high, INT32_MIN, INT32_MAX)
    mask = (np.int64(1) << right) - 1
    rem = high & mask
    thr = (mask >> 1) + (high < 0)
    return ((high >> right) + (rem > thr)).astype(np.int32)


def requantize_ref(acc, multiplier, shift, output_zero_point: int, act_min: int, act_max: int) -> np.ndarray:
    """int32 accumulators -> int8: MBQM + output zero point, clamped to [act_min, act_max].

    ``multiplier``/``shift`` broadcast against the last axis (per output channel).
    """
    y = multiply_by_quantized_multiplier_ref(acc, multiplier, shift).astype(np.int64) + output_zero_point
    return np.clip(y, act_min, act_max).astype(np.int8)


# --- Numba primitive (same arithmetic, scalar) ---------------------------------------------

@njit(cache=True, inline="always")
def mbqm(x, multiplier, shift):
    """Numba scalar ``MultiplyByQuantizedMultiplier`` (double rounding); int32 in, int32 out.

    Branch-free (selects only) so that loops over channels vectorise; the one 64-bit step is the
    Q31 product, as in TFLite.  ``multiplier >= 0``, so TFLite's INT32_MIN * INT32_MIN
    saturation case cannot occur.
    """
    left = np.int64(max(shift, 0))
    right = np.int64(max(-shift, 0))
    a = min(max(np.int64(x) << left, np.int64(INT32_MIN)), np.int64(INT32_MAX))
    ab = a * np.int64(multiplier)
    t = ab + (np.int64(1 << 30) if ab >= 0 else np.int64(1 - (1 << 30)))
    # C division by 2**31 truncates toward zero: add 2**31 - 1 to a negative t before the shift.
    high = (t + ((t >> np.int64(63)) & np.int64(0x7FFFFFFF))) >> np.int64(31)
    mask = (np.int64(1) << right) - np.int64(1)
    rem = high & mask
    thr = (mask >> np.int64(1)) - (high >> np.int64(63))  # +1 when high < 0
    return np.int32((high >> right) + (np.int64(1) if rem > thr else np.int64(0)))


# (x, multiplier, shift, MultiplyByQuantizedMultiplier(x, multiplier, shift)), double rounding.
# Computed by a line-by-line transcription of TFLite's C code in Python ints (see the test), and
# checked by hand where commented: (5, 2^30, -1): 2.5 -> 3, 1.5 -> 2 (single rounding: 1);
# (-5, 2^30, -1): -2.5 -> -2 (tie toward +inf), -1 -> -1; (-3, 2^30, 0): -1.5 -> -1; (-6, 2^30, -1):
# -3 -> -1.5 -> -2 (tie away from zero).
GOLDEN_MBQM = (
    (0, 1073741824, 0, 0),
    (3, 1073741824, 0, 2),
    (-3, 1073741824, 0, -1),
    (1, 1073741824, 0, 1),
    (-1, 1073741824, 0, 0),
    (5, 1073741824, -1, 2),
    (-5, 1073741824, -1, -1),
    (6, 1073741824, -1, 2),
    (-6, 1073741824, -1, -2),
    (7, 1073741824, -2, 1),
    (-7, 1073741824, -2, -1),
    (10, 1073741824, -2, 1),
    (-10, 1073741824, -2, -1),
    (-2, 1073741824, -2, 0),
    (100, 1073741824, -3, 6),
    (-100, 1073741824, -3, -6),
    (1000, 1518500250, -8, 3),
    (123456, 1431655765, -5, 2572),
    (-123456, 1431655765, -5, -2572),
    (77, 1840700269, -7, 1),
    (500000, 1840700269, -12, 105),
    (-500000, 1840700269, -12, -105),
    (2147483647, 2147483647, 0, 2147483646),
    (-2147483648, 2147483647, 0, -2147483647),
    (2147483647, 1073741824, -31, 1),
    (-2147483648, 1073741824, -31, -1),
    (3, 1073741824, 2, 6),
    (268435456, 1073741824, 1, 268435456),
    (41, 0, 0, 0),
)
