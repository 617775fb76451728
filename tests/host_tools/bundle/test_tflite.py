"""TFLite export: LiteRT runs our .tflite files and agrees with the int8 runtime.

* TFLite's reference kernels: bit for bit (same double rounding as ``kernels/quant.py``).
* LiteRT's optimized builtin kernels: equal, except at exact negative ties, which they round
  toward +inf where the reference rounds away from zero (+1 LSB, only there).
* The default interpreter (XNNPACK delegate): within 1 LSB per layer; it requantizes in float32.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from wearface.host_tools.bundle import bundle_build
from wearface.host_tools.bundle import tflite_export as T
from wearface.kernels import nets, ptq, reference
from wearface.kernels.runtime import Int8Runtime

pytest.importorskip("flatbuffers", reason="the litert extra (flatbuffers) is not installed")
pytest.importorskip("tflite", reason="the litert extra (tflite schema package) is not installed")
if not any(importlib.util.find_spec(m) for m in ("ai_edge_litert", "tflite_runtime")):
    pytest.skip("neither ai_edge_litert nor tflite_runtime is installed (extra 'litert')", allow_module_level=True)


def ours_and_theirs(qnet, images, resolver):
    data, report = T.export_tflite(qnet)
    interp = T.load_interpreter(data, resolver)
    runtime = Int8Runtime(qnet)
    pairs = [(runtime.run_int8(im).reshape(-1).astype(np.int32), T.run_interpreter(interp, im).astype(np.int32))
             for im in images]
    return pairs, report


@pytest.fixture(scope="module", params=["align", "A"])
def net_and_images(request):
    spec = nets.get_net(request.param)
    return bundle_build.random_qnet(spec, 5), ptq.random_images(spec.input_shape, 3, 11)


def test_reference_kernels_agree_bit_for_bit(net_and_images):
    qnet, images = net_and_images
    pairs, _ = ours_and_theirs(qnet, images, "reference")
    for ours, theirs in pairs:
        np.testing.assert_array_equal(ours, theirs)


def test_builtin_kernels_agree_within_one_lsb(net_and_images):
    qnet, images = net_and_images
    pairs, _ = ours_and_theirs(qnet, images, "builtin")
    for ours, theirs in pairs:
        assert np.max(np.abs(ours - theirs)) <= 1


def test_snapped_multipliers_export_exactly(net_and_images):
    qnet, _ = net_and_images
    snapped = T.snap_multipliers_to_float32(bundle_build.random_qnet(qnet.spec, 5))
    _, report = T.export_tflite(snapped)
    assert report.channels > 0 and report.inexact_channels == 0 and not report.notes


ONE_CONV = nets.NetSpec("one_conv", (24, 24, 3), (nets.Conv("c", 16, 5, stride=2, padding=2, relu=False),),
                        "regression", 0, 0)


def test_builtin_differs_only_at_negative_ties_and_xnnpack_within_one_lsb_per_layer():
    qnet = bundle_build.random_qnet(ONE_CONV, 0)
    images = ptq.random_images(ONE_CONV.input_shape, 6, 3)
    q = qnet.layers[0]
    pairs, _ = ours_and_theirs(qnet, images, "builtin")
    for im, (ours, theirs) in zip(images, pairs):
        acc = reference.conv_acc(reference.input_int8(im), q).astype(np.float64).reshape(-1, 16)
        real = acc * q.multiplier * np.exp2(q.shift.astype(np.float64) - 31)
        diff = (theirs - ours).reshape(-1, 16)
        frac = real - np.floor(real)
        assert set(np.unique(diff)) <= {0, 1}
        assert np.all(real[diff != 0] < 0) and np.all(np.abs(frac[diff != 0] - 0.5) < 2e-3)
    pairs, _ = ours_and_theirs(qnet, images, "default")
    assert max(int(np.max(np.abs(o - t))) for o, t in pairs) <= 1


def test_affine_and_ceil_pool_and_explicit_pad_shapes_export():
    spec = nets.NetSpec("mix", (9, 9, 3), (nets.Conv("c", 8, 5, padding=4), nets.MaxPool("p", 2, 2, ceil=True),
                                           nets.Flatten("f"), nets.Affine("a", 10, relu=False)), "regression", 0, 0)
    qnet = bundle_build.random_qnet(spec, 1)
    pairs, _ = ours_and_theirs(qnet, ptq.random_images(spec.input_shape, 3, 1), "reference")
    for ours, theirs in pairs:
        np.testing.assert_array_equal(ours, theirs)
