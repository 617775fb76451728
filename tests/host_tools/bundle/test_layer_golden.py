"""Golden vectors that exercise every layer of both nets: a changed weight anywhere fails the self-test.

Issue 15: re-signed bundles with edited alignment-net weights (layers 9 and 10) were accepted, because the two
end-to-end golden vectors of a net whose output is 3 numbers do not see them.  Here every conv/affine layer of
both nets is edited by the smallest amount (one weight by +-1, or one bias by +1), the bundle re-signed with the
manifest otherwise consistent (the embedding space updated), and the board's verification must refuse it.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from wearface.firmware import bundle as fmt
from wearface.firmware.errors import BundleError, BundleReason
from wearface.kernels import qnet as qn

from .conftest import BOARD, rewrite_manifest


def weighted_layers(bundle):
    return [(role, index, layer) for role, net in bundle.nets.items() for index, layer in enumerate(net.layers)
            if isinstance(layer, (qn.QConv, qn.QAffine))]


def edited(signed: bytes, private_key, role: str, index: int, tensor: str, position: int) -> bytes:
    """The bundle with one value of ``role``'s layer ``index`` tensor (weights or bias) moved by one, re-signed,
    its embedding space recomputed so that only the self-test can tell."""
    original = fmt.read_bundle(signed)
    net = original.nets[role]
    layer = net.layers[index]
    values = getattr(layer, tensor).copy()
    flat = values.reshape(-1)
    flat[position] = flat[position] - 1 if flat[position] == np.iinfo(flat.dtype).max else flat[position] + 1
    changed_net = dataclasses.replace(net, layers=[dataclasses.replace(layer, **{tensor: values}) if i == index
                                                   else q for i, q in enumerate(net.layers)])

    def mutate(manifest):
        container = fmt.parse_container(signed)
        tensors = bytearray(container.data[container.tensors_offset: container.trailer_offset])
        entry = next(t for t in manifest["tensors"] if t["name"] == f"{role}/{layer.spec.name}/{tensor}")
        raw = flat.astype(fmt.DTYPES[entry["dtype"]]).tobytes()
        tensors[entry["offset"]: entry["offset"] + len(raw)] = raw
        if role == "embed":
            manifest["embedding_space"] = fmt.embedding_space_id(changed_net)
        return manifest, bytes(tensors)
    return rewrite_manifest(signed, mutate, private_key)


def test_every_layer_has_a_layer_probe(signed_bundle):
    bundle = fmt.read_bundle(signed_bundle)
    for role, index, layer in weighted_layers(bundle):
        (entry,) = [e for e in bundle.layer_golden[role] if e["index"] == index]
        assert entry["layer"] == layer.spec.name
    assert len(weighted_layers(bundle)) == sum(len(v) for v in bundle.layer_golden.values()) == 8 + 14


def test_a_one_step_edit_of_any_weight_or_bias_of_either_net_fails_the_self_test(signed_bundle, dev_public_key,
                                                                                   dev_private_key):
    bundle = fmt.read_bundle(signed_bundle)
    rng = np.random.default_rng(15)
    for role, index, layer in weighted_layers(bundle):
        size = layer.weights.size
        for tensor, position in [("weights", 0), ("weights", size - 1), ("weights", int(rng.integers(size))),
                                 ("bias", int(rng.integers(layer.bias.size)))]:
            data = edited(signed_bundle, dev_private_key, role, index, tensor, position)
            assert fmt.verify_bundle(data, [dev_public_key], BOARD, self_test=False)  # signed, consistent
            with pytest.raises(BundleError) as refused:
                fmt.verify_bundle(data, [dev_public_key], BOARD)
            assert refused.value.reason == BundleReason.GOLDEN_MISMATCH
            assert f"{role} layer {index} ({layer.spec.name})" in str(refused.value), str(refused.value)


def test_the_alignment_layers_9_and_10_edit_of_issue_15(signed_bundle, dev_public_key, dev_private_key):
    """The tester's case: the end-to-end vectors alone let it through; the layer probes do not."""
    for index in (9, 10):
        data = edited(signed_bundle, dev_private_key, "align", index, "weights", 5)

        def without_layer_probes(manifest):
            manifest.pop("layer_golden")
            return manifest
        assert fmt.verify_bundle(rewrite_manifest(data, without_layer_probes, dev_private_key), [dev_public_key],
                                 BOARD)  # what the board accepted before
        with pytest.raises(BundleError, match=f"align layer {index}"):
            fmt.verify_bundle(data, [dev_public_key], BOARD)


@pytest.mark.parametrize("mutate, words", [
    (lambda m: m.update(layer_golden=[]), "expected dict"),
    (lambda m: m["layer_golden"].pop("align"), "expected the nets"),
    (lambda m: m["layer_golden"]["align"][0].update(sha256="00"), "64 hex digits"),
    (lambda m: m["layer_golden"]["align"][0].update(probe_shape=[0]), "positive sizes"),
])
def test_a_malformed_layer_golden_is_a_bad_manifest(signed_bundle, dev_private_key, mutate, words):
    def apply(manifest):
        mutate(manifest)
        return manifest
    data = rewrite_manifest(signed_bundle, apply, dev_private_key)
    with pytest.raises(BundleError) as refused:
        fmt.read_bundle(data)
    assert refused.value.reason == BundleReason.BAD_MANIFEST and words in str(refused.value)


def test_layer_probes_listing_other_layers_fail_the_self_test(signed_bundle, dev_public_key, dev_private_key):
    def drop_one(manifest):
        manifest["layer_golden"]["embed"].pop(3)
        return manifest
    with pytest.raises(BundleError, match="lists layers"):
        fmt.verify_bundle(rewrite_manifest(signed_bundle, drop_one, dev_private_key), [dev_public_key], BOARD)
