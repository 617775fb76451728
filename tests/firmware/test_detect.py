"""Face detection: finds the portrait matplotlib ships in synthesized frames, nothing in noise,
and refuses unusable frames with DetectError."""
import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from wearface.firmware import align, detect
from wearface.firmware.errors import DetectError, FirmwareError


@pytest.fixture(scope="module")
def hopper():
    """Grace Hopper's portrait (BGR uint8, 600x512) and the face's centre, roughly (x, y)."""
    import matplotlib.cbook as cbook

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        img = cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_COLOR)
    return img, (265.0, 215.0)


@pytest.fixture(scope="module")
def detector():
    return detect.FaceDetector()


def paste(frame, img, x, y, scale):
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    frame[y:y + h, x:x + w] = small
    return frame


def contains(box, xy):
    return box.x <= xy[0] <= box.x + box.w and box.y <= xy[1] <= box.y + box.h


def test_finds_the_portrait(detector, hopper):
    img, centre = hopper
    boxes = detector.detect(img)
    assert len(boxes) == 1 and contains(boxes[0], centre)
    assert 150 < boxes[0].w < 320 and boxes[0].score > 0


def test_finds_two_faces_in_a_synthesized_frame(detector, hopper):
    img, (cx, cy) = hopper
    frame = np.full((480, 640, 3), 90, np.uint8)
    paste(frame, img, 10, 30, 0.5)
    paste(frame, img, 330, 120, 0.35)
    boxes = detector.detect(frame)
    assert len(boxes) == 2
    assert any(contains(b, (10 + 0.5 * cx, 30 + 0.5 * cy)) for b in boxes)
    assert any(contains(b, (330 + 0.35 * cx, 120 + 0.35 * cy)) for b in boxes)


def test_grey_and_bgra_frames_give_the_same_boxes(detector, hopper):
    img, _ = hopper
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    assert detector.detect(grey) == detector.detect(img) == detector.detect(bgra) == detector.detect(grey[:, :, None])


def test_downscale_finds_the_same_face_in_full_frame_pixels(hopper):
    img, centre = hopper
    full = detect.FaceDetector().detect(img)[0]
    half = detect.FaceDetector(downscale=2.0).detect(img)[0]
    assert contains(half, centre)
    assert abs(half.w / full.w - 1) < 0.15
    assert abs(half.centre[0] - full.centre[0]) < 0.1 * full.w


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finds_nothing_in_noise(detector, seed):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(noise, (0, 0), 3)
    assert detector.detect(noise) == []
    assert detector.detect(blurred) == []


def test_finds_nothing_in_flat_or_tiny_frames(detector):
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert detector.detect(np.zeros((8, 8, 3), np.uint8)) == []  # smaller than min_size_px


def test_face_window_centre_and_scale():
    box = detect.FaceBox(100.0, 50.0, 80.0, 80.0, 3.0)
    w = detect.face_window(box, dx=0.1, dy=-0.2, width=1.4)
    cx, cy, s, a = align.window_params(w)
    assert (cx, cy) == pytest.approx((100 + 40 - 0.5 + 8, 50 + 40 - 0.5 - 16))
    assert s == pytest.approx(1.4 * 80 / 112) and a == 0
    assert np.allclose(detect.face_window((100, 50, 80, 80), 0.1, -0.2, 1.4), w)


def test_face_window_puts_the_portrait_in_the_canonical_frame(detector, hopper):
    img, _ = hopper
    crop = align.embedding_input(img, detect.face_window(detector.detect(img)[0]))
    # The face fills the 112 frame: eyes in the upper half, so the frame's centre is face, not background.
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    assert crop.shape == (112, 112, 3) and grey[40:80, 40:80].std() > 10


@pytest.mark.parametrize("frame", [
    np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 2), np.uint8),
    np.zeros((2, 10, 10, 3), np.uint8), np.zeros((10,), np.uint8), None, "frame", [[0, 1], [2, 3]],
])
def test_unusable_frames_raise_detect_error(detector, frame):
    with pytest.raises(DetectError):
        detector.detect(frame)


@pytest.mark.parametrize("bad", [
    dict(scale_factor=1.0), dict(scale_factor=math.nan), dict(min_neighbors=-1), dict(min_size_px=0),
    dict(downscale=0.5), dict(cascade="no_such_cascade.xml"),
])
def test_bad_settings_raise_detect_error(bad):
    with pytest.raises(DetectError):
        detect.FaceDetector(**bad)


def test_non_cascade_file_raises_detect_error(tmp_path):
    p = tmp_path / "junk.xml"
    p.write_text("<not-a-cascade/>")
    with pytest.raises(DetectError):
        detect.FaceDetector(cascade=str(p))


@pytest.mark.parametrize("box", [(0, 0, 0, 10), (0, 0, -5, 5), (0, 0, math.inf, 4), "box", (1, 2, 3)])
def test_bad_boxes_raise_detect_error(box):
    with pytest.raises(DetectError):
        detect.face_window(box)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(st.sampled_from([np.uint8, np.int16, np.float32]),
                  st.one_of(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=48))))
def test_any_array_is_detected_or_refused_cleanly(arr):
    try:
        boxes = detect.FaceDetector().detect(arr)
    except FirmwareError:
        return
    assert isinstance(boxes, list)


@pytest.mark.needs_data
def test_lfw_faces_land_near_the_landmark_template(shared_data):
    """On a few LFW128 images pasted into grey frames, the box window puts the 5 pseudo-landmarks
    within a few canonical pixels of the template (the measured constants are sane)."""
    from wearface.host_tools.train.align_data import ImageZip, read_index

    items = [it for it in read_index(shared_data, "lfw")[:400:40] if it.landmarks is not None]
    zf = ImageZip(shared_data, "lfw")
    det = detect.FaceDetector()
    errors = []
    for it in items:
        frame = np.full((320, 320, 3), 120, np.uint8)
        frame[90:218, 100:228] = zf.read(it.path)
        boxes = det.detect(frame)
        assert boxes, it.path
        pts = align.unmap_points(detect.face_window(boxes[0]), it.landmarks + [100, 90])
        errors.append(np.linalg.norm(pts - align.LANDMARK_TEMPLATE, axis=1).mean())
    assert np.median(errors) < 4, errors  # 2.7 px measured with the committed constants


def test_cascades_are_found_without_cv2_data(monkeypatch, tmp_path):
    """A distribution OpenCV has no cv2.data: the cascade is looked up in the system folders."""
    import shutil

    shutil.copy(detect._cascade_path(detect.DetectorSettings().cascade), tmp_path / "haarcascade_frontalface_default.xml")
    monkeypatch.delattr(cv2, "data", raising=False)
    monkeypatch.setattr(detect, "SYSTEM_CASCADE_DIRS", (str(tmp_path / "missing"), str(tmp_path)))
    assert detect.cascade_dirs() == [str(tmp_path / "missing"), str(tmp_path)]
    assert detect.FaceDetector().detect(np.zeros((64, 64, 3), np.uint8)) == []
