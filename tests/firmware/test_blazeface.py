"""The BlazeFace detector (``firmware/blazeface.py``, issue 16): anchors and decoding as MediaPipe's graphs define
them, weighted suppression, boxes in the cascade's convention on a real face, clear errors.  Behaviour only."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearface.firmware import blazeface as bf
from wearface.firmware import scene
from wearface.firmware.board import parse_board
from wearface.firmware.detect import FaceDetector
from wearface.firmware.errors import BoardFileError, DetectError
from wearface.firmware.facemodel import make_detector
from wearface.firmware.tracker import iou

from .conftest import make_board


@pytest.fixture(scope="module")
def detector():
    return bf.BlazeFaceDetector("full_range", "short_range")


def test_anchors_are_the_graphs_grids():
    full, short = bf.anchors(bf.NETS["full_range"]), bf.anchors(bf.NETS["short_range"])
    assert full.shape == (2304, 2) and short.shape == (896, 2)  # the nets' output rows
    assert np.allclose(full[0], [0.5 / 48, 0.5 / 48]) and np.allclose(full[1], [1.5 / 48, 0.5 / 48])
    # short range: a 16x16 grid with two anchors a cell, then an 8x8 grid with six (three layers of stride 16)
    assert np.allclose(short[0], short[1]) and np.allclose(short[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(short[512:518], [0.5 / 8, 0.5 / 8]) and np.allclose(short[-1], [7.5 / 8, 7.5 / 8])


def test_decode_places_a_box_on_its_anchor():
    net = bf.NETS["full_range"]
    anchor_xy = bf.anchors(net)
    raw = np.zeros((len(anchor_xy), 16), np.float32)
    logits = np.full(len(anchor_xy), -20.0, np.float32)
    k = 48 * 10 + 20  # row 10, column 20 of the 48x48 grid: centre (20.5, 10.5) / 48 of the input
    raw[k, :4] = [4.0, -2.0, 40.0, 30.0]  # input px: centre offset, width, height
    logits[k] = 3.0
    boxes, scores = bf.decode(raw, logits, net, anchor_xy)
    assert boxes.shape == (1, 4) and scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    cx, cy = 20.5 / 48 + 4 / 192, 10.5 / 48 - 2 / 192
    assert np.allclose(boxes[0], [cx - 20 / 192, cy - 15 / 192, cx + 20 / 192, cy + 15 / 192], atol=1e-6)
    # below the net's threshold nothing is kept; absurd logits are clipped, not overflowed
    logits[k] = 0.0
    assert len(bf.decode(raw, logits, net, anchor_xy)[0]) == 0
    logits[k] = 1e30
    assert bf.decode(raw, logits, net, anchor_xy)[1][0] == pytest.approx(1.0)


def test_weighted_nms_merges_overlaps_into_their_weighted_mean():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.0, 1.1, 1.0], [5.0, 5.0, 6.0, 6.0]], np.float32)
    scores = np.array([0.6, 0.9, 0.7], np.float32)
    out, s = bf.weighted_nms(boxes, scores)
    assert list(s) == pytest.approx([0.9, 0.7])  # best first, each group keeps its best score
    assert np.allclose(out[0], (boxes[0] * 0.6 + boxes[1] * 0.9) / 1.5)
    assert np.allclose(out[1], boxes[2])
    assert bf.weighted_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))[0].shape == (0, 4)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.01, 0.5), st.floats(0.01, 1.0)),
                max_size=12))
def test_weighted_nms_keeps_each_groups_best_score_in_order_and_adds_no_box(rows):
    boxes = np.array([[x, y, x + w, y + w] for x, y, w, _ in rows], np.float32).reshape(-1, 4)
    scores = np.array([s for *_, s in rows], np.float32)
    out, s = bf.weighted_nms(boxes, scores)
    assert len(out) <= len(boxes) and list(s) == sorted(s, reverse=True)
    assert all(np.isin(s, scores))
    if len(boxes):
        assert len(out) >= 1


def _frame(side=160, at=(320, 240)):
    actors = [scene.Actor(scene.grace_hopper_face(), start=0, stop=None, from_xy=(at[0] / 640, at[1] / 480),
                          to_xy=(at[0] / 640, at[1] / 480), size_px=(side, side))]
    return scene.render(actors, 0, 1)[0]


@pytest.mark.parametrize("side,at", [(160, (320, 240)), (120, (150, 120)), (300, (400, 260))])
def test_a_real_face_gets_the_box_the_cascade_draws(detector, side, at):
    frame = _frame(side, at)
    (haar,) = FaceDetector().detect(frame)[:1]
    boxes = detector.detect(frame)
    assert len(boxes) == 1, boxes
    b = boxes[0]
    assert 0.6 <= b.score <= 1.0 and b.w == pytest.approx(b.h)
    assert iou((b.x, b.y, b.w, b.h), (haar.x, haar.y, haar.w, haar.h)) >= 0.6, (b, haar)


def test_a_region_around_the_face_finds_it_in_frame_px(detector):
    frame = _frame(120, (300, 200))
    (whole,) = detector.detect(frame)
    x0, y0 = int(whole.x - whole.w), int(whole.y - whole.w)
    region = frame[y0:int(whole.x + 2 * whole.w), x0:int(whole.x + 2 * whole.w)]
    (near,) = detector.detect(region, region=True)
    assert iou((near.x + x0, near.y + y0, near.w, near.h), (whole.x, whole.y, whole.w, whole.h)) >= 0.6
    # sizes outside the asked range are dropped
    assert detector.detect(region, min_size_px=2 * whole.w, region=True) == []


def test_no_face_no_box(detector):
    rng = np.random.default_rng(0)
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    assert detector.detect(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []


def test_grey_bgra_and_odd_shapes_are_read_and_bad_frames_named(detector):
    frame = _frame()
    grey = frame.mean(axis=2).astype(np.uint8)
    assert len(detector.detect(grey)) == 1 and len(detector.detect(grey[:, :, None])) == 1
    bgra = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
    assert len(detector.detect(bgra)) == 1
    assert detector.detect(np.zeros((1, 3000, 3), np.uint8)) == []  # a 1-px strip: letterboxed, nothing found
    with pytest.raises(DetectError, match="uint8"):
        detector.detect(frame.astype(np.float32))
    with pytest.raises(DetectError, match="empty|non-empty"):
        detector.detect(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(DetectError, match="numpy array"):
        detector.detect([[1, 2]])
    with pytest.raises(DetectError, match="shape"):
        detector.detect(np.zeros((10, 10, 2), np.uint8))


def test_bad_settings_are_named():
    with pytest.raises(DetectError, match="unknown BlazeFace net 'tiny'"):
        bf.BlazeFaceDetector("tiny")
    with pytest.raises(DetectError, match="min_score"):
        bf.BlazeFaceDetector(min_score=1.5)


def test_the_board_file_chooses_the_detector(tmp_path):
    board = make_board(tmp_path, detector={"kind": "blazeface"})
    assert isinstance(make_detector(board.detector), bf.BlazeFaceDetector)
    assert isinstance(make_detector(make_board(tmp_path, detector={"kind": "haar"}).detector), FaceDetector)
    fields = "kind|net|region_net|fallback_net|min_score|tiles|propose_score|confirm_score"
    text = re.sub(rf"(?m)^({fields}) = .*\n", "", (tmp_path / "virtual.toml").read_text())
    for line, field in [('kind = "hog"', "detector.kind"), ('net = "tiny"', "detector.net"),
                        ('region_net = "tiny"', "detector.region_net"), ('fallback_net = "x"', "detector.fallback_net"),
                        ('net = "full_range+"', "detector.net"), ("min_score = 1.0", "detector.min_score"),
                        ("tiles = 5", "detector.tiles"), ("tiles = 0", "detector.tiles"),
                        ("propose_score = 1.0", "detector.propose_score"), ("propose_score = -0.1", "detector.propose_score"),
                        ("confirm_score = 0.0", "detector.confirm_score"), ("confirm_score = 1.0", "detector.confirm_score")]:
        bad = text.replace("[detector]\n", f"[detector]\n{line}\n")
        with pytest.raises(BoardFileError, match=field.replace(".", r"\.")):
            parse_board(bad, tmp_path / "bad.toml")


def test_the_fallback_net_finds_a_face_that_fills_the_frame():
    face = scene.grace_hopper_face()  # the face box is 1/1.6 of the crop: past the edges once enlarged 1.5x
    side = face.shape[0]
    frame = np.ascontiguousarray(cv2.resize(face, None, fx=1.5, fy=1.5)[side // 4:side // 4 + side, side // 4:side // 4 + side])
    assert bf.BlazeFaceDetector("full_range", "").detect(frame) == []
    (box,) = bf.BlazeFaceDetector("full_range", "", fallback_net="short_range").detect(frame)
    assert box.w > 0.7 * side  # the one face, as large as the frame
    # a frame where the full-range net finds a face does not pay for the fallback
    both = bf.BlazeFaceDetector("full_range", "", fallback_net="short_range")
    calls = []
    both._run = lambda bgr, loaded, run=both._run, **kw: calls.append(loaded[0].input_px) or run(bgr, loaded, **kw)
    assert len(both.detect(_frame())) == 1 and calls == [192]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.integers(1, bf.MAX_TILES))
def test_tiles_are_squares_or_strips_that_cover_the_frame_end_to_end(width, height, tiles):
    boxes = bf.tile_boxes(width, height, tiles)
    assert len(boxes) in (1, tiles)
    covered = np.zeros(max(width, height), bool)
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        along, across = (x1 - x0, y1 - y0) if width >= height else (y1 - y0, x1 - x0)
        assert len(boxes) == 1 or (across == min(width, height) and along == max(across, -(-max(width, height) // tiles)))
        covered[(x0 if width >= height else y0):(x1 if width >= height else y1)] = True
    assert covered.all()


def test_tiles_find_a_small_face_in_a_wide_frame_where_they_overlap_and_merge_it(detector):
    """A 16:9 frame's two squares each show the face 1.8x larger than the letterboxed frame; a face in the overlap
    is found by both and reported once."""
    face = scene.grace_hopper_face()
    for at in ((150, 180), (320, 180)):  # inside the first tile only; in both tiles' overlap
        actors = [scene.Actor(face, start=0, stop=None, from_xy=(at[0] / 640, at[1] / 360), to_xy=(at[0] / 640, at[1] / 360),
                              size_px=(60, 60))]
        frame = scene.render(actors, 0, 1, width=640, height=360)[0]
        tiled = bf.BlazeFaceDetector("full_range", "short_range", tiles=2)
        calls = []
        tiled._run = lambda bgr, loaded, run=tiled._run, **kw: calls.append(bgr.shape[:2]) or run(bgr, loaded, **kw)
        boxes = tiled.detect(frame)
        assert detector.detect(frame) == []  # the letterboxed frame shows this face too small
        assert calls == [(360, 360), (360, 360)]
        assert len(boxes) == 1, boxes
        assert abs(boxes[0].x + boxes[0].w / 2 - at[0]) < 0.25 * boxes[0].w
    with pytest.raises(DetectError, match="tiles"):
        bf.BlazeFaceDetector(tiles=0)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.0, np.nan, np.inf, -np.inf, 1e30]))
def test_decoding_any_raw_output_gives_finite_boxes_best_first(seed, odd):
    net = bf.NETS["short_range"]
    anchor_xy = bf.anchors(net)
    rng = np.random.default_rng(seed)
    raw = rng.normal(0, 60, (len(anchor_xy), 16)).astype(np.float32)
    logits = rng.normal(0, 4, len(anchor_xy)).astype(np.float32)
    spots = rng.integers(0, len(anchor_xy), 20)
    raw[spots[:10], rng.integers(0, 4, 10)] = odd  # broken boxes, some on anchors that score high
    logits[spots[10:]] = odd
    boxes, scores = bf.weighted_nms(*bf.decode(raw, logits, net, anchor_xy))
    assert np.isfinite(boxes).all() and np.isfinite(scores).all()
    assert ((scores >= net.min_score) & (scores <= 1)).all() and list(scores) == sorted(scores, reverse=True)


def test_a_missing_or_broken_net_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(bf, "DETECTORS_DIR", str(tmp_path))
    with pytest.raises(DetectError, match="face_detection_full_range.tflite is missing"):
        bf.BlazeFaceDetector()
    (tmp_path / "face_detection_full_range.tflite").write_bytes(b"TFL3 not a model" * 10)
    with pytest.raises(DetectError, match="could not be loaded"):
        bf.load_net("full_range")


def _small_faces_frame(xs, size_px=55):
    """A 640x360 frame with the test portrait at each x (frame px), at a size the full-range net scores 0.3-0.6
    letterboxed (measured: 0.48 alone at x 150)."""
    face = scene.grace_hopper_face()
    actors = [scene.Actor(face, start=0, stop=None, from_xy=(x / 640, 0.5), to_xy=(x / 640, 0.5), size_px=(size_px, size_px))
              for x in xs]
    return scene.render(actors, 0, 1, width=640, height=360)[0]


def _counting(det):
    calls = []
    det._run = lambda bgr, loaded, run=det._run, **kw: calls.append(loaded[0].input_px) or run(bgr, loaded, **kw)
    return calls


def test_a_proposal_is_kept_only_when_the_region_net_confirms_it(detector):
    """A face the full-range net scores under its 0.6 is a proposal (``propose_score``): the short-range net looks at
    the region around it once, and it is a face when that net scores it at least ``confirm_score``."""
    frame = _small_faces_frame([150])
    assert detector.detect(frame) == []  # letterboxed, this face scores under 0.6
    proposing = bf.BlazeFaceDetector("full_range", "short_range", propose_score=0.3)
    calls = _counting(proposing)
    boxes = proposing.detect(frame)
    assert calls == [192, 128]  # the frame net, then the region net on the proposal's region
    assert len(boxes) == 1 and 0.3 <= boxes[0].score < 0.6, boxes  # its own score: behind every sure box
    assert abs(boxes[0].x + boxes[0].w / 2 - 150) < 0.25 * boxes[0].w
    doubting = bf.BlazeFaceDetector("full_range", "short_range", propose_score=0.3, confirm_score=0.99)
    assert doubting.detect(frame) == []
    # a proposal where the loop already tracks a face is that face: kept without a second look
    calls = _counting(doubting)
    tracked = [(b.x + 3, b.y - 2, b.w, b.h) for b in boxes]
    again = doubting.detect(frame, known=tracked)
    assert calls == [192] and len(again) == 1 and 0.3 <= again[0].score < 0.6, again
    assert doubting.detect(frame, known=[(400, 100, 40, 40)]) == []  # a known face elsewhere does not count
    assert bf.BlazeFaceDetector("full_range", "short_range", propose_score=0.6).detect(frame) == []  # at the threshold: off
    with pytest.raises(DetectError, match="propose_score"):
        bf.BlazeFaceDetector(propose_score=1.0)
    with pytest.raises(DetectError, match="confirm_score"):
        bf.BlazeFaceDetector(confirm_score=0.0)


def test_a_confirmed_proposal_ranks_behind_every_sure_face():
    """A confirmed proposal keeps the frame net's score, whatever the region net scored it: callers that take one
    face take ``boxes[0]``, a face the frame net was sure of."""
    proposing = bf.BlazeFaceDetector("full_range", "short_range", propose_score=0.3)
    proposing.second_look = lambda bgr, box, min_score: 0.99  # the region net is very sure of the proposal
    sure_b, sure_s = np.array([[400, 100, 480, 180]], np.float32), np.array([0.7], np.float32)
    proposals = np.array([[100, 100, 140, 140, 0.45]], np.float32)
    boxes, scores = proposing._confirm(np.zeros((360, 640, 3), np.uint8), sure_b, sure_s, proposals)
    assert boxes[0].tolist() == sure_b[0].tolist() and scores.tolist() == pytest.approx([0.7, 0.45])


def test_at_most_max_confirms_proposals_are_looked_at_per_pass():
    frame = _small_faces_frame([70, 190, 320, 450, 570], size_px=60)  # five faces scoring 0.14-0.35 (measured)
    proposing = bf.BlazeFaceDetector("full_range", "short_range", propose_score=0.1)
    calls = _counting(proposing)
    boxes = proposing.detect(frame)
    assert calls == [192] + [128] * bf.MAX_CONFIRMS, calls
    assert len(boxes) <= bf.MAX_CONFIRMS

