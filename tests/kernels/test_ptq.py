"""Post-training quantization: random float nets calibrated on random inputs stay close to float."""
import numpy as np
import pytest

from wearface.kernels import float_ref, nets, ptq, quant, runtime, validate
from wearface.kernels.errors import QuantizationError, ShapeError


def _cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


@pytest.mark.parametrize("name,method", [("A", "percentile"), ("align", "percentile"), ("align", "mse"), ("align", "minmax")])
def test_quantized_matches_float_per_layer_and_final(name, method):
    spec = nets.get_net(name)
    weights = ptq.random_float_weights(spec, seed=5)
    qnet = ptq.quantize_net(spec, weights, ptq.random_images(spec.input_shape, 6, seed=1), method=method)
    rt = runtime.Int8Runtime(qnet)
    for image in ptq.random_images(spec.input_shape, 2, seed=2):
        floats = float_ref.forward_trace(spec, weights, image)
        scale, zero_point = qnet.input_scale, qnet.input_zero_point
        for q, (layer_name, got), want in zip(qnet.layers, rt.trace(image), floats):
            if hasattr(q, "output_scale"):
                scale, zero_point = q.output_scale, q.output_zero_point
            dequantized = (got.astype(np.float64) - zero_point) * scale
            assert _cosine(dequantized, want) >= 0.99, layer_name
        assert _cosine(rt.run(image), float_ref.forward(spec, weights, image)) >= 0.99


def test_quantize_weights_is_symmetric_per_channel():
    w = np.array([[0.5, -1.0], [0.01, 0.02], [0.0, 0.0]], np.float32)
    q, scale = ptq.quantize_weights(w)
    np.testing.assert_array_equal(q, [[64, -127], [64, 127], [0, 0]])  # 63.5 rounds half to even -> 64
    np.testing.assert_allclose(scale, [1.0 / 127, 0.02 / 127, 1.0])


def test_activation_params_relu_range_gives_zero_point_minus_128():
    scale, zp = ptq.activation_params(0.0, 2.55)
    assert zp == -128 and scale == pytest.approx(0.01)
    scale, zp = ptq.activation_params(-1.0, 1.0)
    assert zp == 0 and scale == pytest.approx(2 / 255)


def test_quantized_net_is_valid_and_consistent():
    qnet = ptq.random_quantized_net(nets.ALIGN_NET, seed=3)
    validate.check_qnet(qnet)
    first = qnet.layers[0]
    want_m, want_s = quant.quantize_multipliers(qnet.input_scale * first.weight_scale.astype(np.float64) / first.output_scale)
    np.testing.assert_array_equal(first.multiplier, want_m)
    np.testing.assert_array_equal(first.shift, want_s)
    assert all(q.act_min == q.output_zero_point for q in qnet.layers if getattr(q.spec, "relu", False))


def test_missing_or_misshapen_float_weights_name_the_layer():
    spec = nets.ALIGN_NET
    weights = ptq.random_float_weights(spec, seed=0)
    images = ptq.random_images(spec.input_shape, 1, seed=0)
    w, b = weights["conv2"]
    bad = dict(weights, conv2=(w[:, :, :, :3], b))
    with pytest.raises(ShapeError, match=r"conv2: float W expected shape \(12, 5, 5, 4\), found \(12, 5, 5, 3\)"):
        ptq.quantize_net(spec, bad, images)
    del bad["conv2"]
    with pytest.raises(ShapeError, match="conv2: float weights missing"):
        ptq.quantize_net(spec, bad, images)
    with pytest.raises(ShapeError, match=r"calibration image 0 expected uint8 \(50, 50, 3\)"):
        ptq.quantize_net(spec, weights, [images[0].astype(np.float32)])
    with pytest.raises(QuantizationError, match="unknown calibration method"):
        ptq.quantize_net(spec, weights, images, method="kl")
