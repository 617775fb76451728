"""The bundle format: round trip, one test per rejection reason, and damage never accepted (hypothesis)."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wearface.firmware import bundle as fmt
from wearface.firmware.errors import BundleError, BundleReason
from wearface.host_tools.bundle import bundle_build, keys
from wearface.host_tools.errors import BundleBuildError
from wearface.kernels import nets
from wearface.kernels import qnet as qn

from .conftest import BOARD, rewrite_manifest


def verify(data, key, **kw):
    kw.setdefault("board_compatible", BOARD)
    return fmt.verify_bundle(data, [key], **kw)


def reason_of(fn, *args, **kw) -> BundleReason:
    with pytest.raises(BundleError) as info:
        fn(*args, **kw)
    assert str(info.value).startswith("bundle") or ":" in str(info.value)
    return info.value.reason


def test_round_trip_keeps_every_array_and_setting(signed_bundle, dev_public_key):
    b = verify(signed_bundle, dev_public_key, min_rollback=5)
    again = bundle_build.build_test_bundle(seed=0, rollback_counter=5)
    assert again == signed_bundle  # deterministic for a seed
    align = bundle_build.random_qnet(nets.ALIGN_NET, 0)
    embed = bundle_build.random_qnet(nets.MODEL_A, 1)
    for ours, theirs in ((b.align_net, align), (b.embed_net, embed)):
        assert ours.spec is nets.NETS[theirs.spec.name]
        assert (ours.output_scale, ours.output_zero_point) == (theirs.output_scale, theirs.output_zero_point)
        for a, t in zip(ours.layers, theirs.layers):
            assert type(a) is type(t) and a.spec == t.spec
            if isinstance(a, (qn.QConv, qn.QAffine)):
                for f in ("weights", "bias", "multiplier", "shift"):
                    x, y = getattr(a, f), getattr(t, f)
                    assert x.dtype == np.asarray(y).dtype or f != "weights"
                    np.testing.assert_array_equal(x, y)
                assert (a.input_zero_point, a.output_zero_point, a.act_min, a.act_max) == \
                       (t.input_zero_point, t.output_zero_point, t.act_min, t.act_max)
                assert a.output_scale == t.output_scale
    assert b.threshold == 1.1 and b.threshold_metric == "l2"
    assert b.rollback_counter == 5 and b.model_version == "test-0"
    assert b.embedding_space == fmt.embedding_space_id(embed)
    assert b.size_bytes == len(signed_bundle) and b.signed
    assert b.key_id == fmt.key_id(dev_public_key).hex()
    assert {g.net for g in b.golden} == {"align", "embed"}
    assert BOARD in b.compatible


def test_header_constants_are_defined_once_and_little_endian():
    assert fmt.HEADER_FORMAT.startswith("<") and fmt.TRAILER_FORMAT.startswith("<")
    assert fmt.HEADER_SIZE == 32 and fmt.TRAILER_SIZE == 112


def test_read_bundle_accepts_unsigned_but_verify_does_not(dev_public_key):
    unsigned = bundle_build.build_test_bundle(key_path=None)
    assert fmt.read_bundle(unsigned).key_id is None
    assert reason_of(verify, unsigned, dev_public_key) == BundleReason.BAD_SIGNATURE


def test_bad_magic(signed_bundle, dev_public_key):
    assert reason_of(verify, b"PK\x03\x04" + signed_bundle[4:], dev_public_key) == BundleReason.BAD_MAGIC
    assert reason_of(fmt.read_bundle, b"GIF8") == BundleReason.BAD_MAGIC


def test_unsupported_version(signed_bundle, dev_public_key):
    data = signed_bundle[:4] + struct.pack("<H", 2) + signed_bundle[6:]
    with pytest.raises(BundleError) as info:
        verify(data, dev_public_key)
    assert info.value.reason == BundleReason.UNSUPPORTED_VERSION
    assert "format version 2" in str(info.value)


def test_truncated_names_the_byte_and_how_much_is_missing(signed_bundle, dev_public_key):
    cut = len(signed_bundle) - 1000
    with pytest.raises(BundleError) as info:
        verify(signed_bundle[:cut], dev_public_key)
    assert info.value.reason == BundleReason.TRUNCATED and info.value.offset == cut
    assert f"truncated at byte {cut} (need 1000 more)" in str(info.value)
    assert reason_of(fmt.read_bundle, signed_bundle[:10]) == BundleReason.TRUNCATED


def test_trailing_bytes_are_a_bad_header(signed_bundle, dev_public_key):
    assert reason_of(verify, signed_bundle + b"\x00", dev_public_key) == BundleReason.BAD_HEADER


def test_hash_mismatch(signed_bundle, dev_public_key):
    data = bytearray(signed_bundle)
    data[fmt.HEADER_SIZE + 3] ^= 0x20  # inside the manifest
    assert reason_of(verify, bytes(data), dev_public_key) == BundleReason.HASH_MISMATCH
    assert reason_of(fmt.read_bundle, bytes(data)) == BundleReason.HASH_MISMATCH


def test_bad_signature(signed_bundle, dev_public_key):
    data = bytearray(signed_bundle)
    data[-1] ^= 1
    assert reason_of(verify, bytes(data), dev_public_key) == BundleReason.BAD_SIGNATURE


def test_unknown_key(signed_bundle):
    other = keys.public_raw(keys.generate())
    with pytest.raises(BundleError) as info:
        fmt.verify_bundle(signed_bundle, [other], BOARD)
    assert info.value.reason == BundleReason.UNKNOWN_KEY
    assert fmt.key_id(other).hex() in str(info.value)


def test_signing_with_another_key_needs_that_key(signed_bundle):
    key = keys.generate()
    resigned = bundle_build.sign_bundle(signed_bundle, key)
    assert fmt.verify_bundle(resigned, [keys.public_base64(key)], BOARD, self_test=False).signed


def test_incompatible_board(signed_bundle, dev_public_key):
    with pytest.raises(BundleError) as info:
        verify(signed_bundle, dev_public_key, board_compatible="acme-watch")
    assert info.value.reason == BundleReason.INCOMPATIBLE_BOARD and "acme-watch" in str(info.value)


def test_rollback(signed_bundle, dev_public_key):
    assert verify(signed_bundle, dev_public_key, min_rollback=5, self_test=False).rollback_counter == 5
    assert reason_of(verify, signed_bundle, dev_public_key, min_rollback=6) == BundleReason.ROLLBACK


def test_golden_mismatch(signed_bundle, dev_public_key, dev_private_key):
    def corrupt_golden(manifest):
        container = fmt.parse_container(signed_bundle)
        tensors = bytearray(container.data[container.tensors_offset: container.trailer_offset])
        entry = next(t for t in manifest["tensors"] if t["name"] == manifest["golden"][-1]["output_int8"])
        tensors[entry["offset"]] ^= 0x01
        return manifest, bytes(tensors)

    data = rewrite_manifest(signed_bundle, corrupt_golden, dev_private_key)
    assert verify(data, dev_public_key, self_test=False)  # only the self-test can see it
    with pytest.raises(BundleError) as info:
        verify(data, dev_public_key)
    assert info.value.reason == BundleReason.GOLDEN_MISMATCH and "first at index 0" in str(info.value)


@pytest.mark.parametrize("mutate, words", [
    (lambda m: m.__delitem__("threshold"), "missing 'threshold'"),
    (lambda m: m.update(threshold="1.1"), "expected int/float"),
    (lambda m: m.update(embedding_space="0" * 16), "embedding_space"),
    # mirror averaging changes the embedding: a bundle that claims it under the plain space is refused
    (lambda m: m.update(mirror_average=True), "embedding_space"),
    (lambda m: m.update(mirror_average=1), "mirror_average: expected bool"),
    (lambda m: m.update(gallery_match="median"), "gallery_match = 'median'"),
    (lambda m: m.update(gallery_match=1), "gallery_match: expected str"),
    (lambda m: m.update(threshold_by_count=[]), "threshold_by_count: 0 entries"),
    (lambda m: m.update(threshold_by_count=[0.7, 0]), "threshold_by_count[1] = 0"),
    (lambda m: m.update(threshold_by_count=[0.7, "x"]), "threshold_by_count[1] = 'x'"),
    (lambda m: m.update(threshold_by_count=0.7), "threshold_by_count: expected list"),
    (lambda m: m["nets"]["embed"]["layers"][0].update(kernel=3), "differ from kernels.nets"),
    (lambda m: m["tensors"][0].update(offset=8), "not aligned"),
    (lambda m: m["tensors"][0].update(size_bytes=1), "needs"),
    (lambda m: m.update(compatible=[]), "compatible"),
    (lambda m: m["nets"]["align"]["layers"][0]["quant"].update(act_min=200), "act_min = 200"),
])
def test_bad_manifest_names_the_place(signed_bundle, dev_public_key, dev_private_key, mutate, words):
    data = rewrite_manifest(signed_bundle, mutate, dev_private_key)
    with pytest.raises(BundleError) as info:
        verify(data, dev_public_key, self_test=False)
    assert info.value.reason == BundleReason.BAD_MANIFEST
    assert words in str(info.value)


def test_celeba_provenance_adds_the_terms():
    align = bundle_build.random_qnet(nets.ALIGN_NET, 0)
    embed = bundle_build.random_qnet(nets.MODEL_A, 1)
    data = bundle_build.build_bundle(align, embed, 1.0, ["x"], "v", 0, {"datasets": ["celeba_more"]},
                                     {"align": [], "embed": []})
    assert bundle_build.CELEBA_TERMS in fmt.read_bundle(data).manifest["data_terms"]


def test_error_exit_codes_are_distinct_per_reason():
    from wearface.host_tools.cli import exit_code

    codes = {exit_code(BundleError(r, "x")) for r in BundleReason}
    assert len(codes) == len(BundleReason) and min(codes) > 20


# --- damage is always rejected with BundleError, never another exception, never accepted ---------

@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_truncation_or_bit_flip_is_rejected(signed_bundle, dev_public_key, data):
    n = len(signed_bundle)
    if data.draw(st.booleans(), label="truncate"):
        damaged = signed_bundle[: data.draw(st.integers(0, n - 1), label="length")]
    else:
        position = data.draw(st.one_of(st.integers(0, 255), st.integers(0, n - 1),
                                       st.integers(n - fmt.TRAILER_SIZE, n - 1)), label="byte")
        bit = data.draw(st.integers(0, 7), label="bit")
        buf = bytearray(signed_bundle)
        buf[position] ^= 1 << bit
        damaged = bytes(buf)
    with pytest.raises(BundleError):
        verify(damaged, dev_public_key, self_test=False)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_are_rejected(blob):
    for candidate in (blob, fmt.MAGIC + blob, fmt.MAGIC + struct.pack("<H", 1) + blob):
        with pytest.raises(BundleError):
            fmt.read_bundle(candidate)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            yield from _paths(v, prefix + (i,))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_manifest_parser_rejects_any_edit_with_bundle_error(signed_bundle, dev_public_key, dev_private_key, data):
    """A validly signed bundle whose manifest holds anything: parsed, or BAD_MANIFEST; nothing else."""
    container = fmt.parse_container(signed_bundle)
    import json
    manifest = json.loads(container.data[container.manifest_offset: container.manifest_offset + container.manifest_size])
    paths = [p for p in _paths(manifest) if p and not (len(p) >= 2 and p[0] == "tensors" and p[1] >= 4)]
    path = data.draw(st.sampled_from(paths), label="path")
    action = data.draw(st.sampled_from(["replace", "delete"]), label="action")
    value = data.draw(json_values, label="value")

    def mutate(m):
        target = m
        for key in path[:-1]:
            target = target[key]
        if action == "delete":
            del target[path[-1]]
        else:
            target[path[-1]] = value

    damaged = rewrite_manifest(signed_bundle, mutate, dev_private_key)
    try:
        verify(damaged, dev_public_key, self_test=False)
    except BundleError as exc:
        assert exc.reason in (BundleReason.BAD_MANIFEST, BundleReason.INCOMPATIBLE_BOARD, BundleReason.ROLLBACK,
                              BundleReason.UNSUPPORTED_VERSION, BundleReason.BAD_HEADER)


# --- a cohort (threshold_metric "l2_cohort") ------------------------------------------------------

def _cohort_bundle(cohort, k=3):
    align = bundle_build.random_qnet(nets.ALIGN_NET, 0)
    embed = bundle_build.random_qnet(nets.MODEL_A, 1)
    return bundle_build.build_bundle(align, embed, 0.8, [BOARD], "v", 0, {}, cohort=cohort, cohort_k=k,
                                     created_at="2026-01-01T00:00:00+00:00")


def test_a_cohort_round_trips_as_unit_rows_and_sets_the_metric():
    rng = np.random.default_rng(0)
    cohort = rng.normal(size=(12, 128))
    b = fmt.read_bundle(_cohort_bundle(cohort, k=3))
    assert b.threshold_metric == "l2_cohort" and b.cohort_k == 3 and b.cohort.shape == (12, 128)
    unit = cohort / np.linalg.norm(cohort, axis=1, keepdims=True)
    assert np.allclose(np.linalg.norm(b.cohort, axis=1), 1.0, atol=1e-5)
    assert np.abs(b.cohort - unit).max() < 0.02  # int8 x 127 keeps ~2 decimals
    plain = fmt.read_bundle(_cohort_bundle(None))
    assert plain.threshold_metric == "l2" and plain.cohort is None and plain.cohort_k == 0


@pytest.mark.parametrize("mutate, words", [
    (lambda m: m.__delitem__("cohort"), "missing 'cohort'"),
    (lambda m: m["cohort"].update(k=13), "expected int8 (M, 128)"),
    (lambda m: m["cohort"].update(k=0), "cohort.k = 0"),
    (lambda m: m["cohort"].update(tensor="nope"), "not in the tensor table"),
    (lambda m: m["cohort"].update(tensor=m["nets"]["embed"]["layers"][0]["quant"]["weights"]), "expected int8 (M, 128)"),
])
def test_a_malformed_cohort_is_a_bad_manifest(dev_public_key, dev_private_key, mutate, words):
    data = bundle_build.sign_bundle(_cohort_bundle(np.random.default_rng(1).normal(size=(12, 128))), dev_private_key)
    with pytest.raises(BundleError) as info:
        verify(rewrite_manifest(data, mutate, dev_private_key), dev_public_key, self_test=False)
    assert info.value.reason == BundleReason.BAD_MANIFEST and words in str(info.value)


def test_build_refuses_an_odd_cohort():
    for cohort, k in ((np.ones((2, 128)), 3), (np.ones(128), 1), (np.full((4, 128), np.nan), 1)):
        with pytest.raises(BundleBuildError, match="cohort"):
            _cohort_bundle(cohort, k)


def test_gallery_match_is_carried_and_absent_by_default(dev_public_key):
    plain = fmt.read_bundle(bundle_build.build_test_bundle(3))
    assert plain.gallery_match == "nearest" and "gallery_match" not in plain.manifest
    mean = fmt.verify_bundle(bundle_build.build_test_bundle(3, gallery_match="mean"), [dev_public_key], BOARD)
    assert mean.gallery_match == "mean" and "mean embedding" in mean.rule
    assert mean.embedding_space == plain.embedding_space  # the same nets: the gallery's embeddings stay usable
    with pytest.raises(BundleBuildError, match="gallery_match"):
        bundle_build.build_test_bundle(3, gallery_match="median")


def test_threshold_by_count_is_carried_and_absent_by_default(dev_public_key):
    assert fmt.read_bundle(bundle_build.build_test_bundle(3)).threshold_by_count == ()
    b = fmt.verify_bundle(bundle_build.build_test_bundle(3, threshold_by_count=[0.76, 0.74, 0.72]), [dev_public_key],
                          BOARD)
    assert b.threshold_by_count == (0.76, 0.74, 0.72) and "1: 0.7600, 2: 0.7400, 3+: 0.7200" in b.rule
    for bad in ([], [0.7, -1], [float("inf")], [0.5] * 17):
        with pytest.raises(BundleBuildError, match="threshold_by_count"):
            bundle_build.build_test_bundle(3, threshold_by_count=bad)
