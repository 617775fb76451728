"""Every kernels path equals the plain-numpy integer reference bit for bit.

Hand-checkable cases first (the reference, and every tile path on the same one-layer net), then
hypothesis-drawn shapes, strides, paddings, zero points, multipliers (saturation included) and odd pooling
sizes, run through both runtime backends and every tile path this CPU has.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wearface.kernels import nets, reference, runtime, tiles
from wearface.kernels.qnet import QuantizedNet

from .qbuild import qaffine, qconv, tiny_conv_net


def _tile_paths_run(x, q):
    """Layer ``q`` alone on int8 input ``x`` through every tile path: the int8 outputs, which must agree."""
    spec = nets.NetSpec("one", x.shape, (q.spec,), "regression", 1, 1)
    qnet = QuantizedNet(spec, [q], input_zero_point=int(q.input_zero_point), output_zero_point=int(q.output_zero_point))
    image = (x.astype(np.int16) + nets.INPUT_ZERO_POINT).astype(np.uint8)
    outs = [runtime.Int8Runtime(qnet, "tiles", p).run_int8(image) for p in tiles.available_paths()]
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    return outs[0]


def test_conv_3x3_all_ones_hand_case():
    # 3x3 input 1..9 (zero point 0), one 3x3 all-ones filter, padding 1, multiplier 0.5 (2^30, shift 0):
    # centre sees 45 -> 22.5 -> 23 (tie rounds up); corner (1,2,4,5) = 12 -> 6.
    spec = nets.Conv("c", 1, 3, 1, 1, relu=False)
    rng = np.random.default_rng(0)
    q = qconv(rng, spec, 1, 0, 0, 0.5, bias_max=0, weights=np.ones((1, 3, 3, 1), np.int8))
    q.multiplier[:] = 1 << 30
    q.shift[:] = 0
    x = np.arange(1, 10, dtype=np.int8).reshape(3, 3, 1)
    want = np.array([[6, 11, 8], [14, 23, 17], [12, 20, 14]], np.int8).reshape(3, 3, 1)
    np.testing.assert_array_equal(reference.conv(x, q), want)
    np.testing.assert_array_equal(_tile_paths_run(x, q), want)


def test_conv_padding_uses_input_zero_point():
    # Input all equal to its zero point: every tap (padded or not) contributes 0, output = bias only.
    spec = nets.Conv("c", 2, 3, 2, 1, relu=False)
    rng = np.random.default_rng(1)
    q = qconv(rng, spec, 4, -7, 5, 0.5, bias_max=0)
    q.bias[:] = [4, -4]
    q.multiplier[:] = 1 << 30
    q.shift[:] = 0
    x = np.full((5, 5, 4), -7, np.int8)
    want = np.empty((3, 3, 2), np.int8)
    want[..., 0], want[..., 1] = 5 + 2, 5 - 2
    np.testing.assert_array_equal(reference.conv(x, q), want)
    np.testing.assert_array_equal(_tile_paths_run(x, q), want)


def test_relu_is_the_clamp_at_the_zero_point_and_saturation_at_127():
    spec = nets.Affine("fc", 3, relu=True)
    rng = np.random.default_rng(2)
    q = qaffine(rng, spec, 2, 0, -10, 1.0, bias_max=0)
    q.weights[:] = [[1, 0], [-1, 0], [127, 127]]
    q.multiplier[:] = 1 << 30
    q.shift[:] = 1  # real multiplier 1.0
    x = np.array([20, 100], np.int8)
    want = np.array([10, -10, 127], np.int8)  # 20-10; max(-20-10, -10); 15240 saturates
    np.testing.assert_array_equal(reference.affine(x, q), want)


@pytest.mark.parametrize("n,ceil,want", [(7, True, 4), (7, False, 3), (8, True, 4), (8, False, 4), (1, True, 1)])
def test_max_pool_odd_sizes(n, ceil, want):
    spec = nets.MaxPool("p", 2, 2, ceil)
    x = np.arange(n * n * 2, dtype=np.int64).reshape(n, n, 2).astype(np.int8)
    ref = reference.max_pool(x, spec)
    assert ref.shape == (want, want, 2)
    if ceil and n == 7:
        # the last window covers only row/column 6: it is the element itself
        np.testing.assert_array_equal(ref[3, 3], x[6, 6])


def _check_all_backends(qnet, image):
    """The reference backend and every tile path this CPU has (``tiles.available_paths()``) equal the reference."""
    want = reference.forward_trace(qnet, image)
    runtimes = [("reference", runtime.Int8Runtime(qnet, "reference"))]
    runtimes += [(f"tiles:{p}", runtime.Int8Runtime(qnet, "tiles", p)) for p in tiles.available_paths()]
    for backend, rt in runtimes:
        got = rt.trace(image)
        assert [n for n, _ in got] == [layer.spec.name for layer in qnet.layers]
        for (name, g), w in zip(got, want):
            np.testing.assert_array_equal(g, w, err_msg=f"{backend} {name}")
        np.testing.assert_array_equal(rt.run_int8(image), want[-1], err_msg=f"{backend} fused")


def test_long_k_and_a_4096_input_affine():
    # 3x3x128 = 1152 taps (model A's nin4.conv) and a 4096-input affine (model C's fc2 size)
    rng = np.random.default_rng(3)
    qnet = tiny_conv_net(rng, 5, 5, 128, 8, 3, 1, 1, True, -128, -128, 1e-4, affine=4,
                         pool=nets.MaxPool("pool", 2, 2, ceil=True))
    image = rng.integers(0, 256, size=(5, 5, 128), dtype=np.uint8)
    _check_all_backends(qnet, image)
    spec = nets.NetSpec("fc", (4, 4, 256), (nets.Flatten("f"), nets.Affine("fc", 5, relu=False)), "regression", 1, 1)
    from wearface.kernels.qnet import QFlatten, QuantizedNet

    q = QuantizedNet(spec, [QFlatten(spec.layers[0]), qaffine(rng, spec.layers[1], 4096, 0, 0, 1e-5)])
    _check_all_backends(q, rng.integers(0, 256, size=(4, 4, 256), dtype=np.uint8))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 13), w=st.integers(1, 13), cin=st.integers(1, 9), cout=st.integers(1, 9),
    kernel=st.sampled_from([1, 2, 3, 5]), stride=st.integers(1, 3), padding=st.integers(0, 4),
    relu=st.booleans(), zp_mid=st.integers(-128, 127), zp_out=st.integers(-128, 127),
    log_mult=st.floats(-6.0, 0.0), pool=st.sampled_from([None, False, True]),
    cccp=st.sampled_from([None, 3]), affine=st.sampled_from([None, 2]), seed=st.integers(0, 2**32 - 1),
)
def test_backends_equal_reference_on_drawn_shapes(h, w, cin, cout, kernel, stride, padding, relu, zp_mid, zp_out,
                                                  log_mult, pool, cccp, affine, seed):
    assume(kernel <= h + 2 * padding and kernel <= w + 2 * padding)
    oh = (h + 2 * padding - kernel) // stride + 1
    ow = (w + 2 * padding - kernel) // stride + 1
    pool_spec = None
    if pool is not None:
        assume(pool or (oh >= 2 and ow >= 2))
        pool_spec = nets.MaxPool("pool", 2, 2, ceil=pool)
    rng = np.random.default_rng(seed)
    if relu:
        zp_out = min(zp_out, 100)
    qnet = tiny_conv_net(rng, h, w, cin, cout, kernel, stride, padding, relu, zp_mid, zp_out, 10.0**log_mult,
                         pool=pool_spec, cccp=cccp, affine=affine)
    image = rng.integers(0, 256, size=(h, w, cin), dtype=np.uint8)
    _check_all_backends(qnet, image)


@pytest.mark.parametrize("name", ["align", "A"])
def test_whole_nets_equal_reference(random_qnets, name):
    qnet = random_qnets[name]
    from wearface.kernels import ptq

    image = ptq.random_images(qnet.spec.input_shape, 1, 7)[0]
    _check_all_backends(qnet, image)
