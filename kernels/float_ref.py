"""Float32 reference of every op and the float forward of a whole net from float weights.

The quantizer calibrates on it and the tests compare the int8 net against it.  Imports numpy only.

Float weights: ``FloatWeights = dict[layer_name, (W, b)]``; conv W float32 (O, KH, KW, I),
affine W float32 (O, I) whose input index is the NHWC flatten order ``(h*W + w)*C + c``;
b float32 (O,).  BatchNorm, if any, is already folded in.
The input is uint8 pixels (H, W, 3) mapped to ``(p - 128) / 128``.
"""
from __future__ import annotations

import numpy as np

from . import nets
from .errors import ShapeError
from .reference import flatten, im2col, max_pool

FloatWeights = dict


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, spec: nets.Conv) -> np.ndarray:
    """float32 (H, W, I) -> (OH, OW, O): zero padding, stride, then ReLU if ``spec.relu``."""
    cols = im2col(x.astype(np.float32), spec.kernel, spec.stride, spec.padding, 0.0)
    y = cols @ w.reshape(w.shape[0], -1).T.astype(np.float32) + b.astype(np.float32)
    return np.maximum(y, 0.0) if spec.relu else y


def affine(x: np.ndarray, w: np.ndarray, b: np.ndarray, spec: nets.Affine) -> np.ndarray:
    """float32 (I,) -> (O,), then ReLU if ``spec.relu``."""
    y = w.astype(np.float32) @ x.astype(np.float32) + b.astype(np.float32)
    return np.maximum(y, 0.0) if spec.relu else y


def input_float(image_uint8: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 (p - 128) / 128."""
    return (image_uint8.astype(np.float32) - nets.INPUT_ZERO_POINT) * np.float32(nets.INPUT_SCALE)


def check_float_weights(spec: nets.NetSpec, weights: FloatWeights) -> None:
    """Raise ShapeError naming the layer unless every conv/affine has (W, b) of the right shape."""
    for row in nets.iter_counts(spec):
        layer = row.layer
        if isinstance(layer, nets.Conv):
            wshape = (layer.out_channels, layer.kernel, layer.kernel, row.in_shape[2])
        elif isinstance(layer, nets.Affine):
            wshape = (layer.out_features, row.in_shape[0])
        else:
            continue
        if layer.name not in weights:
            raise ShapeError(f"{layer.name}: float weights missing (expected W {wshape} and b ({wshape[0]},))")
        w, b = weights[layer.name]
        if np.shape(w) != wshape:
            raise ShapeError(f"{layer.name}: float W expected shape {wshape}, found {np.shape(w)}")
        if np.shape(b) != (wshape[0],):
            raise ShapeError(f"{layer.name}: float b expected shape ({wshape[0]},), found {np.shape(b)}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise ShapeError(f"{layer.name}: float weights contain NaN or inf")


def run_layer(layer, weights: FloatWeights, x: np.ndarray) -> np.ndarray:
    if isinstance(layer, nets.Conv):
        w, b = weights[layer.name]
        return conv(x, np.asarray(w), np.asarray(b), layer)
    if isinstance(layer, nets.Affine):
        w, b = weights[layer.name]
        return affine(x, np.asarray(w), np.asarray(b), layer)
    if isinstance(layer, nets.MaxPool):
        return max_pool(x, layer)
    if isinstance(layer, nets.Flatten):
        return flatten(x)
    raise ShapeError(f"unknown layer type {type(layer).__name__}")


def forward_trace(spec: nets.NetSpec, weights: FloatWeights, image_uint8: np.ndarray) -> list:
    """Every layer's float32 output for one uint8 image (H, W, 3), in layer order."""
    if image_uint8.shape != tuple(spec.input_shape):
        raise ShapeError(f"net {spec.name}: expected an input image {spec.input_shape}, found {image_uint8.shape}")
    x = input_float(image_uint8)
    outs = []
    for layer in spec.layers:
        x = run_layer(layer, weights, x)
        outs.append(x)
    return outs


def forward(spec: nets.NetSpec, weights: FloatWeights, image_uint8: np.ndarray) -> np.ndarray:
    """The net's float32 output: an embedding net's is L2-normalised, a regression's is raw."""
    y = forward_trace(spec, weights, image_uint8)[-1]
    if spec.output == "embedding":
        y = y / max(float(np.linalg.norm(y)), 1e-12)
    return y.astype(np.float32)
