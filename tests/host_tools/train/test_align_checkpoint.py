"""The committed alignment checkpoint undoes a known roll of a real face (matplotlib's portrait),
through the board's detector and geometry."""
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from wearface.firmware import align, detect

CHECKPOINT = Path(__file__).resolve().parents[3] / "models" / "checkpoints" / "align.pt"


@pytest.fixture(scope="module")
def model():
    torch = pytest.importorskip("torch")
    from wearface.host_tools.train.train_align import load_align_model

    if not CHECKPOINT.is_file():
        pytest.skip(f"no committed checkpoint at {CHECKPOINT}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_align_model(CHECKPOINT)[0]
    torch.set_num_threads(threads)


def roll_estimate(model, img, roll_deg):
    """(first correction's angle, the window's angle after two corrections), degrees, for the
    portrait rolled by ``roll_deg`` (clockwise on screen)."""
    from wearface.host_tools.train.train_align import predict

    # cv2's angle is counter-clockwise on screen; ours is clockwise, hence the minus sign.
    rot = cv2.getRotationMatrix2D((265.0, 215.0), -roll_deg, 1.0)
    frame = cv2.warpAffine(img, rot, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    boxes = detect.FaceDetector().detect(frame)
    assert boxes, f"no face at roll {roll_deg}"
    window = detect.face_window(boxes[0])
    first = predict(model, align.alignment_input(frame, window)[None])[0]
    assert np.all(np.abs(first[:2]) < 0.1)
    window = align.apply_correction(window, first)
    window = align.apply_correction(window, predict(model, align.alignment_input(frame, window)[None])[0])
    return math.degrees(first[2]), math.degrees(align.window_params(window)[3])


def test_checkpoint_measures_a_known_roll(model):
    import matplotlib.cbook as cbook

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        img = cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_COLOR)
    # The portrait's own head tilt is a few degrees: compare rolled estimates with the upright one.
    first0, upright = roll_estimate(model, img, 0.0)
    assert abs(upright) < 8
    for roll in (-10.0, 10.0, 20.0):
        first, two_pass = roll_estimate(model, img, roll)
        assert (first - first0) * roll > 0.4 * roll * roll, (roll, first, first0)  # right sign, most of it
        assert two_pass - upright == pytest.approx(roll, abs=6.0), (roll, two_pass, upright)
