"""Shared fixtures for the kernels tests: random int8 nets are built once per session."""
import pytest

from wearface.kernels import nets, ptq


@pytest.fixture(scope="session")
def random_qnets():
    return {name: ptq.random_quantized_net(nets.get_net(name), seed=11) for name in ("align", "A")}
