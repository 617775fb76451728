"""Camera damage on whole batches: shapes, determinism per generator seed, each damage does what it says."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from wearface.host_tools.train.batch_augment import GEOMETRY_ONLY, HARD, BatchAugment, Damage, hard_copy
from wearface.host_tools.train.torch_nets import to_input


def _faces(n=16, seed=0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = rng.integers(60, 200, size=(n, 112, 112, 3), dtype=np.uint8)
    return torch.from_numpy(x)


def _only(name: str, **extra) -> Damage:
    """A damage that does nothing but ``name`` (always) on a still frame."""
    off = {f.name: 0.0 for f in dataclasses.fields(Damage) if f.name.endswith("_p")}
    return Damage(**{**off, name: 1.0, "flip": 0.0, "shift_px": 0.0, "rotate_deg": 0.0, "scale": 0.0, **extra})


def test_output_is_the_nets_input_frame_and_depends_only_on_the_seed():
    x = _faces()
    a = BatchAugment(HARD)(x, torch.Generator().manual_seed(5))
    b = BatchAugment(HARD)(x, torch.Generator().manual_seed(5))
    c = BatchAugment(HARD)(x, torch.Generator().manual_seed(6))
    assert a.shape == (16, 3, 112, 112) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1.0 and a.max() <= 127 / 128


def test_no_damage_is_plain_to_input_and_the_input_is_not_modified():
    x = _faces()
    before = x.clone()
    assert torch.equal(BatchAugment(None)(x, torch.Generator()), to_input(x))
    BatchAugment(HARD)(x, torch.Generator().manual_seed(1))
    assert torch.equal(x, before)


def test_a_still_frame_with_no_damage_keeps_the_pixels():
    x = _faces()
    y = BatchAugment(_only("grey_p", grey_p=0.0))(x, torch.Generator())
    assert torch.allclose(y, to_input(x), atol=1.5 / 128)


def test_grey_makes_the_three_channels_equal():
    y = BatchAugment(_only("grey_p"))(_faces(), torch.Generator().manual_seed(0))
    assert torch.allclose(y[:, 0], y[:, 1]) and torch.allclose(y[:, 1], y[:, 2])


def test_side_light_darkens_one_side_more_than_the_other():
    x = torch.full((32, 112, 112, 3), 150, dtype=torch.uint8)
    y = BatchAugment(_only("side_light_p"))(x, torch.Generator().manual_seed(0))
    per_image = y.flatten(1)
    assert (per_image.max(1).values - per_image.min(1).values).min() > 0.2  # a ramp, not a uniform gain


def test_low_light_darkens_and_occlusions_cover_their_region():
    x = torch.full((8, 112, 112, 3), 200, dtype=torch.uint8)
    dim = BatchAugment(_only("low_light_p"))(x, torch.Generator().manual_seed(0))
    assert (dim.mean(dim=(1, 2, 3)) < to_input(x).mean()).all()
    masked = BatchAugment(_only("mask_p"))(x, torch.Generator().manual_seed(0))
    assert (masked[:, :, 100:, 56] != to_input(x)[:, :, 100:, 56]).any(dim=1).all()  # chin covered
    assert torch.allclose(masked[:, :, :40], to_input(x)[:, :, :40], atol=1e-4)  # forehead untouched


def test_geometry_only_keeps_the_colours_and_hard_copy_is_uint8_and_fixed():
    x = _faces(8)
    y = BatchAugment(GEOMETRY_ONLY)(x, torch.Generator().manual_seed(0))
    assert abs(float(y.mean() - to_input(x).mean())) < 0.05
    a, b = hard_copy(x.numpy(), seed=3), hard_copy(x.numpy(), seed=3)
    assert a.dtype == np.uint8 and a.shape == x.shape and np.array_equal(a, b)
    assert not np.array_equal(a, x.numpy())
