"""The seed's networks as data: shapes and totals against the seed's tables."""
import pytest

from wearface.kernels import nets
from wearface.kernels.errors import NetSpecError


@pytest.mark.parametrize("name", ["align", "A", "B", "C"])
def test_totals_within_10_percent_of_seed(name):
    net = nets.get_net(name)
    macs, params = nets.totals(net)
    seed_params = net.seed_params_rows or net.seed_params
    assert abs(macs / net.seed_macs - 1) <= 0.10, (macs, net.seed_macs)
    assert abs(params / seed_params - 1) <= 0.10, (params, seed_params)


def test_model_a_first_affine_sees_4x4x64():
    rows = {r.layer.name: r for r in nets.iter_counts(nets.MODEL_A)}
    assert rows["pool6"].out_shape == (4, 4, 64)
    assert rows["fc1"].params == 1024 * 256 + 256


@pytest.mark.parametrize("name,c", [("B", 128), ("C", 256)])
def test_models_b_c_pool_7_to_3(name, c):
    rows = {r.layer.name: r for r in nets.iter_counts(nets.get_net(name))}
    assert rows["pool6"].in_shape == (7, 7, c)
    assert rows["pool6"].out_shape == (3, 3, c)


def test_align_net_outputs_three_numbers():
    assert nets.output_shape(nets.ALIGN_NET) == (3,)
    assert nets.output_shape(nets.MODEL_A) == (nets.EMBEDDING_SIZE,)


@pytest.mark.parametrize("n,ceil,expected",
                         [(7, True, 4), (7, False, 3), (8, False, 4), (8, True, 4), (29, False, 14), (1, True, 1)])
def test_pool_rounding(n, ceil, expected):
    assert nets.pool_out(n, 2, 2, ceil) == expected


def test_unknown_net_names_the_choices():
    with pytest.raises(NetSpecError, match="expected one of"):
        nets.get_net("D")


def test_too_small_input_is_named():
    with pytest.raises(NetSpecError, match="conv4"):
        list(nets.iter_counts(nets.ALIGN_NET, (2, 2, 3)))
