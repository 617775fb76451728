"""torch_nets: every net builds from nets.py with the right shapes; the float export matches torch's eval output."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from wearface.host_tools.train.torch_nets import build_torch_net, export_float_weights, numpy_forward, to_input
from wearface.kernels import nets


def _randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


@pytest.mark.parametrize("name", ["align", "A", "B", "C"])
def test_every_net_builds_with_the_specs_output_shape_and_parameter_count(name):
    spec = nets.get_net(name)
    model = build_torch_net(spec, batchnorm=False).eval()
    h, w, c = spec.input_shape
    out = model(torch.zeros(2, c, h, w))
    assert tuple(out.shape) == (2,) + nets.output_shape(spec)
    assert sum(p.numel() for p in model.parameters()) == nets.totals(spec)[1]


def test_embedding_output_is_unit_length():
    model = build_torch_net("A").eval()
    out = model(torch.randn(3, 3, 112, 112))
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("name", ["align", "A"])
def test_exported_weights_in_numpy_match_torch_eval_output(name):
    torch.manual_seed(0)
    spec = nets.get_net(name)
    model = build_torch_net(spec)
    _randomise_batchnorm(model)
    model.eval()
    pixels = np.random.default_rng(1).integers(0, 256, size=(2,) + spec.input_shape, dtype=np.uint8)
    expected = model(to_input(pixels)).detach().numpy()
    weights = export_float_weights(model)
    assert set(weights) == {layer.name for layer in spec.layers if isinstance(layer, (nets.Conv, nets.Affine))}
    got = numpy_forward(spec, weights, (pixels.astype(np.float64) - 128) / 128)
    np.testing.assert_allclose(got, expected, atol=2e-5 * max(1.0, np.abs(expected).max()))


def test_export_layout_conv_ohwi_and_affine_columns_in_nhwc_flatten_order():
    spec = nets.MODEL_A
    model = build_torch_net(spec, batchnorm=False)
    weights = export_float_weights(model)
    conv = model.layers["nin1_conv"].conv.weight.detach().numpy()  # (O, I, KH, KW)
    w, b = weights["nin1.conv"]
    assert w.shape == (32, 5, 5, 3) and w.dtype == np.float32 and b.shape == (32,)
    np.testing.assert_array_equal(w, conv.transpose(0, 2, 3, 1))
    # the first affine sees the 4x4x64 map; a one-hot at NHWC position (h, w, c) picks column (h*4 + w)*64 + c
    fc1, _ = weights["fc1"]
    assert fc1.shape == (256, 1024)
    lin = model.layers["fc1"].linear
    x = torch.zeros(1, 64, 4, 4)
    x[0, 5, 2, 3] = 1.0  # NCHW index c=5, h=2, w=3
    flat = model.layers["flatten"](x)
    np.testing.assert_allclose(lin(flat).detach().numpy()[0] - lin.bias.detach().numpy(), fc1[:, (2 * 4 + 3) * 64 + 5], atol=1e-6)


@pytest.mark.parametrize("name", ["align", "A"])
def test_kernels_float_reference_on_exported_weights_matches_torch(name):
    float_ref = pytest.importorskip("wearface.kernels.float_ref")
    torch.manual_seed(1)
    spec = nets.get_net(name)
    model = build_torch_net(spec)
    _randomise_batchnorm(model, seed=1)
    model.eval()
    image = np.random.default_rng(2).integers(0, 256, size=spec.input_shape, dtype=np.uint8)
    expected = model(to_input(image[None])).detach().numpy()[0]
    got = float_ref.forward(spec, export_float_weights(model), image)
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))
