"""Write and sign model bundles (the ``.wfb`` format of ``wearface.firmware.bundle``).

One job: lay two ``QuantizedNet``s, their settings and golden vectors out as a bundle, then sign it.
The reader, the constants and the format description live in ``firmware/bundle.py``; this module
uses those constants and never defines a second copy of the layout.  Must not import torch.

    build_bundle(align_qnet, embed_qnet, threshold, compatible, model_version, rollback_counter,
                 provenance, golden_inputs) -> bytes            # unsigned
    sign_bundle(data, private_key) -> bytes
    build_test_bundle(seed=0, key_path=keys/dev_ed25519.pem, ...) -> bytes   # for other helpers' tests
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import struct
from dataclasses import asdict
from pathlib import Path

import numpy as np

from wearface.firmware import bundle as fmt
from wearface.firmware.golden import layer_golden
from wearface.kernels import nets
from wearface.kernels import qnet as qn

from ..errors import BundleBuildError
from . import keys as keylib

#: The default board family list of a development bundle: the families of boards/*.toml.
DEFAULT_COMPATIBLE = ["wearface-virtual", "wearface-a53", "wearface-a55"]
#: Added to ``data_terms`` when the provenance names CelebA (``celeba`` in any dataset name).
CELEBA_TERMS = ("CelebA (Liu et al., ICCV 2015, MMLAB CUHK): the dataset's authors allow use for "
                "non-commercial research purposes only; weights trained on it inherit that restriction.")
GOLDEN_PER_NET = 2


# --- serialisation -----------------------------------------------------------------------------

class _TensorTable:
    """Collects arrays for the tensor section, aligned, in insertion order."""

    def __init__(self):
        self.entries: list[dict] = []
        self.blobs: list[bytes] = []
        self.size = 0

    def add(self, name: str, array: np.ndarray, dtype: str) -> str:
        array = np.ascontiguousarray(array)
        want = fmt.DTYPES[dtype]
        if array.dtype.kind not in "iuf" or (array.dtype.kind == "f") != (want.kind == "f"):
            raise BundleBuildError(f"tensor {name}: dtype {array.dtype} cannot be stored as {dtype}")
        converted = array.astype(want)
        if want.kind in "iu" and not np.array_equal(converted, array):
            raise BundleBuildError(f"tensor {name}: values outside {dtype} range")
        offset = fmt.align_up(self.size)
        blob = converted.tobytes()
        self.blobs.append(b"\x00" * (offset - self.size) + blob)
        self.size = offset + len(blob)
        self.entries.append({"name": name, "dtype": dtype, "shape": list(array.shape), "offset": offset,
                             "size_bytes": len(blob)})
        return name

    def section(self) -> bytes:
        return b"".join(self.blobs)


def _layer_json(layer) -> dict:
    return {"type": type(layer.spec).__name__, **asdict(layer.spec)}


def _net_json(role: str, net: qn.QuantizedNet, table: _TensorTable) -> dict:
    macs, params = nets.totals(net.spec)
    layers = []
    for layer in net.layers:
        entry = _layer_json(layer)
        if isinstance(layer, (qn.QConv, qn.QAffine)):
            prefix = f"{role}/{layer.spec.name}"
            quant = {
                "input_zero_point": int(layer.input_zero_point),
                "output_zero_point": int(layer.output_zero_point),
                "output_scale": float(layer.output_scale),
                "act_min": int(layer.act_min),
                "act_max": int(layer.act_max),
                "weights": table.add(f"{prefix}/weights", layer.weights, "int8"),
                "bias": table.add(f"{prefix}/bias", layer.bias, "int32"),
                "multiplier": table.add(f"{prefix}/multiplier", layer.multiplier, "int32"),
                "shift": table.add(f"{prefix}/shift", layer.shift, "int32"),
                "weight_scale": (None if layer.weight_scale is None else
                                 table.add(f"{prefix}/weight_scale", layer.weight_scale, "float32")),
            }
            entry["quant"] = quant
        layers.append(entry)
    return {
        "spec": net.spec.name,
        "output": net.spec.output,
        "input_shape": list(net.spec.input_shape),
        "input_normalisation": {
            "pixels": "uint8 RGB, (H, W, 3) NHWC",
            "int8_input": f"pixel - {nets.INPUT_ZERO_POINT}",
            "float_equivalent": f"(pixel - {nets.INPUT_ZERO_POINT}) * {nets.INPUT_SCALE!r}",
        },
        "input_scale": float(net.input_scale),
        "input_zero_point": int(net.input_zero_point),
        "output_scale": float(net.output_scale),
        "output_zero_point": int(net.output_zero_point),
        "macs": macs,
        "params": params,
        "metadata": _jsonable(net.metadata or {}),
        "layers": layers,
    }


def _jsonable(obj):
    """Round-trip through JSON, turning numpy scalars into Python numbers and NaN/±inf (e.g. a history's
    ``val_loss`` of a run without val batches) into null: the manifest is strict JSON."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)),
                      parse_constant=lambda _: None)


def pack(manifest: dict, tensors: bytes, version: int = fmt.FORMAT_VERSION) -> bytes:
    """Header | manifest | tensors with a trailer holding the SHA-256 and no signature (unsigned)."""
    manifest_bytes = json.dumps(manifest, indent=1, sort_keys=False, allow_nan=False).encode("utf-8")
    manifest_size = len(manifest_bytes)
    tensors_offset = fmt.align_up(fmt.HEADER_SIZE + manifest_size)
    trailer_offset = tensors_offset + len(tensors)
    header = struct.pack(fmt.HEADER_FORMAT, fmt.MAGIC, version, fmt.HEADER_SIZE, fmt.HEADER_SIZE,
                         manifest_size, tensors_offset, len(tensors), trailer_offset, 0)
    body = header + manifest_bytes + b"\x00" * (tensors_offset - fmt.HEADER_SIZE - manifest_size) + tensors
    digest = hashlib.sha256(body).digest()
    trailer = struct.pack(fmt.TRAILER_FORMAT, fmt.TRAILER_MAGIC, 0, b"\x00" * fmt.KEY_ID_SIZE, digest,
                          b"\x00" * fmt.SIGNATURE_SIZE)
    return body + trailer


def utc_now() -> str:
    """Now, UTC, ISO 8601 to the second: a bundle's default ``created_at``."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def build_bundle(align_qnet: qn.QuantizedNet, embed_qnet: qn.QuantizedNet, threshold: float,
                 compatible: list[str], model_version: str, rollback_counter: int, provenance: dict,
                 golden_inputs: dict | None = None, threshold_metric: str = "l2",
                 created_at: str | None = None, data_terms: list[str] | None = None,
                 cohort: np.ndarray | None = None, cohort_k: int = 10, mirror_average: bool = False,
                 gallery_match: str = "nearest", threshold_by_count=None) -> bytes:
    """An unsigned bundle (bytes).

    ``cohort``: float (M, D) unit embeddings of strangers by this embedding net (``board_path_eval.
    board_path_cohort``); the bundle then decides with metric "l2_cohort" (distance / the probe's ``cohort_k``-th
    nearest cohort distance < θ: θ is a ratio, chosen by ``wearface eval-heldout --cohort``).
    ``mirror_average``: the board embeds a face as the crop's and its mirror image's embeddings summed and
    renormalised (the manifest's ``mirror_average``; its own embedding space).  A cohort must be embedded so too.
    ``gallery_match``: the distance to an enrolled person, to their nearest embedding ("nearest") or to their mean
    embedding ("mean"); θ must be chosen for the same one (``wearface eval-heldout`` follows the bundle's).
    ``threshold_by_count``: θ for a person with 1, 2, ... enrolment embeddings, the last for more (None: θ for all).

    ``golden_inputs``: ``{"align": [uint8 (50, 50, 3), ...], "embed": [uint8 (112, 112, 3), ...]}``;
    None gives GOLDEN_PER_NET seeded noise images per net.  Their outputs are computed here by
    ``kernels.runtime`` (``firmware.bundle.run_net``) and stored for the board's self-test.
    ``created_at`` defaults to now (UTC, ISO 8601; pass one for a reproducible file).
    """
    if align_qnet.spec.output != "regression" or embed_qnet.spec.output != "embedding":
        raise BundleBuildError(f"expected an alignment (regression) net and an embedding net, found "
                               f"{align_qnet.spec.name} ({align_qnet.spec.output}) and "
                               f"{embed_qnet.spec.name} ({embed_qnet.spec.output})")
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise BundleBuildError(f"threshold must be a positive number, got {threshold!r}")
    if not compatible or not all(isinstance(c, str) and c for c in compatible):
        raise BundleBuildError(f"compatible must be a non-empty list of board families, got {compatible!r}")
    if not isinstance(rollback_counter, int) or not 0 <= rollback_counter < 1 << 32:
        raise BundleBuildError(f"rollback counter must be an int in 0..2^32-1, got {rollback_counter!r}")
    if gallery_match not in fmt.GALLERY_MATCHES:
        raise BundleBuildError(f"gallery_match must be one of {fmt.GALLERY_MATCHES}, got {gallery_match!r}")
    if threshold_by_count is not None and not (
            1 <= len(threshold_by_count) <= fmt.THRESHOLD_BY_COUNT_MAX
            and all(isinstance(t, (int, float)) and math.isfinite(t) and t > 0 for t in threshold_by_count)):
        raise BundleBuildError(f"threshold_by_count must be 1..{fmt.THRESHOLD_BY_COUNT_MAX} positive numbers, "
                               f"got {threshold_by_count!r:.80}")
    qnets = {"align": align_qnet, "embed": embed_qnet}
    if golden_inputs is None:
        rng = np.random.default_rng(0x60_1DE7)
        golden_inputs = {role: [rng.integers(0, 256, net.spec.input_shape, dtype=np.uint8)
                                for _ in range(GOLDEN_PER_NET)] for role, net in qnets.items()}
    table = _TensorTable()
    nets_json = {role: _net_json(role, net, table) for role, net in qnets.items()}
    golden = []
    from wearface.kernels.runtime import Int8Runtime

    runtimes = {role: Int8Runtime(net) for role, net in qnets.items()}
    for role, images in golden_inputs.items():
        if role not in qnets:
            raise BundleBuildError(f"golden inputs for unknown net {role!r} (expected {list(qnets)})")
        for i, image in enumerate(images):
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.shape != tuple(qnets[role].spec.input_shape):
                raise BundleBuildError(f"golden input {role}[{i}]: expected uint8 {qnets[role].spec.input_shape}, "
                                       f"found {image.dtype} {image.shape}")
            out_int8, out_float = fmt.run_net(qnets[role], image, runtimes[role])
            prefix = f"golden/{role}/{i}"
            golden.append({"net": role,
                           "input": table.add(f"{prefix}/input", image, "uint8"),
                           "output_int8": table.add(f"{prefix}/output_int8", out_int8, "int8"),
                           "output_float": table.add(f"{prefix}/output_float", out_float, "float32")})
    extra = {}
    if cohort is not None:
        cohort = np.asarray(cohort, np.float64)
        if cohort.ndim != 2 or not 1 <= cohort_k <= len(cohort) <= fmt.COHORT_MAX or not np.isfinite(cohort).all():
            raise BundleBuildError(f"cohort: expected finite (M, D) embeddings with 1 <= k = {cohort_k} <= M <= "
                                   f"{fmt.COHORT_MAX}, got shape {cohort.shape}")
        unit = cohort / np.maximum(np.linalg.norm(cohort, axis=1, keepdims=True), 1e-12)
        rows = np.clip(np.round(unit * fmt.COHORT_SCALE), -127, 127).astype(np.int8)
        extra["cohort"] = {"tensor": table.add("cohort", rows, "int8"), "k": int(cohort_k)}
        threshold_metric = "l2_cohort"
    if mirror_average:
        extra["mirror_average"] = True  # absent when false: bundles without it keep their bytes
    if gallery_match != fmt.GALLERY_MATCHES[0]:
        extra["gallery_match"] = gallery_match  # absent for the default, likewise
    if threshold_by_count is not None:
        extra["threshold_by_count"] = [float(t) for t in threshold_by_count]
    provenance = _jsonable(dict(provenance or {}))
    terms = list(data_terms or [])
    if "celeba" in json.dumps(provenance).lower() and CELEBA_TERMS not in terms:
        terms.append(CELEBA_TERMS)
    manifest = {
        "format": "wearface-bundle",
        "format_version": fmt.FORMAT_VERSION,
        "model_version": str(model_version),
        "rollback_counter": rollback_counter,
        "compatible": list(compatible),
        "threshold": float(threshold),
        "threshold_metric": threshold_metric,
        "embedding_space": fmt.embedding_space_id(embed_qnet, mirror_average),
        "created_at": created_at or utc_now(),
        "provenance": provenance,
        "data_terms": terms,
        "nets": nets_json,
        "golden": golden,
        # per layer, the digest of its response to a probe: the self-test then fails for a change of any weight
        "layer_golden": {role: layer_golden(net, role) for role, net in qnets.items()},
        **extra,
        "tensors": table.entries,
    }
    data = pack(manifest, table.section())
    fmt.read_bundle(data, "new bundle")  # the reader is the judge of what the writer made
    return data


def sign_bundle(data: bytes, private_key) -> bytes:
    """Sign a bundle (signed or not) with an Ed25519 private key (object or PEM path); returns new bytes.

    The structure and SHA-256 are checked first, so a damaged file is never signed.
    """
    if isinstance(private_key, (str, os.PathLike)):
        private_key = keylib.load_private_key(private_key)
    container = fmt.parse_container(data, "bundle to sign")
    public = keylib.public_raw(private_key)
    signature = private_key.sign(container.signed_message)
    trailer = struct.pack(fmt.TRAILER_FORMAT, fmt.TRAILER_MAGIC, fmt.FLAG_SIGNED, fmt.key_id(public),
                          container.sha256, signature)
    return bytes(data[: container.trailer_offset]) + trailer


# --- test bundles ------------------------------------------------------------------------------

def random_qnet(spec: nets.NetSpec, seed: int = 0) -> qn.QuantizedNet:
    """A random but well-scaled int8 net: ``kernels.ptq.random_quantized_net`` when it exists."""
    try:
        from wearface.kernels.ptq import random_quantized_net
    except ImportError:
        return _random_qnet(spec, seed)
    return random_quantized_net(spec, seed)


def _random_qnet(spec: nets.NetSpec, seed: int) -> qn.QuantizedNet:
    from wearface.kernels.quant import quantize_multiplier

    rng = np.random.default_rng(seed)
    layers = []
    in_scale, in_zp = nets.INPUT_SCALE, 0
    for row in nets.iter_counts(spec):
        layer = row.layer
        if isinstance(layer, nets.MaxPool):
            layers.append(qn.QMaxPool(layer))
            continue
        if isinstance(layer, nets.Flatten):
            layers.append(qn.QFlatten(layer))
            continue
        out_ch = row.out_shape[-1]
        if isinstance(layer, nets.Conv):
            fan_in = layer.kernel * layer.kernel * row.in_shape[2]
            wshape = (out_ch, layer.kernel, layer.kernel, row.in_shape[2])
        else:
            fan_in = row.in_shape[0]
            wshape = (out_ch, fan_in)
        weights = rng.integers(-127, 128, wshape, dtype=np.int8)
        out_scale = 0.05
        # outputs of about +-40 for inputs of about +-40: real multiplier ~ 1 / (73 sqrt(fan_in))
        real = rng.uniform(0.7, 1.3, out_ch) / (73.0 * math.sqrt(fan_in))
        mult_shift = [quantize_multiplier(r) for r in real]
        out_zp = -128 if layer.relu else 0
        layers.append((qn.QConv if isinstance(layer, nets.Conv) else qn.QAffine)(
            spec=layer, weights=weights,
            bias=rng.integers(-2000, 2000, out_ch).astype(np.int32),
            multiplier=np.array([m for m, _ in mult_shift], dtype=np.int32),
            shift=np.array([s for _, s in mult_shift], dtype=np.int32),
            input_zero_point=in_zp, output_zero_point=out_zp, output_scale=out_scale,
            act_min=out_zp if layer.relu else -128, act_max=127,
            weight_scale=(real * out_scale / in_scale).astype(np.float32),
        ))
        in_scale, in_zp = out_scale, out_zp
    return qn.QuantizedNet(spec=spec, layers=layers, output_scale=in_scale, output_zero_point=in_zp,
                           metadata={"random_seed": seed})


def build_test_bundle(seed: int = 0, key_path: str | os.PathLike | None = keylib.DEV_PRIVATE_KEY,
                      embed_spec: nets.NetSpec = nets.MODEL_A, threshold: float = 1.1,
                      compatible: list[str] | None = None, model_version: str = "test-0",
                      rollback_counter: int = 0, golden_per_net: int = 1, mirror_average: bool = False,
                      gallery_match: str = "nearest", threshold_by_count=None) -> bytes:
    """A small signed bundle of random nets for tests (``key_path=None``: unsigned).

    Deterministic for a given seed (``created_at`` fixed).  Trusted by the dev key
    (``keys/dev_ed25519.pub``) and, by default, compatible with every board family in boards/.
    """
    align = random_qnet(nets.ALIGN_NET, seed)
    embed = random_qnet(embed_spec, seed + 1)
    rng = np.random.default_rng(seed)
    golden = {role: [rng.integers(0, 256, spec.input_shape, dtype=np.uint8) for _ in range(golden_per_net)]
              for role, spec in (("align", nets.ALIGN_NET), ("embed", embed_spec))}
    data = build_bundle(align, embed, threshold, list(compatible or DEFAULT_COMPATIBLE), model_version,
                        rollback_counter, {"kind": "random test nets", "seed": seed}, golden,
                        created_at="2026-01-01T00:00:00+00:00", mirror_average=mirror_average,
                        gallery_match=gallery_match, threshold_by_count=threshold_by_count)
    return sign_bundle(data, key_path) if key_path is not None else data


def golden_inputs(align_qnet: qn.QuantizedNet, embed_qnet: qn.QuantizedNet, count: int, seed: int) -> dict:
    """The golden inputs of ``wearface bundle build``: ``count`` synthetic images per net (smooth noise in the
    face range, seeds ``seed + 7`` and ``seed + 8``), never crops of the shared data: a bundle is committed and
    shipped, and images derived from the data must not be."""
    from wearface.kernels.ptq import random_images

    return {role: random_images(net.spec.input_shape, count, seed + 7 + i)
            for i, (role, net) in enumerate((("align", align_qnet), ("embed", embed_qnet)))}


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and rename (no half-written bundles)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
