"""Alignment geometry: windows, the 3-number correction, and the two crops (synthetic scenes)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from wearface.firmware import align
from wearface.firmware.errors import AlignError, FirmwareError

finite = dict(allow_nan=False, allow_infinity=False)
centres = st.tuples(st.floats(-500, 1500, **finite), st.floats(-500, 1500, **finite))
scales = st.floats(0.05, 20, **finite)
angles = st.floats(-3.1, 3.1, **finite)
corrections = st.tuples(st.floats(-0.5, 0.5, **finite), st.floats(-0.5, 0.5, **finite), st.floats(-1.5, 1.5, **finite))


def smooth_pattern(size=112, seed=0):
    """An asymmetric, smooth RGB test card in the canonical frame (BGR uint8)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    chans = []
    for _ in range(3):
        a, b, c, d = rng.uniform(1, 4, 4)
        chans.append(0.5 + 0.25 * np.sin(2 * math.pi * (a * x + 0.3 * y) + c) + 0.2 * np.cos(2 * math.pi * b * y * x + d))
    return np.clip(np.stack(chans, -1) * 255, 0, 255).astype(np.uint8)


def scene_with(card_bgr, window, shape=(480, 640)):
    """A frame where canonical pixel q of ``window`` shows card pixel q (black elsewhere):
    warpAffine without WARP_INVERSE_MAP maps source (canonical) to destination (frame) points."""
    import cv2

    return cv2.warpAffine(card_bgr, window, (shape[1], shape[0]), flags=cv2.INTER_LINEAR)


@given(centres, scales, angles)
def test_window_params_round_trip(c, s, a):
    w = align.window_from_params(c, s, a)
    cx, cy, s2, a2 = align.window_params(w)
    assert cx == pytest.approx(c[0], abs=1e-6) and cy == pytest.approx(c[1], abs=1e-6)
    assert s2 == pytest.approx(s, rel=1e-9) and a2 == pytest.approx(a, abs=1e-9)


@given(centres, scales, angles, corrections)
def test_correction_between_inverts_apply_correction(c, s, a, corr):
    w = align.window_from_params(c, s, a)
    target = align.apply_correction(w, corr)
    np.testing.assert_allclose(align.correction_between(w, target), corr, atol=1e-7)


def test_correction_signs():
    w = align.window_from_params((100, 100), 1.0, 0.0)
    # +dx: the corrected window's centre moves right by dx * 112 frame px (scale 1).
    cx, cy, _, _ = align.window_params(align.apply_correction(w, (0.1, 0, 0)))
    assert (cx, cy) == pytest.approx((100 + 11.2, 100))
    cx, cy, _, ang = align.window_params(align.apply_correction(w, (0, -0.05, 0.2)))
    assert (cx, cy, ang) == pytest.approx((100, 100 - 5.6, 0.2))


def test_fit_window_recovers_a_known_similarity():
    truth = align.window_from_params((321.5, 187.25), 2.7, math.radians(-17))
    pts = align.map_points(truth, align.LANDMARK_TEMPLATE)
    np.testing.assert_allclose(align.fit_window(pts), truth, atol=1e-9)
    np.testing.assert_allclose(align.unmap_points(truth, pts), align.LANDMARK_TEMPLATE, atol=1e-9)


@pytest.mark.parametrize("scale", [0.8, 1.0, 3.0])
def test_embedding_input_undoes_a_known_similarity(scale):
    card = smooth_pattern()
    truth = align.window_from_params((300, 230), scale, math.radians(25))
    frame = scene_with(card, truth)
    got = align.embedding_input(frame, truth)
    want = card[:, :, ::-1]
    inner = (slice(6, -6), slice(6, -6))
    err = np.abs(got[inner].astype(int) - want[inner].astype(int))
    assert got.dtype == np.uint8 and got.shape == (112, 112, 3)
    assert err.mean() < 4, err.mean()


def test_perturbed_window_is_undone_by_its_correction():
    card = smooth_pattern(seed=3)
    truth = align.window_from_params((320, 240), 1.5, math.radians(-10))
    frame = scene_with(card, truth)
    guess = align.window_from_params((335, 228), 1.5, math.radians(5))
    corr = align.correction_between(guess, truth)
    fixed = align.apply_correction(guess, corr)
    np.testing.assert_allclose(fixed, truth, atol=1e-9)
    got = align.embedding_input(frame, fixed)
    assert np.abs(got[6:-6, 6:-6].astype(int) - card[6:-6, 6:-6, ::-1].astype(int)).mean() < 4


def test_alignment_input_shows_the_lfw128_frame():
    card = smooth_pattern(seed=5)
    truth = align.window_from_params((320, 240), 2.0, 0.0)
    frame = scene_with(card, truth)
    got = align.alignment_input(frame, truth)
    assert got.shape == (50, 50, 3) and got.dtype == np.uint8
    # The 112 frame is canonical [0, 112) of the [-8, 120) span: input pixels ~3.1 .. 46.9.
    import cv2

    want = cv2.resize(card, (44, 44), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    err = np.abs(got[4:46, 4:46].astype(int) - want[1:43, 1:43].astype(int)).mean()
    assert err < 12, err
    assert got[0].max() == 0 and got[:, 0].max() == 0  # outside the card: black


def test_large_downscale_uses_area_filter_not_aliasing():
    # A 1-px checkerboard seen at 5 frame px per output px must come out flat grey, not moire.
    frame = np.zeros((800, 800, 3), np.uint8)
    frame[::2, ::2] = 255
    frame[1::2, 1::2] = 255
    w = align.window_from_params((400, 400), 5.0, 0.3)
    got = align.embedding_input(frame, w).astype(int)
    assert abs(got.mean() - 127.5) < 3 and got.std() < 6


def test_window_far_outside_the_frame_is_black():
    frame = np.full((100, 100, 3), 200, np.uint8)
    w = align.window_from_params((5000, 5000), 4.0, 0.0)
    assert align.embedding_input(frame, w).max() == 0
    assert align.alignment_input(frame, w).max() == 0


@pytest.mark.parametrize("frame", [
    np.zeros((0, 10, 3), np.uint8), np.zeros((10, 0, 3), np.uint8), np.zeros((10, 10), np.uint8),
    np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 4), np.uint8), None, [[1, 2, 3]],
])
def test_corrupt_frames_raise_align_error(frame):
    w = align.window_from_params((5, 5), 0.1)
    with pytest.raises(AlignError):
        align.embedding_input(frame, w)
    with pytest.raises(AlignError):
        align.alignment_input(frame, w)


@pytest.mark.parametrize("window", [
    np.zeros((2, 3)), np.eye(3), [[1, 0, 0], [0, 2, 0]], [[1, 0, float("nan")], [0, 1, 0]], "abc", None,
])
def test_bad_windows_raise_align_error(window):
    frame = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(AlignError):
        align.embedding_input(frame, window)


@pytest.mark.parametrize("corr", [(0, 0), (0, 0, 0, 0), (0, float("inf"), 0), "xyz"])
def test_bad_corrections_raise_align_error(corr):
    with pytest.raises(AlignError):
        align.apply_correction(align.window_from_params((0, 0), 1.0), corr)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.sampled_from([(2, 3), (3, 2), (6,), (2, 2)]),
                  elements=st.one_of(st.floats(-1e4, 1e4), st.sampled_from([math.nan, math.inf, 0.0]))))
def test_any_array_as_window_is_accepted_or_refused_cleanly(arr):
    frame = np.zeros((20, 20, 3), np.uint8)
    try:
        out = align.embedding_input(frame, arr)
    except FirmwareError:
        return
    assert out.shape == (112, 112, 3)


@settings(max_examples=60, deadline=None)
@given(st.tuples(st.floats(-1e5, 1e5, **finite), st.floats(-1e5, 1e5, **finite)), st.floats(1e-3, 1e3, **finite), angles,
       st.tuples(st.integers(1, 40), st.integers(1, 40)))
def test_any_similarity_window_renders_without_crashing(c, s, a, hw):
    frame = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    w = align.window_from_params(c, s, a)
    assert align.embedding_input(frame, w).shape == (112, 112, 3)
    assert align.alignment_input(frame, w).shape == (50, 50, 3)
