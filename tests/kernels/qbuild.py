"""Test helpers: hand-built int8 layers and tiny nets with chosen zero points and multipliers."""
import numpy as np

from wearface.kernels import nets, quant
from wearface.kernels.qnet import QAffine, QConv, QFlatten, QMaxPool, QuantizedNet


def qconv(rng, spec: nets.Conv, in_channels: int, izp: int, ozp: int, mult_real: float,
          bias_max: int = 2000, weights=None) -> QConv:
    """A QConv with random int8 weights (or the given ones) and one real multiplier for all channels."""
    o, k = spec.out_channels, spec.kernel
    w = weights if weights is not None else rng.integers(-127, 128, size=(o, k, k, in_channels)).astype(np.int8)
    m, s = quant.quantize_multipliers(np.full(o, mult_real) * rng.uniform(0.5, 1.5, size=o))
    lo = ozp if spec.relu else -128
    return QConv(spec, w, rng.integers(-bias_max, bias_max + 1, size=o).astype(np.int32), m, s,
                 izp, ozp, 0.05, lo, 127, np.ones(o, np.float32))


def qaffine(rng, spec: nets.Affine, in_features: int, izp: int, ozp: int, mult_real: float,
            bias_max: int = 2000) -> QAffine:
    o = spec.out_features
    w = rng.integers(-127, 128, size=(o, in_features)).astype(np.int8)
    m, s = quant.quantize_multipliers(np.full(o, mult_real) * rng.uniform(0.5, 1.5, size=o))
    lo = ozp if spec.relu else -128
    return QAffine(spec, w, rng.integers(-bias_max, bias_max + 1, size=o).astype(np.int32), m, s,
                   izp, ozp, 0.05, lo, 127, np.ones(o, np.float32))


def tiny_conv_net(rng, h, w, cin, cout, kernel, stride, padding, relu, zp_mid, zp_out, mult_real,
                  pool=None, cccp=None, affine=None):
    """input (h, w, cin) -> 1x1 conv (sets a nonzero zero point zp_mid) -> conv under test [-> pool]
    [-> 1x1 conv cccp] [-> flatten -> affine].  Returns a QuantizedNet."""
    c0 = nets.Conv("pre", cin, 1, relu=False)
    c1 = nets.Conv("conv", cout, kernel, stride, padding, relu)
    layers = [c0, c1]
    q = [qconv(rng, c0, cin, 0, zp_mid, 1.0 / (100 * np.sqrt(cin))), qconv(rng, c1, cin, zp_mid, zp_out, mult_real)]
    zp = zp_out
    if pool is not None:
        layers.append(pool)
        q.append(QMaxPool(pool))
    if cccp is not None:
        c2 = nets.Conv("cccp", cccp, 1)
        layers.append(c2)
        q.append(qconv(rng, c2, cout, zp, -128, 1.0 / (100 * np.sqrt(cout))))
        zp = -128
    spec_layers = tuple(layers)
    if affine is not None:
        layers += [nets.Flatten("flatten"), nets.Affine("fc", affine, relu=False)]
        shape = nets.output_shape(nets.NetSpec("t", (h, w, cin), spec_layers, "regression", 1, 1))
        n_in = int(np.prod(shape))
        q += [QFlatten(layers[-2]), qaffine(rng, layers[-1], n_in, zp, 3, 1.0 / (100 * np.sqrt(n_in)))]
        zp = 3
    spec = nets.NetSpec("tiny", (h, w, cin), tuple(layers), "regression", 1, 1)
    return QuantizedNet(spec, q, output_scale=0.05, output_zero_point=zp)
