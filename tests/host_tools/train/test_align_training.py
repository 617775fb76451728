"""Self-supervised alignment training: targets undo the perturbation, the loss is the landmark
distance, a few steps on a fixed batch reduce it, checkpoints round-trip."""
import math

import cv2
import numpy as np
import pytest
import torch

from wearface.firmware import align as geom
from wearface.host_tools.train import train_align as T


def cartoon_face(window, size=224, seed=0):
    """A grey-background cartoon whose 5 landmarks are the template mapped through ``window``."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), rng.integers(60, 200), np.uint8)
    lm = geom.map_points(window, geom.LANDMARK_TEMPLATE)
    s = geom.window_params(window)[2]
    centre = tuple(int(v) for v in geom.map_points(window, [[56, 62]])[0])
    cv2.ellipse(img, centre, (int(42 * s), int(55 * s)), math.degrees(geom.window_params(window)[3]), 0, 360,
                (150, 170, 210), -1)
    for x, y in lm[:2]:
        cv2.circle(img, (int(x), int(y)), max(int(5 * s), 1), (30, 30, 30), -1)
    cv2.circle(img, tuple(int(v) for v in lm[2]), max(int(3 * s), 1), (90, 110, 160), -1)
    cv2.line(img, tuple(int(v) for v in lm[3]), tuple(int(v) for v in lm[4]), (40, 40, 140), max(int(3 * s), 1))
    return T.FaceImage(img, lm)


def test_example_target_moves_the_start_window_onto_the_ideal_one():
    face = cartoon_face(geom.window_from_params((112, 112), 1.2, 0.1))
    rng = np.random.default_rng(0)
    p = T.Perturbation()
    for _ in range(20):
        state = rng.bit_generator.state
        x, y = T.make_example(face, rng, p, augment=False)
        rng2 = np.random.default_rng()
        rng2.bit_generator.state = state
        ideal = geom.fit_window(face.landmarks)
        start = T.random_start(ideal, rng2, p)
        fixed = geom.apply_correction(start, y)
        assert x.shape == (50, 50, 3) and x.dtype == np.uint8
        cx, cy, _, a = geom.window_params(fixed)
        icx, icy, _, ia = geom.window_params(ideal)
        assert (cx, cy, a) == pytest.approx((icx, icy, ia), abs=1e-4)


def test_flip_keeps_landmarks_on_their_features():
    face = cartoon_face(geom.window_from_params((100, 120), 1.1, 0.2))
    flipped = T.flip_face(face)
    for f in (face, flipped):
        for x, y in f.landmarks[:2]:  # the eyes are dark discs
            assert f.image[int(round(y)), int(round(x))].max() < 60
    assert flipped.landmarks[0, 0] < flipped.landmarks[1, 0]  # "reye" stays the image's left eye
    back = T.flip_face(flipped)
    np.testing.assert_array_equal(back.image, face.image)
    np.testing.assert_allclose(back.landmarks, face.landmarks)


def test_template_points_agree_with_the_firmware_transform():
    corr = torch.tensor([[0.05, -0.02, 0.3], [0.0, 0.0, 0.0], [-0.1, 0.07, -0.4]], dtype=torch.float64)
    got = T.template_points(corr).numpy() + geom.FRAME_CENTRE
    for c, g in zip(corr.numpy(), got):
        t = geom.correction_transform(c)
        np.testing.assert_allclose(g, geom.LANDMARK_TEMPLATE @ t[:, :2].T + t[:, 2], atol=1e-9)


def test_landmark_loss_is_zero_at_the_target_and_grows_with_error():
    y = torch.tensor([[0.05, -0.02, 0.3]], dtype=torch.float64)
    assert float(T.landmark_loss(y, y)) == 0.0
    # 0.1 frame widths of shift moves every landmark 11.2 px: Huber(beta 1) = 11.2 - 0.5.
    off = y + torch.tensor([[0.1, 0.0, 0.0]], dtype=torch.float64)
    assert float(T.landmark_loss(off, y)) == pytest.approx(11.2 - 0.5)
    p = off.clone().requires_grad_(True)
    T.landmark_loss(p, y).backward()
    assert p.grad[0, 0] > 0


def test_a_few_training_steps_reduce_the_loss():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # several threads on a busy 2-core machine are much slower
    torch.manual_seed(0)
    faces = [cartoon_face(geom.window_from_params((112 + i, 110), 1.0 + 0.05 * i, 0.05 * i), seed=i) for i in range(4)]
    rng = np.random.default_rng(0)
    x, y = T.make_batch(faces, [i % 4 for i in range(16)], rng, T.Perturbation())
    model = T.build_model(T.AlignTrainConfig())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = T.to_input(x), torch.as_tensor(y)
    losses = []
    for _ in range(15):
        loss = T.landmark_loss(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    torch.set_num_threads(threads)
    assert losses[-1] < 0.5 * losses[0], losses


def test_checkpoint_round_trip(tmp_path):
    cfg = T.AlignTrainConfig()
    model = T.build_model(cfg).eval()
    path = tmp_path / "align.pt"
    T._save(T.checkpoint_dict(cfg, model), path)
    loaded, ckpt = T.load_align_model(path)
    x = np.random.default_rng(0).integers(0, 256, (2, 50, 50, 3), dtype=np.uint8)
    np.testing.assert_allclose(T.predict(loaded, x), T.predict(model, x))
    assert ckpt["config"]["net"] == "align"


def test_bad_checkpoints_are_refused(tmp_path):
    from wearface.host_tools.errors import DataError

    with pytest.raises(DataError):
        T.load_align_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError):
        T.load_align_model(junk)


def test_held_out_split_is_by_identity_and_stable():
    ids = [str(i) for i in range(2000)]
    held = [i for i in ids if T.is_held_out(i, 5)]
    assert held == [i for i in ids if T.is_held_out(i, 5)]
    assert 60 < len(held) < 140


@pytest.mark.needs_data
def test_loads_shared_crops_with_landmarks(shared_data):
    train, val = T.load_images(shared_data, ("wild", "more"), 50, max_per_source=20, verbose=False)
    assert len(train) + len(val) == 40
    face = (train + val)[0]
    assert face.image.dtype == np.uint8 and face.landmarks.shape == (5, 2)
    x, y = T.make_example(face, np.random.default_rng(0), T.Perturbation())
    assert x.shape == (50, 50, 3) and np.all(np.abs(y[:2]) < 0.3)


@pytest.mark.parametrize("narrow_fraction", [0.0, 1.0])
def test_start_windows_stay_within_the_broad_ranges(narrow_fraction):
    p = T.Perturbation(narrow_fraction=narrow_fraction)
    ideal = geom.window_from_params((100, 100), 1.0, 0.0)
    rng = np.random.default_rng(0)
    corr = np.array([geom.correction_between(T.random_start(ideal, rng, p), ideal) for _ in range(300)])
    scales = np.array([geom.window_params(T.random_start(ideal, rng, p))[2] for _ in range(300)])
    assert np.all(np.abs(np.degrees(corr[:, 2])) <= p.angle_deg + 1e-9)
    assert np.all(np.abs(np.log(scales)) <= p.log_scale + 1e-9)
    # the correction's shift is the start's offset seen from the start window: within shift * scale * sqrt(2)
    assert np.all(np.abs(corr[:, :2]) <= p.shift * math.exp(p.log_scale) * 1.5)
    spread = np.abs(np.degrees(corr[:, 2])).mean()
    assert spread < 8 if narrow_fraction else spread > 9
