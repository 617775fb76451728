"""The int8 runtime: outputs, trace, and bad input rejected with the layer and what was expected."""
import copy

import numpy as np
import pytest

from wearface.kernels import nets, ptq, runtime
from wearface.kernels.errors import KernelError, QuantizationError, ShapeError


def test_embedding_is_l2_normalised_and_regression_is_not(random_qnets):
    a, align = random_qnets["A"], random_qnets["align"]
    emb = runtime.run_int8_dequantized(a, ptq.random_images(nets.EMBEDDING_INPUT, 1, 3)[0])
    assert emb.dtype == np.float32 and emb.shape == (128,)
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    rt = runtime.Int8Runtime(align)
    image = ptq.random_images(nets.ALIGN_INPUT, 1, 3)[0]
    out = rt.run(image)
    q = rt.run_int8(image)
    np.testing.assert_allclose(out, (q.astype(np.float32) - align.output_zero_point) * align.output_scale)


def test_trace_lists_every_layer_with_its_shape(random_qnets):
    qnet = random_qnets["A"]
    trace = runtime.Int8Runtime(qnet).trace(ptq.random_images(nets.EMBEDDING_INPUT, 1, 4)[0])
    rows = list(nets.iter_counts(qnet.spec))
    assert [name for name, _ in trace] == [r.layer.name for r in rows]
    assert all(t.dtype == np.int8 and t.shape == r.out_shape for (_, t), r in zip(trace, rows))


@pytest.mark.parametrize(
    "image,match",
    [
        (np.zeros((50, 50, 3), np.float32), r"net align input image: expected dtype uint8, found float32"),
        (np.zeros((50, 50, 4), np.uint8), r"net align input image: expected 3 channels \(shape \(50, 50, 3\)\), found 4"),
        (np.zeros((112, 112, 3), np.uint8), r"net align input image: expected shape \(50, 50, 3\), found \(112, 112, 3\)"),
        ([[0]], r"expected a numpy array"),
    ],
)
def test_bad_image_raises_shape_error(random_qnets, image, match):
    rt = runtime.Int8Runtime(random_qnets["align"], "reference")
    with pytest.raises(ShapeError, match=match):
        rt.run(image)


def _broken(qnet, index, **changes):
    q = copy.deepcopy(qnet)
    layer = q.layers[index]
    for key, value in changes.items():
        setattr(layer, key, value)
    return q


def test_bad_parameters_name_the_layer(random_qnets):
    align = random_qnets["align"]
    c2 = align.layers[2]
    shift = c2.shift.copy()
    shift[0] = -40
    with pytest.raises(QuantizationError, match=r"conv2: shift\[0\] = -40, expected in \[-31, 30\]"):
        runtime.Int8Runtime(_broken(align, 2, shift=shift))
    with pytest.raises(ShapeError, match=r"conv2.weights \(O, KH, KW, I\): expected 4 channels .* found 3"):
        runtime.Int8Runtime(_broken(align, 2, weights=c2.weights[..., :3].copy()))
    with pytest.raises(ShapeError, match=r"conv2.bias: expected dtype int32, found int64"):
        runtime.Int8Runtime(_broken(align, 2, bias=c2.bias.astype(np.int64)))
    with pytest.raises(QuantizationError, match=r"conv2: input_zero_point 5 != previous layer's output zero point"):
        runtime.Int8Runtime(_broken(align, 2, input_zero_point=5))
    with pytest.raises(QuantizationError, match=r"conv2: output_zero_point = 300, expected in \[-128, 127\]"):
        runtime.Int8Runtime(_broken(align, 2, output_zero_point=300))
    wrong_order = copy.deepcopy(align)
    wrong_order.layers[1], wrong_order.layers[2] = wrong_order.layers[2], wrong_order.layers[1]
    with pytest.raises(ShapeError, match=r"pool1: expected QMaxPool"):
        runtime.Int8Runtime(wrong_order)
    with pytest.raises(KernelError, match="unknown backend"):
        runtime.Int8Runtime(align, "gpu")
