"""FaceModel: one cascade for frames of every size (issue 15: one per size, kept forever); mirror averaging."""
from __future__ import annotations

import cv2
import numpy as np

from wearface.firmware import detect as detect_module
from wearface.firmware.bundle import read_bundle
from wearface.firmware.facemodel import FaceModel, frame_downscale
from wearface.firmware.scene import grace_hopper_path

from .conftest import make_board, signed_bundle


def test_one_cascade_serves_every_frame_size_with_boxes_in_frame_pixels(tmp_path, monkeypatch):
    board = make_board(tmp_path, detector={"kind": "haar"})
    loaded = []
    original = detect_module.FaceDetector.__init__

    def counting_init(self, *args, **kwargs):
        loaded.append(self)
        original(self, *args, **kwargs)
    monkeypatch.setattr(detect_module.FaceDetector, "__init__", counting_init)
    model = FaceModel(board, read_bundle(signed_bundle(0)))
    rng = np.random.default_rng(0)
    for _ in range(12):  # 12 sizes, some above max_side_px (640)
        h, w = (int(v) for v in rng.integers(1, 900, 2))
        model.detect(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    assert len(loaded) == 1

    face = cv2.imread(str(grace_hopper_path()))  # 600x512: detected at full size
    big = cv2.resize(face, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)  # shrunk to max_side_px first
    assert frame_downscale(board.detector, big.shape) > 1.0
    (small_box, *_), (big_box, *_) = model.detect(face), model.detect(big)
    assert abs(big_box.x / 3 - small_box.x) < 0.1 * small_box.w and abs(big_box.w / 3 - small_box.w) < 0.2 * small_box.w
    assert len(loaded) == 1


def test_a_mirror_average_bundle_embeds_a_face_and_its_mirror_image_alike(tmp_path):
    board = make_board(tmp_path)
    plain = FaceModel(board, read_bundle(signed_bundle(0)))
    mirrored = read_bundle(signed_bundle(0, mirror_average=True))
    both = FaceModel(board, mirrored)
    assert mirrored.mirror_average and not plain.bundle.mirror_average
    # the same nets, another embedding space: a gallery re-embeds what the other bundle stored
    assert mirrored.embedding_space != plain.bundle.embedding_space
    crop = np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    flipped = np.ascontiguousarray(crop[:, ::-1])
    expected = plain.embed(crop) + plain.embed(flipped)
    np.testing.assert_allclose(both.embed(crop), expected / np.linalg.norm(expected), atol=1e-6)
    assert abs(np.linalg.norm(both.embed(crop)) - 1) < 1e-6
    np.testing.assert_array_equal(both.embed(crop), both.embed(flipped))  # a face and its mirror image: one point
    assert not np.allclose(plain.embed(crop), plain.embed(flipped), atol=1e-3)  # the net alone is not symmetric
