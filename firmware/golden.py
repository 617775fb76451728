"""Layer probes: golden vectors that make every weight of every layer of both nets count.

One job: a per-layer self-test that fails when any weight, bias or quantization parameter of a bundle's nets
differs from what its builder recorded.  The end-to-end golden vectors (``bundle.run_golden``: images through the
board's int8 runtime) check the kernels, but only through the nets' outputs: the alignment net ends in 3 numbers,
so an edit of its fully connected layers (layers 9 and 10) left them unchanged and a re-signed bundle with edited
weights passed (issue 15).

For each conv/affine layer the builder records the SHA-256 of that layer's response to a *probe*:

* the probe is an int8 tensor of the layer's input shape (a conv's spatially cut to ``kernel + stride`` a side,
  enough for one output position whose taps all lie inside it), made of SHAKE-256 bytes of
  ``"wearface-layer-probe/<net>/<layer>"`` (stable on every platform, nothing stored), with every value that
  equals the layer's ``input_zero_point`` moved by one: so ``x - input_zero_point`` is never 0;
* the response is the layer's int32 accumulators ``bias + sum (x - zp) * w`` (``kernels.reference``) followed by
  its requantized int8 outputs.

Because no probe value is the zero point, a change of *any one weight* by any amount changes at least one
accumulator (every tap of every output channel multiplies a non-zero input at an inner output position), and a
changed bias does too; changed multipliers, shifts or zero points change the outputs.  The check runs the numpy
reference (``kernels/reference.py``, the specification the fast kernels equal), on inputs of at most a few
thousand values per layer: milliseconds per net.

    layer_golden(qnet, role) -> [{"layer", "index", "probe_shape", "sha256"}, ...]   # the builder records it
    check_layer_golden(qnet, role, entries, name)    # BundleError(GOLDEN_MISMATCH) naming the first bad layer

Board-side: numpy, hashlib and ``wearface.kernels`` only.
"""
from __future__ import annotations

import hashlib

import numpy as np

from wearface.kernels import nets, reference
from wearface.kernels import qnet as qn

from .errors import BundleError, BundleReason

PROBE_DOMAIN = "wearface-layer-probe"


def probe_shape(layer, in_shape: tuple) -> tuple:
    """The probe's shape for a layer whose input is ``in_shape``: a conv's spatial sides cut to kernel + stride."""
    if isinstance(layer, nets.Conv) and len(in_shape) == 3:
        side = layer.kernel + layer.stride
        return (min(in_shape[0], side), min(in_shape[1], side), in_shape[2])
    return tuple(in_shape)


def layer_probe(role: str, layer_name: str, shape: tuple, input_zero_point: int) -> np.ndarray:
    """int8 ``shape`` from SHAKE-256 of the net role and layer name, no value equal to ``input_zero_point``."""
    count = int(np.prod(shape, dtype=np.int64))
    raw = hashlib.shake_256(f"{PROBE_DOMAIN}/{role}/{layer_name}".encode()).digest(count)
    x = np.frombuffer(raw, np.int8).copy().reshape(shape)
    x[x == input_zero_point] = input_zero_point + 1 if input_zero_point < 127 else input_zero_point - 1
    return x


def layer_response_sha256(layer, probe: np.ndarray) -> str:
    """SHA-256 (hex) of a conv/affine layer's int32 accumulators (little-endian) then its int8 outputs on ``probe``."""
    if isinstance(layer, qn.QConv):
        acc = reference.conv_acc(probe, layer)
    else:
        acc = reference.affine_acc(probe, layer)
    out = reference.requantize(acc, layer.multiplier, layer.shift, layer.output_zero_point, layer.act_min,
                               layer.act_max)
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(acc, dtype="<i4").tobytes())
    h.update(np.ascontiguousarray(out, dtype=np.int8).tobytes())
    return h.hexdigest()


def _weighted_layers(qnet: qn.QuantizedNet):
    """(index, quantized layer, input shape) of every conv/affine layer."""
    for index, (layer, row) in enumerate(zip(qnet.layers, nets.iter_counts(qnet.spec))):
        if isinstance(layer, (qn.QConv, qn.QAffine)):
            yield index, layer, tuple(row.in_shape)


def layer_golden(qnet: qn.QuantizedNet, role: str) -> list[dict]:
    """One entry per conv/affine layer: ``layer`` (name), ``index``, ``probe_shape``, ``sha256`` of its response."""
    entries = []
    for index, layer, in_shape in _weighted_layers(qnet):
        shape = probe_shape(layer.spec, in_shape)
        probe = layer_probe(role, layer.spec.name, shape, int(layer.input_zero_point))
        entries.append({"layer": layer.spec.name, "index": index, "probe_shape": list(shape),
                        "sha256": layer_response_sha256(layer, probe)})
    return entries


def check_layer_golden(qnet: qn.QuantizedNet, role: str, entries: list, name: str = "bundle") -> None:
    """Recompute every layer's probe response; ``BundleError(GOLDEN_MISMATCH)`` naming the first layer that
    differs, or when the entries do not list exactly the net's conv/affine layers."""
    expected = {e["index"]: e for e in entries}
    layers = list(_weighted_layers(qnet))
    if sorted(expected) != [index for index, _, _ in layers]:
        raise BundleError(BundleReason.GOLDEN_MISMATCH, f"{name}: layer_golden.{role} lists layers "
                                                        f"{sorted(expected)}, the net's conv/affine layers are "
                                                        f"{[index for index, _, _ in layers]}")
    for index, layer, in_shape in layers:
        entry = expected[index]
        shape = probe_shape(layer.spec, in_shape)
        if entry["layer"] != layer.spec.name or tuple(entry["probe_shape"]) != shape:
            raise BundleError(BundleReason.GOLDEN_MISMATCH,
                              f"{name}: layer_golden.{role}[{index}] is for {entry['layer']!r} "
                              f"{entry['probe_shape']}, the net has {layer.spec.name!r} {list(shape)}")
        try:
            found = layer_response_sha256(layer, layer_probe(role, layer.spec.name, shape,
                                                             int(layer.input_zero_point)))
        except Exception as exc:  # an accumulator overflow or a broken layer: a failed self-test, not a crash
            raise BundleError(BundleReason.GOLDEN_MISMATCH,
                              f"{name}: {role} layer {index} ({layer.spec.name}): probe failed: {exc!r}") from None
        if found != entry["sha256"]:
            raise BundleError(BundleReason.GOLDEN_MISMATCH,
                              f"{name}: {role} layer {index} ({layer.spec.name}): its response to the layer probe "
                              f"differs from the one recorded at build time (weights, bias or quantization "
                              f"changed): sha256 {found[:16]}..., recorded {entry['sha256'][:16]}...")
