"""The detector's close-up search and grey-frame equalisation (issues 14 and 16): a face that fills the frame,
its box running past the edges, is found with ``pad_fraction`` on and missed with it off; padding only adds
boxes; the settings are board-configurable and validated.  No timing assertions (speed: bench/bench_detectors.py)."""
import cv2
import numpy as np
import pytest

from wearface.firmware import detect
from wearface.firmware.board import BoardFileError, boards_dir, load_board, parse_board
from wearface.firmware.bundle import read_bundle
from wearface.firmware.errors import DetectError
from wearface.firmware.facemodel import FaceModel, detector_settings
from wearface.firmware.scene import grace_hopper_path
from wearface.firmware.tracker import iou

from .conftest import make_board, signed_bundle


@pytest.fixture(scope="module")
def portrait():
    """Grace Hopper's portrait (BGR uint8, 600x512) and the default cascade's box on it (x, y, w, h)."""
    img = cv2.imread(str(grace_hopper_path()))
    b = detect.FaceDetector().detect(img)[0]
    return img, (b.x, b.y, b.w, b.h)


def close_up(portrait, fill: float, side: int = 240):
    """A ``side`` px square crop of the portrait whose face box is ``fill`` x the crop's side (> 1: the face
    overflows the picture), and the face box in the crop's pixels."""
    img, (x, y, w, h) = portrait
    crop_side = w / fill
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - crop_side / 2)), int(round(cy - crop_side / 2))
    crop = img[y0:y0 + int(round(crop_side)), x0:x0 + int(round(crop_side))]
    assert x0 >= 0 and y0 >= 0 and crop.shape[0] == crop.shape[1] == int(round(crop_side))
    k = side / crop.shape[0]
    frame = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    return frame, ((x - x0) * k, (y - y0) * k, w * k, h * k)


@pytest.mark.parametrize("fill", [1.1, 1.2])
def test_a_face_that_overflows_the_frame_is_found_only_with_padding(portrait, fill):
    frame, truth = close_up(portrait, fill)
    assert detect.FaceDetector().detect(frame) == []  # today's detector: the box cannot fit in the frame
    boxes = detect.FaceDetector(pad_fraction=0.25).detect(frame)
    assert len(boxes) == 1
    b = boxes[0]
    assert iou((b.x, b.y, b.w, b.h), truth) > 0.6
    assert b.x < 0 and b.y < 0 and b.x + b.w > frame.shape[1]  # the box runs past the frame's edges
    # per call, pad=False is the detector without padding
    assert detect.FaceDetector(pad_fraction=0.25).detect(frame, pad=False) == []


def test_padding_only_adds_boxes(portrait):
    img, _ = portrait
    frame = np.full((480, 640, 3), 90, np.uint8)
    for x, y, s in ((10, 30, 0.5), (330, 120, 0.35)):
        small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        frame[y:y + small.shape[0], x:x + small.shape[1]] = small
    for f in (img, frame, close_up(portrait, 0.9)[0]):
        off, on = detect.FaceDetector().detect(f), detect.FaceDetector(pad_fraction=0.25).detect(f)
        assert on == off  # faces that fit: the same boxes, in the same order


def test_padding_respects_the_size_limits(portrait):
    frame, _ = close_up(portrait, 1.15)
    det = detect.FaceDetector(pad_fraction=0.25)
    assert det.detect(frame, max_size_px=100) == []  # the face is ~275 px: larger than asked for
    assert len(det.detect(frame, min_size_px=200, max_size_px=400)) == 1


def test_noise_stays_empty_with_padding_and_equalisation():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (240, 320), dtype=np.uint8)
    for eq in ("none", "hist", "clahe"):
        assert detect.FaceDetector(pad_fraction=0.5, equalize=eq).detect(noise) == []


@pytest.mark.parametrize("eq", ["clahe", "hist", True, False, "none"])
def test_every_equalisation_finds_the_portrait(portrait, eq):
    img, truth = portrait
    boxes = detect.FaceDetector(equalize=eq).detect(img)
    assert boxes and iou((boxes[0].x, boxes[0].y, boxes[0].w, boxes[0].h), truth) > 0.5


@pytest.mark.parametrize("kw", [{"equalize": "CLAHE"}, {"equalize": 2}, {"pad_fraction": -0.1}, {"pad_fraction": 1.5}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(DetectError):
        detect.FaceDetector(**kw)


def test_box_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_board_settings_reach_the_detector_and_bad_ones_name_their_key(tmp_path):
    text = (boards_dir() / "virtual.toml").read_text()
    for name in ("virtual", "rpi-zero2w", "a55-dotprod"):  # the shipped boards' cascades pad, do not equalise
        cfg = load_board(boards_dir() / f"{name}.toml").detector
        assert (cfg.pad_fraction, cfg.equalize) == (0.25, "none")
    board = parse_board(text.replace("pad_fraction = 0.25", "pad_fraction = 0.4").replace(
        'equalize = "none"', 'equalize = "clahe"'), tmp_path / "b.toml")
    s = detector_settings(board.detector, (480, 640))
    assert (s.pad_fraction, s.equalize) == (0.4, "clahe")
    for old, new, key in (("pad_fraction = 0.25", "pad_fraction = 2.0", "detector.pad_fraction"),
                          ('equalize = "none"', 'equalize = "yes"', "detector.equalize")):
        with pytest.raises(BoardFileError) as err:
            parse_board(text.replace(old, new), tmp_path / "b.toml")
        assert err.value.key == key


def test_the_loop_finds_a_close_up_in_a_full_search_and_in_a_region_at_the_edge(tmp_path, portrait):
    frame, truth = close_up(portrait, 1.15)
    on = FaceModel(make_board(tmp_path, detector={"kind": "haar"}), read_bundle(signed_bundle(0)))
    off = FaceModel(make_board(tmp_path, detector={"kind": "haar", "pad_fraction": 0.0}), read_bundle(signed_bundle(0)))
    assert off.detect(frame) == [] and len(on.detect(frame)) == 1
    h, w = frame.shape[:2]
    assert len(on.detect_region(frame, (0, 0, w, h))) == 1  # a region reaching the frame's edge is padded
    assert on.detect_region(frame, (5, 5, w - 5, h - 5)) == []  # one inside the frame is not
