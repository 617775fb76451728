"""The seed's networks as data: one layer list per net, the single source of truth.

Both the PyTorch nets (``wearface.host_tools.train.torch_nets``) and the int8 runtime
(``wearface.kernels.runtime``) are built from these lists; nothing else defines a net.
Must not import torch or OpenCV.

Shapes are NHWC (a single image is H, W, C).  "MACs" are multiply-accumulates; the seed's
tables call them FLOPs.  See ``docs/nets.md`` for our table beside the seed's.

Reading of the seed (Wexler et al., NIPS 2016) that fits its per-row FLOP and parameter counts:

* A NIN block is a KxK convolution (+ReLU) followed by a 1x1 convolution of the same width
  (+ReLU, "cccp").  Where the table's next input is half the size, a 2x2 max-pool sits
  *between* the KxK and the 1x1 convolution: with that placement every row's MACs match the
  seed's row within ~10% (model C: 93.9M vs 95M, 137.3M vs 139M), with the pool after the 1x1
  they overshoot (C's total would be +11.7%).
* Model A's last convolution has 64 channels and its 7x7 map pools to 4x4 (ceil), so the first
  affine sees 4x4x64 = 1024 inputs (263k params); B and C pool 7x7 to 3x3 (floor) and see
  3x3x128 and 3x3x256.
* Alignment net: the table's "24x24x12" row only fits its 3M FLOPs as a 5x5 "full" convolution
  (padding 4) of the 25x25 map, giving 29x29, pooled (floor) to 14x14, then a 3x3 valid
  convolution gives the table's 12x12 row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence, Union

from .errors import NetSpecError

#: Pixel values (uint8, 0..255) become floats as (pixel - INPUT_ZERO_POINT) * INPUT_SCALE, so
#: the int8 input of every net is exactly ``pixel - 128`` with scale 1/128 and zero point 0.
INPUT_ZERO_POINT = 128
INPUT_SCALE = 1.0 / 128.0

EMBEDDING_SIZE = 128
EMBEDDING_INPUT = (112, 112, 3)
ALIGN_INPUT = (50, 50, 3)


@dataclass(frozen=True)
class Conv:
    """2-D convolution, NHWC in and out, weights OHWI.  ``padding`` is zeros on every side."""

    name: str
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    relu: bool = True


@dataclass(frozen=True)
class MaxPool:
    """Max-pool over ``size`` x ``size`` windows at ``stride``.

    ``ceil=False``: out = floor((n - size) / stride) + 1 (trailing rows dropped).
    ``ceil=True``: out = ceil((n - size) / stride) + 1; a last window that hangs over the edge
    takes the max of the elements it covers (never of padding).
    """

    name: str
    size: int = 2
    stride: int = 2
    ceil: bool = False


@dataclass(frozen=True)
class Flatten:
    """NHWC (H, W, C) -> (H*W*C,) in row-major order: index = (h*W + w)*C + c."""

    name: str


@dataclass(frozen=True)
class Affine:
    """Fully connected layer, weights (out_features, in_features)."""

    name: str
    out_features: int
    relu: bool = True


Layer = Union[Conv, MaxPool, Flatten, Affine]


@dataclass(frozen=True)
class NetSpec:
    """A net: its input shape (H, W, C), its layers in order, and what its output means.

    ``output`` is ``"embedding"`` (128 numbers, L2-normalised in float after the last layer)
    or ``"regression"`` (the alignment net's 3 numbers, dequantized, not normalised).
    ``seed_macs`` / ``seed_params`` are the totals printed in the seed's table.
    """

    name: str
    input_shape: tuple
    layers: tuple
    output: str
    seed_macs: float
    seed_params: float
    seed_lfw: float | None = None
    #: The sum of the table's own rows where it differs from the printed total (the alignment
    #: table prints 69K params, its rows add up to 63.9K); comparisons use this when set.
    seed_params_rows: float | None = None


def nin(name: str, out_channels: int, kernel: int, stride: int = 1, pool: MaxPool | None = None) -> list:
    """A NIN block: KxK conv (+ReLU), optional max-pool, 1x1 conv of the same width (+ReLU)."""
    layers: list = [Conv(f"{name}.conv", out_channels, kernel, stride, padding=kernel // 2)]
    if pool is not None:
        layers.append(pool)
    layers.append(Conv(f"{name}.cccp", out_channels, 1))
    return layers


def _pool(name: str, ceil: bool = False) -> MaxPool:
    return MaxPool(name, 2, 2, ceil)


ALIGN_NET = NetSpec(
    name="align",
    input_shape=ALIGN_INPUT,
    layers=(
        Conv("conv1", 4, 5, padding=2),
        _pool("pool1"),
        Conv("conv2", 12, 5, padding=2),
        Conv("conv3", 12, 5, padding=4),
        _pool("pool3"),
        Conv("conv4", 12, 3, padding=0),
        _pool("pool4"),
        Conv("conv5", 4, 3, padding=1),
        Flatten("flatten"),
        Affine("fc1", 256),
        Affine("fc2", 64),
        Affine("fc3", 3, relu=False),
    ),
    output="regression",
    seed_macs=4.8e6,
    seed_params=69e3,
    seed_params_rows=63.9e3,
)


def _embedding_net(name, widths, last_conv, pool_ceil, fc, seed_macs, seed_params, seed_lfw):
    w1, w2, w3, w4, w5 = widths
    layers = (
        nin("nin1", w1, 5, stride=2, pool=_pool("nin1.pool"))
        + nin("nin2", w2, 3, pool=_pool("nin2.pool"))
        + nin("nin3", w3, 3, pool=_pool("nin3.pool"))
        + nin("nin4", w4, 3)
        + nin("nin5", w5, 3)
        + [
            Conv("conv6", last_conv, 3, padding=1),
            _pool("pool6", ceil=pool_ceil),
            Flatten("flatten"),
            Affine("fc1", fc),
            Affine("fc2", fc),
            Affine("embedding", EMBEDDING_SIZE, relu=False),
        ]
    )
    return NetSpec(name, EMBEDDING_INPUT, tuple(layers), "embedding", seed_macs, seed_params, seed_lfw)


MODEL_A = _embedding_net("A", (32, 64, 128, 64, 64), 64, True, 256, 49.3e6, 633e3, 0.969)
MODEL_B = _embedding_net("B", (32, 96, 128, 128, 128), 128, False, 256, 82.3e6, 1.0e6, 0.978)
MODEL_C = _embedding_net("C", (64, 192, 384, 256, 256), 256, False, 4096, 391.5e6, 30e6, 0.988)

NETS = {net.name: net for net in (ALIGN_NET, MODEL_A, MODEL_B, MODEL_C)}


def get_net(name: str) -> NetSpec:
    """Look a net up by name (``align``, ``A``, ``B``, ``C``); raises NetSpecError naming the choices."""
    try:
        return NETS[name]
    except KeyError:
        raise NetSpecError(f"unknown net {name!r}; expected one of {sorted(NETS)}") from None


@dataclass(frozen=True)
class LayerCount:
    """One row of a net's table: shapes are (H, W, C) or (N,)."""

    layer: Layer
    in_shape: tuple
    out_shape: tuple
    params: int
    macs: int


def _conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def pool_out(n: int, size: int, stride: int, ceil: bool) -> int:
    """Output length of a max-pool along one axis (see ``MaxPool``)."""
    span = n - size
    if span < 0:
        return 1 if ceil and n > 0 else 0
    return (-(-span // stride) if ceil else span // stride) + 1


def layer_output_shape(layer: Layer, in_shape: tuple) -> tuple:
    """Shape after ``layer`` for an input of ``in_shape``; raises NetSpecError if it is invalid."""
    if isinstance(layer, Conv):
        if len(in_shape) != 3:
            raise NetSpecError(f"{layer.name}: convolution needs an (H, W, C) input, got {in_shape}")
        h, w, _ = in_shape
        oh = _conv_out(h, layer.kernel, layer.stride, layer.padding)
        ow = _conv_out(w, layer.kernel, layer.stride, layer.padding)
        out = (oh, ow, layer.out_channels)
    elif isinstance(layer, MaxPool):
        if len(in_shape) != 3:
            raise NetSpecError(f"{layer.name}: max-pool needs an (H, W, C) input, got {in_shape}")
        h, w, c = in_shape
        out = (pool_out(h, layer.size, layer.stride, layer.ceil), pool_out(w, layer.size, layer.stride, layer.ceil), c)
    elif isinstance(layer, Flatten):
        n = 1
        for d in in_shape:
            n *= d
        out = (n,)
    elif isinstance(layer, Affine):
        if len(in_shape) != 1:
            raise NetSpecError(f"{layer.name}: affine needs a flat (N,) input, got {in_shape}; add a Flatten")
        out = (layer.out_features,)
    else:
        raise NetSpecError(f"unknown layer type {type(layer).__name__}")
    if any(d <= 0 for d in out):
        raise NetSpecError(f"{layer.name}: input {in_shape} gives an empty output {out}")
    return out


def iter_counts(net: NetSpec, input_shape: Sequence[int] | None = None) -> Iterator[LayerCount]:
    """Yield each layer with its input/output shapes, parameter count (weights + biases) and MACs."""
    shape = tuple(input_shape or net.input_shape)
    for layer in net.layers:
        out = layer_output_shape(layer, shape)
        if isinstance(layer, Conv):
            k_in = layer.kernel * layer.kernel * shape[2]
            params = k_in * layer.out_channels + layer.out_channels
            macs = out[0] * out[1] * k_in * layer.out_channels
        elif isinstance(layer, Affine):
            params = shape[0] * layer.out_features + layer.out_features
            macs = shape[0] * layer.out_features
        else:
            params = macs = 0
        yield LayerCount(layer, shape, out, params, macs)
        shape = out


def totals(net: NetSpec) -> tuple[int, int]:
    """(MACs, params) of a whole net."""
    rows = list(iter_counts(net))
    return sum(r.macs for r in rows), sum(r.params for r in rows)


def output_shape(net: NetSpec) -> tuple:
    """The shape of the last layer's output."""
    rows = list(iter_counts(net))
    return rows[-1].out_shape
