"""PyTorch modules built from the layer lists in ``wearface.kernels.nets``, and their float export.

The one job here: turn a ``NetSpec`` into an ``nn.Module`` (for training) and a trained module back into
plain float32 arrays in the kernels' layout (for ``kernels/ptq.py``).  No net is defined here.

Conventions (stable API, used by the training and the alignment helpers):

* Input: NCHW float32, RGB, ``(pixel - 128) / 128`` (see ``to_input``).
* Every Conv / Affine with ``relu=True`` is followed by BatchNorm (when ``batchnorm=True``) and then ReLU;
  the last Affine has neither.  BatchNorm is folded into the weights on export.
* ``Flatten`` flattens in NHWC order (``index = (h*W + w)*C + c``, as ``nets.Flatten`` says): the module
  permutes NCHW -> NHWC before flattening, so the first affine's columns are already in the kernels' order
  and the export needs no column permutation.
* Embedding nets (``spec.output == "embedding"``) return L2-normalised 128-d vectors; the alignment net
  returns its 3 raw numbers.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wearface.kernels import nets
from wearface.kernels.nets import Affine, Conv, Flatten, MaxPool, NetSpec


def module_key(layer_name: str) -> str:
    """The ``nn.ModuleDict`` key of a spec layer (dots are not allowed in module names)."""
    return layer_name.replace(".", "_")


class ConvBlock(nn.Module):
    """Conv2d (+ BatchNorm2d) (+ ReLU) for one ``nets.Conv``."""

    def __init__(self, layer: Conv, in_channels: int, batchnorm: bool):
        super().__init__()
        use_bn = batchnorm and layer.relu
        self.conv = nn.Conv2d(in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding, bias=not use_bn)
        self.bn = nn.BatchNorm2d(layer.out_channels) if use_bn else None
        self.relu = layer.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class AffineBlock(nn.Module):
    """Linear (+ BatchNorm1d) (+ ReLU) for one ``nets.Affine``."""

    def __init__(self, layer: Affine, in_features: int, batchnorm: bool):
        super().__init__()
        use_bn = batchnorm and layer.relu
        self.linear = nn.Linear(in_features, layer.out_features, bias=not use_bn)
        self.bn = nn.BatchNorm1d(layer.out_features) if use_bn else None
        self.relu = layer.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class PoolBlock(nn.Module):
    """Max-pool with the spec's floor/ceil rule (torch's ``ceil_mode`` never pools over padding here)."""

    def __init__(self, layer: MaxPool):
        super().__init__()
        self.pool = nn.MaxPool2d(layer.size, layer.stride, ceil_mode=layer.ceil)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class FlattenNHWC(nn.Module):
    """NCHW -> (N, H*W*C) in NHWC order, so the next affine's columns match the kernels' flatten."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


class SpecNet(nn.Module):
    """A net built layer by layer from a ``NetSpec``.  ``forward``: (N, C, H, W) float -> (N, out)."""

    def __init__(self, spec: NetSpec, batchnorm: bool = True):
        super().__init__()
        self.spec = spec
        self.batchnorm = batchnorm
        self.layers = nn.ModuleDict()
        shape = tuple(spec.input_shape)
        for row in nets.iter_counts(spec):
            layer = row.layer
            if isinstance(layer, Conv):
                block = ConvBlock(layer, shape[2], batchnorm)
            elif isinstance(layer, Affine):
                block = AffineBlock(layer, shape[0], batchnorm)
            elif isinstance(layer, MaxPool):
                block = PoolBlock(layer)
            elif isinstance(layer, Flatten):
                block = FlattenNHWC()
            else:  # nets.layer_output_shape already rejects unknown layers
                raise TypeError(f"unknown layer {layer!r}")
            self.layers[module_key(layer.name)] = block
            shape = row.out_shape
        self.output_shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers.values():
            x = block(x)
        if self.spec.output == "embedding":
            x = F.normalize(x, dim=1)
        return x


def build_torch_net(spec: NetSpec | str, batchnorm: bool = True) -> SpecNet:
    """Build the PyTorch module of ``spec`` (a ``NetSpec`` or its name: ``align``, ``A``, ``B``, ``C``)."""
    if isinstance(spec, str):
        spec = nets.get_net(spec)
    return SpecNet(spec, batchnorm=batchnorm)


def to_input(images_nhwc_uint8) -> torch.Tensor:
    """uint8 RGB images (N, H, W, 3) (numpy or tensor) -> float32 NCHW tensor ``(pixel - 128) / 128``."""
    x = torch.as_tensor(np.asarray(images_nhwc_uint8) if not torch.is_tensor(images_nhwc_uint8) else images_nhwc_uint8)
    x = x.permute(0, 3, 1, 2).float()
    return (x - nets.INPUT_ZERO_POINT) * nets.INPUT_SCALE


def _fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm after a linear map into its weight (dim 0 = outputs) and bias."""
    out = weight.shape[0]
    b = bias if bias is not None else torch.zeros(out, dtype=weight.dtype)
    if bn is None:
        return weight, b
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = weight * scale.reshape((out,) + (1,) * (weight.dim() - 1))
    return w, (b - bn.running_mean) * scale + bn.bias


@torch.no_grad()
def export_float_weights(module: SpecNet) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Float32 weights per spec layer name, BatchNorm folded in (eval-mode statistics).

    Conv: ``W`` (O, KH, KW, I), ``b`` (O,).  Affine: ``W`` (O, I) whose input index is in NHWC flatten order
    ``(h*W + w)*C + c``; ``b`` (O,).  Layers without weights (pools, flatten) are absent.
    """
    result: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for layer in module.spec.layers:
        block = module.layers[module_key(layer.name)]
        if isinstance(block, ConvBlock):
            w, b = _fold_bn(block.conv.weight.detach().cpu().double(), _opt_double(block.conv.bias), _bn_double(block.bn))
            w = w.permute(0, 2, 3, 1)  # OIHW -> OHWI
        elif isinstance(block, AffineBlock):
            w, b = _fold_bn(block.linear.weight.detach().cpu().double(), _opt_double(block.linear.bias), _bn_double(block.bn))
        else:
            continue
        result[layer.name] = (np.ascontiguousarray(w.numpy(), dtype=np.float32),
                              np.ascontiguousarray(b.numpy(), dtype=np.float32))
    return result


def _opt_double(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().cpu().double()


def _bn_double(bn: nn.Module | None):
    """A float64 CPU copy of a BatchNorm's affine and running statistics (folding in float64, then rounding once)."""
    if bn is None:
        return None

    return SimpleNamespace(
        weight=bn.weight.detach().cpu().double(),
        bias=bn.bias.detach().cpu().double(),
        running_mean=bn.running_mean.detach().cpu().double(),
        running_var=bn.running_var.detach().cpu().double(),
        eps=bn.eps,
    )


def numpy_forward(spec: NetSpec, weights: dict, x_nhwc: np.ndarray) -> np.ndarray:
    """Plain float64 numpy forward of exported weights on NHWC float input (N, H, W, C); for tests.

    Slow but obvious: convolution by explicit patch gathering, max-pool with the spec's floor/ceil rule.
    Embedding nets' outputs are L2-normalised, as ``SpecNet`` does.
    """
    x = np.asarray(x_nhwc, dtype=np.float64)
    for layer in spec.layers:
        if isinstance(layer, Conv):
            w, b = weights[layer.name]
            p, k, s = layer.padding, layer.kernel, layer.stride
            xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
            n, h, wd, c = xp.shape
            oh, ow = (h - k) // s + 1, (wd - k) // s + 1
            patches = np.empty((n, oh, ow, k, k, c))
            for i in range(k):
                for j in range(k):
                    patches[:, :, :, i, j, :] = xp[:, i : i + s * (oh - 1) + 1 : s, j : j + s * (ow - 1) + 1 : s, :]
            x = np.einsum("nhwijc,oijc->nhwo", patches, w.astype(np.float64)) + b
            if layer.relu:
                x = np.maximum(x, 0)
        elif isinstance(layer, MaxPool):
            n, h, wd, c = x.shape
            oh = nets.pool_out(h, layer.size, layer.stride, layer.ceil)
            ow = nets.pool_out(wd, layer.size, layer.stride, layer.ceil)
            out = np.empty((n, oh, ow, c))
            for i in range(oh):
                for j in range(ow):
                    win = x[:, i * layer.stride : i * layer.stride + layer.size,
                            j * layer.stride : j * layer.stride + layer.size, :]
                    out[:, i, j, :] = win.max(axis=(1, 2))
            x = out
        elif isinstance(layer, Flatten):
            x = x.reshape(x.shape[0], -1)
        elif isinstance(layer, Affine):
            w, b = weights[layer.name]
            x = x @ w.astype(np.float64).T + b
            if layer.relu:
                x = np.maximum(x, 0)
    if spec.output == "embedding":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x
