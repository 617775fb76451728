"""The model bundle format (``.wfb``): read it, check its structure and hash, verify its signature.

One job: turn the bytes of a bundle into two ``QuantizedNet``s and their settings, or say exactly
why not.  Shared by the board (boot, slot install) and the host (``wearface bundle inspect|verify``);
``wearface.host_tools.bundle.bundle_build`` writes the format.  Board-side: imports numpy, cryptography and
``wearface.kernels`` only; never torch or OpenCV.

Layout (all integers little-endian; offsets are from the start of the file)::

    header    HEADER_FORMAT, HEADER_SIZE bytes: magic, format version, the offsets and sizes below
    manifest  UTF-8 JSON (see below), then zero padding to TENSOR_ALIGN
    tensors   raw little-endian arrays, each at a multiple of TENSOR_ALIGN from the section start,
              zero padding between them
    trailer   TRAILER_FORMAT, TRAILER_SIZE bytes: trailer magic, flags, key id, SHA-256 of every
              byte before the trailer, Ed25519 signature of SIGNATURE_DOMAIN + that SHA-256

The key id is the first KEY_ID_SIZE bytes of SHA-256(raw 32-byte public key).  An unsigned bundle
(``host_tools.bundle.bundle_build.build_bundle``) has flag bit 0 clear and a zero key id and signature.

Manifest (JSON object): ``format_version``, ``model_version`` (str), ``rollback_counter`` (int >= 0),
``compatible`` (board families, e.g. ``["wearface,virtual"]``), ``threshold`` (θ, float) and
``threshold_metric`` (``"l2"``: Euclidean distance of L2-normalised embeddings; a pair matches when
distance < θ; ``"l2_cohort"``: distance / the probe's ``k``-th nearest distance to a cohort of strangers < θ,
the cohort given by ``cohort``: ``{"tensor": name, "k": int}``, an int8 (M, D) tensor of unit embeddings x
``COHORT_SCALE``, the embedding net's own, of faces no wearer enrols),
``threshold_by_count`` (optional list of 1..16 positive numbers: θ for a person with 1, 2, ... usable enrolment
embeddings, the last entry for more; absent: ``threshold`` for everyone),
``gallery_match`` (optional, default ``"nearest"``: the distance to an enrolled person is the distance to the
nearest of their embeddings; ``"mean"``: to their template, the L2-normalised mean of their embeddings: θ is
chosen for one of the two, so the bundle says which),
``mirror_average`` (optional bool, default false: a face's embedding is the L2-normalised sum of the
embedding net's outputs for its crop and the crop's left-right mirror image; test-time flip averaging),
``embedding_space`` (``embedding_space_id`` of the embedding net and ``mirror_average``: it changes exactly
when the embedding net's int8 weights or quantization, or the mirror averaging, change; the gallery re-enrols
people stored under another space), ``created_at`` (ISO 8601 UTC), ``provenance`` (free JSON: checkpoints, data,
commit), ``data_terms`` (list of str, e.g. CelebA's non-commercial research terms), ``nets``
(``"align"`` and ``"embed"``: spec name, input shape and normalisation, input/output quantization,
the layer list of ``kernels.nets`` with each conv/affine layer's scalar quantization parameters and
the names of its tensors), ``golden`` (input image tensors with their exact int8 and float outputs),
``layer_golden`` (optional; per net, per conv/affine layer: the SHA-256 of its response to a layer probe, see
``firmware/golden.py``: every weight counts; bundles built before it lack it and get the end-to-end vectors only)
and ``tensors`` (name, dtype, shape, offset in the tensor section, size in bytes).

API (stable; the firmware uses it)::

    read_bundle(data, name="bundle") -> Bundle        # structure + hash + manifest, no signature
    verify_bundle(data, trusted_public_keys, board_compatible, min_rollback=0, self_test=True,
                  name="bundle") -> Bundle            # everything, in imgtool's order
    embedding_space_id(qnet, mirror_average=False) -> str
    run_golden(bundle) -> None                        # the self-test alone

Both raise ``BundleError`` (``wearface.firmware.errors``) whose ``.reason`` is a ``BundleReason``
(BAD_MAGIC, UNSUPPORTED_VERSION, TRUNCATED, BAD_HEADER, HASH_MISMATCH, BAD_SIGNATURE, UNKNOWN_KEY,
BAD_MANIFEST, INCOMPATIBLE_BOARD, ROLLBACK, GOLDEN_MISMATCH) and whose message names the file, the
place, expected vs found.  No other exception escapes for any input bytes.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import asdict, dataclass, field

import numpy as np

from wearface.kernels import nets, validate
from wearface.kernels import qnet as qn
from wearface.kernels.errors import KernelError

from .errors import BundleError, BundleReason
from .gallery import GALLERY_MATCHES  # manifest ``gallery_match``; the first: absent

MAGIC = b"\x89WFB"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
#: magic, format version, header size, manifest offset, manifest size, tensors offset,
#: tensors size, trailer offset, reserved (0)
HEADER_FORMAT = "<4sHHIIIIII"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)
TENSOR_ALIGN = 16

TRAILER_MAGIC = b"WFBT"
KEY_ID_SIZE = 8
SHA256_SIZE = 32
SIGNATURE_SIZE = 64
#: trailer magic, flags, key id, SHA-256, Ed25519 signature
TRAILER_FORMAT = f"<4sI{KEY_ID_SIZE}s{SHA256_SIZE}s{SIGNATURE_SIZE}s"
TRAILER_SIZE = struct.calcsize(TRAILER_FORMAT)
FLAG_SIGNED = 1
SIGNATURE_DOMAIN = b"wearface-bundle-v1\x00"

#: the largest bundle any reader accepts; a corrupt size field cannot make it allocate more
MAX_BUNDLE_BYTES = 64 << 20
NET_ROLES = ("align", "embed")
DTYPES = {"int8": np.dtype("i1"), "uint8": np.dtype("u1"), "int32": np.dtype("<i4"), "float32": np.dtype("<f4")}
LAYER_TYPES = {cls.__name__: cls for cls in (nets.Conv, nets.MaxPool, nets.Flatten, nets.Affine)}
THRESHOLD_METRICS = ("l2", "l2_cohort")
#: the longest ``threshold_by_count`` table
THRESHOLD_BY_COUNT_MAX = 16
#: a cohort tensor holds round(unit embedding x COHORT_SCALE) as int8; at most COHORT_MAX rows
COHORT_SCALE = 127.0
COHORT_MAX = 65536
#: absolute tolerance on golden float outputs (the int8 outputs must match exactly)
GOLDEN_FLOAT_ATOL = 1e-5


def align_up(n: int, alignment: int = TENSOR_ALIGN) -> int:
    return -(-n // alignment) * alignment


def key_id(public_key_raw: bytes) -> bytes:
    """The KEY_ID_SIZE-byte id of a raw 32-byte Ed25519 public key, as stored in the trailer."""
    return hashlib.sha256(bytes(public_key_raw)).digest()[:KEY_ID_SIZE]


@dataclass
class Golden:
    """One self-test vector: ``image`` uint8 (H, W, 3) RGB, the net's exact int8 output and its float output."""

    net: str
    image: np.ndarray
    output_int8: np.ndarray
    output_float: np.ndarray


@dataclass
class Bundle:
    """A parsed bundle.  ``sha256`` is the digest in the trailer (hex), ``key_id`` hex or None if unsigned."""

    manifest: dict
    align_net: qn.QuantizedNet
    embed_net: qn.QuantizedNet
    threshold: float
    threshold_metric: str
    model_version: str
    rollback_counter: int
    embedding_space: str
    compatible: list
    size_bytes: int
    sha256: str
    key_id: str | None
    golden: list = field(default_factory=list)
    #: {"align": [...], "embed": [...]} layer-probe digests (``golden.layer_golden``), or {} in older bundles
    layer_golden: dict = field(default_factory=dict)
    #: ``threshold_metric`` "l2_cohort": float32 (M, D) unit rows and the k of the probe's k-th nearest; else None, 0
    cohort: np.ndarray | None = None
    cohort_k: int = 0
    #: the embedding averages the crop's and its mirror image's (manifest ``mirror_average``)
    mirror_average: bool = False
    #: the distance to an enrolled person: to their nearest embedding ("nearest") or to their mean ("mean")
    gallery_match: str = "nearest"
    #: θ for a person with 1, 2, ... enrolment embeddings (the last for more); () = ``threshold`` for everyone
    threshold_by_count: tuple = ()

    @property
    def signed(self) -> bool:
        return self.key_id is not None

    @property
    def nets(self) -> dict:
        return {"align": self.align_net, "embed": self.embed_net}

    @property
    def rule(self) -> str:
        """The bundle's decision rule in words (``decision_rule``)."""
        rule = decision_rule(0 if self.cohort is None else len(self.cohort), self.cohort_k,
                             gallery_match=self.gallery_match)
        if self.threshold_by_count:
            rule += ("; θ by the person's enrolment images: "
                     + ", ".join(f"{i + 1}{'+' if i + 1 == len(self.threshold_by_count) else ''}: {t:.4f}"
                                 for i, t in enumerate(self.threshold_by_count)))
        return rule


def decision_rule(cohort_size: int, k: int, cohort: str = "its cohort", gallery_match: str = "nearest") -> str:
    """A decision rule in words, the one wording every tool prints: "distance < θ" without a cohort (0), else the
    cohort-normalised rule of metric "l2_cohort" over ``cohort`` ("its cohort", "training identities", ...);
    with ``gallery_match`` "mean" the distance is to each person's mean embedding."""
    distance = "distance" if gallery_match == "nearest" else "distance to the person's mean embedding"
    if not cohort_size:
        return f"{distance} < θ"
    return f"{distance} / the probe's k-th nearest of {cohort} of {cohort_size} < θ, k = {k}"


@dataclass
class Container:
    """The outer structure of a bundle: where its sections are, and its trailer fields."""

    data: bytes
    name: str
    version: int
    manifest_offset: int
    manifest_size: int
    tensors_offset: int
    tensors_size: int
    trailer_offset: int
    flags: int
    key_id: bytes
    sha256: bytes
    signature: bytes

    @property
    def signed_message(self) -> bytes:
        return SIGNATURE_DOMAIN + self.sha256


def _fail(reason: BundleReason, name: str, what: str, offset: int | None = None):
    raise BundleError(reason, f"{name}: {what}", offset)


# --- container: header, sizes, trailer, hash ---------------------------------------------------

def parse_container(data: bytes, name: str = "bundle") -> Container:
    """Check the header, the section bounds and the SHA-256 in the trailer; parse nothing else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"bundle data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        if data[: len(MAGIC)] != MAGIC[: len(data)]:
            _fail(BundleReason.BAD_MAGIC, name, f"bad magic {data[:len(MAGIC)].hex()} (expected {MAGIC.hex()})", 0)
        _fail(BundleReason.TRUNCATED, name,
              f"header truncated at byte {len(data)} (need {HEADER_SIZE - len(data)} more)", len(data))
    (magic, version, header_size, manifest_offset, manifest_size, tensors_offset, tensors_size,
     trailer_offset, reserved) = struct.unpack_from(HEADER_FORMAT, data, 0)
    if magic != MAGIC:
        _fail(BundleReason.BAD_MAGIC, name, f"bad magic {magic.hex()} at byte 0 (expected {MAGIC.hex()})", 0)
    if version not in SUPPORTED_VERSIONS:
        _fail(BundleReason.UNSUPPORTED_VERSION, name,
              f"format version {version} (this reader supports {list(SUPPORTED_VERSIONS)})", 4)
    expected = {
        "header size": (header_size, HEADER_SIZE, 6),
        "manifest offset": (manifest_offset, HEADER_SIZE, 8),
        "tensors offset": (tensors_offset, align_up(HEADER_SIZE + manifest_size), 16),
        "trailer offset": (trailer_offset, align_up(HEADER_SIZE + manifest_size) + tensors_size, 28),
        "reserved word": (reserved, 0, 32),
    }
    for what, (found, want, at) in expected.items():
        if found != want:
            _fail(BundleReason.BAD_HEADER, name, f"header {what} is {found} at byte {at} (expected {want})", at)
    total = trailer_offset + TRAILER_SIZE
    if total > MAX_BUNDLE_BYTES:
        _fail(BundleReason.BAD_HEADER, name, f"header declares {total} bytes (limit {MAX_BUNDLE_BYTES})", 8)
    if len(data) < total:
        section = ("manifest" if len(data) < tensors_offset else
                   "tensor section" if len(data) < trailer_offset else "trailer")
        _fail(BundleReason.TRUNCATED, name,
              f"{section} truncated at byte {len(data)} (need {total - len(data)} more)", len(data))
    if len(data) > total:
        _fail(BundleReason.BAD_HEADER, name,
              f"{len(data) - total} unexpected bytes after the trailer at byte {total} (header says {total} bytes)",
              total)
    tmagic, flags, kid, digest, signature = struct.unpack_from(TRAILER_FORMAT, data, trailer_offset)
    if tmagic != TRAILER_MAGIC:
        _fail(BundleReason.BAD_HEADER, name,
              f"bad trailer magic {tmagic.hex()} at byte {trailer_offset} (expected {TRAILER_MAGIC.hex()})",
              trailer_offset)
    if flags & ~FLAG_SIGNED:
        _fail(BundleReason.BAD_HEADER, name, f"unknown trailer flags {flags:#x} at byte {trailer_offset + 4}",
              trailer_offset + 4)
    actual = hashlib.sha256(memoryview(data)[:trailer_offset]).digest()
    if actual != digest:
        _fail(BundleReason.HASH_MISMATCH, name,
              f"SHA-256 of bytes 0..{trailer_offset} is {actual.hex()[:16]}... (trailer says {digest.hex()[:16]}...)",
              trailer_offset + 16)
    return Container(data, name, version, manifest_offset, manifest_size, tensors_offset, tensors_size,
                     trailer_offset, flags, kid, digest, signature)


def check_signature(container: Container, trusted_public_keys) -> bytes:
    """Ed25519 check of the trailer against the trusted keys; returns the raw public key that signed."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    name = container.name
    at = container.trailer_offset
    if not container.flags & FLAG_SIGNED:
        _fail(BundleReason.BAD_SIGNATURE, name, f"bundle is unsigned (trailer at byte {at}); sign it first", at)
    keys = {key_id(k): k for k in (_raw_public_key(k) for k in trusted_public_keys)}
    if not keys:
        _fail(BundleReason.UNKNOWN_KEY, name, "this board trusts no signing key (not provisioned): write its own "
              "public key into its board file with `wearface keys provision BOARD.toml --key KEY.pub`", at)
    if container.key_id not in keys:
        _fail(BundleReason.UNKNOWN_KEY, name,
              f"signed by key {container.key_id.hex()}, which is not trusted here "
              f"(trusted: {', '.join(k.hex() for k in keys) or 'none'})", at + 8)
    public = keys[container.key_id]
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(container.signature, container.signed_message)
    except InvalidSignature:
        _fail(BundleReason.BAD_SIGNATURE, name,
              f"Ed25519 signature at byte {at + 48} does not match key {container.key_id.hex()}", at + 48)
    return public


def _raw_public_key(key) -> bytes:
    """Accept raw 32 bytes or their base64 text (as in boards/*.toml and keys/*.pub)."""
    import base64
    import binascii

    if isinstance(key, str):
        try:
            key = base64.b64decode(key.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"trusted public key {key!r} is not base64") from None
    key = bytes(key)
    if len(key) != 32:
        raise ValueError(f"a raw Ed25519 public key is 32 bytes, got {len(key)}")
    return key


# --- manifest and tensors ----------------------------------------------------------------------

class _ManifestReader:
    """Typed access to the manifest that turns every defect into BAD_MANIFEST naming the place."""

    def __init__(self, container: Container):
        self.c = container
        self.name = container.name
        self.tensors: dict[str, np.ndarray] = {}

    def fail(self, what: str):
        _fail(BundleReason.BAD_MANIFEST, self.name, what, self.c.manifest_offset)

    def get(self, obj, key, kind, where):
        if not isinstance(obj, dict) or key not in obj:
            self.fail(f"manifest {where}: missing {key!r}")
        value = obj[key]
        ok = isinstance(value, kind) and not (kind in (int, (int, float)) and isinstance(value, bool))
        if not ok:
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            self.fail(f"manifest {where}.{key}: expected {names}, found {type(value).__name__} {value!r:.40}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(f"manifest {where}.{key}: expected a finite number, found {value}")
        return value

    def load_json(self) -> dict:
        c = self.c
        raw = c.data[c.manifest_offset: c.manifest_offset + c.manifest_size]
        padding = c.data[c.manifest_offset + c.manifest_size: c.tensors_offset]
        if padding.strip(b"\x00"):
            self.fail(f"non-zero padding after the manifest at byte {c.manifest_offset + c.manifest_size}")
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            self.fail(f"manifest at byte {c.manifest_offset} is not UTF-8 JSON ({exc})")
        if not isinstance(manifest, dict):
            self.fail(f"manifest is a JSON {type(manifest).__name__}, expected an object")
        return manifest

    def load_tensors(self, manifest: dict) -> None:
        c = self.c
        entries = self.get(manifest, "tensors", list, "")
        for i, entry in enumerate(entries):
            where = f"tensors[{i}]"
            tname = self.get(entry, "name", str, where)
            dtype_name = self.get(entry, "dtype", str, where)
            shape = self.get(entry, "shape", list, where)
            offset = self.get(entry, "offset", int, where)
            size = self.get(entry, "size_bytes", int, where)
            if dtype_name not in DTYPES:
                self.fail(f"tensor {tname!r}: dtype {dtype_name!r} (expected one of {sorted(DTYPES)})")
            if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 31 for d in shape):
                self.fail(f"tensor {tname!r}: shape {shape!r:.60} is not a list of sizes")
            dtype = DTYPES[dtype_name]
            want = dtype.itemsize * math.prod(shape)
            if size != want:
                self.fail(f"tensor {tname!r}: size_bytes {size} (shape {shape} of {dtype_name} needs {want})")
            if offset < 0 or offset % TENSOR_ALIGN or offset + size > c.tensors_size:
                self.fail(f"tensor {tname!r}: bytes {offset}..{offset + size} of the tensor section are outside "
                          f"0..{c.tensors_size} or not aligned to {TENSOR_ALIGN}")
            if tname in self.tensors:
                self.fail(f"tensor {tname!r} appears twice")
            start = c.tensors_offset + offset
            array = np.frombuffer(c.data, dtype=dtype, count=math.prod(shape), offset=start)
            # a private, writable, native-endian copy: the runtime's kernels want plain arrays
            self.tensors[tname] = array.astype(dtype.newbyteorder("="), copy=True).reshape(shape)

    def tensor(self, ref, where, dtype: str, shape: tuple) -> np.ndarray:
        if not isinstance(ref, str) or ref not in self.tensors:
            self.fail(f"{where}: tensor {ref!r:.60} is not in the tensor table")
        array = self.tensors[ref]
        if array.dtype != DTYPES[dtype].newbyteorder("=") or array.shape != tuple(shape):
            self.fail(f"{where}: tensor {ref!r} is {array.dtype} {array.shape} (expected {dtype} {tuple(shape)})")
        return array

    def cohort(self, manifest: dict, embed: qn.QuantizedNet) -> tuple[np.ndarray, int]:
        """The ``cohort`` of an "l2_cohort" bundle: (float32 (M, D) unit rows, k)."""
        spec = self.get(manifest, "cohort", dict, "")
        k = self.int_in(spec, "k", 1, COHORT_MAX, "cohort")
        ref = self.get(spec, "tensor", str, "cohort")
        if ref not in self.tensors:
            self.fail(f"manifest cohort.tensor: {ref!r:.60} is not in the tensor table")
        raw, dim = self.tensors[ref], int(nets.output_shape(embed.spec)[-1])
        if raw.dtype != np.int8 or raw.ndim != 2 or raw.shape[1] != dim or not k <= raw.shape[0] <= COHORT_MAX:
            self.fail(f"manifest cohort: tensor {ref!r} is {raw.dtype} {raw.shape} (expected int8 (M, {dim}) with "
                      f"{k} <= M <= {COHORT_MAX})")
        rows = raw.astype(np.float32) / COHORT_SCALE
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        if not (norms > 0.5).all():  # a unit vector x 127, rounded, keeps a norm near 1
            self.fail(f"manifest cohort: tensor {ref!r} row {int(np.argmin(norms))} is not a unit embedding")
        return rows / norms, k

    def int_in(self, obj, key, lo, hi, where) -> int:
        value = self.get(obj, key, int, where)
        if not lo <= value <= hi:
            self.fail(f"manifest {where}.{key} = {value} (expected {lo}..{hi})")
        return value

    def positive_float(self, obj, key, where) -> float:
        value = float(self.get(obj, key, (int, float), where))
        if not value > 0:
            self.fail(f"manifest {where}.{key} = {value} (expected > 0)")
        return value

    def layer(self, entry, where):
        kind = self.get(entry, "type", str, where)
        if kind not in LAYER_TYPES:
            self.fail(f"manifest {where}.type = {kind!r} (expected one of {sorted(LAYER_TYPES)})")
        cls = LAYER_TYPES[kind]
        fields = {k: v for k, v in entry.items() if k not in ("type", "quant")}
        try:
            layer = cls(**fields)
        except TypeError as exc:
            self.fail(f"manifest {where}: bad {kind} fields ({exc})")
        for fname, fvalue in asdict(layer).items():
            bad_int = isinstance(fvalue, bool) or not isinstance(fvalue, int) or not 0 < fvalue < 1 << 16
            if (fname == "name" and not isinstance(fvalue, str)) or \
               (fname in ("relu", "ceil") and not isinstance(fvalue, bool)) or \
               (fname == "padding" and (isinstance(fvalue, bool) or not isinstance(fvalue, int)
                                        or not 0 <= fvalue < 1 << 8)) or \
               (fname not in ("name", "relu", "ceil", "padding") and bad_int):
                self.fail(f"manifest {where}.{fname} = {fvalue!r:.40} is out of range")
        return layer

    def net(self, manifest: dict, role: str) -> qn.QuantizedNet:
        where = f"nets.{role}"
        entry = self.get(self.get(manifest, "nets", dict, ""), role, dict, "nets")
        spec_name = self.get(entry, "spec", str, where)
        output = self.get(entry, "output", str, where)
        input_shape = tuple(self.get(entry, "input_shape", list, where))
        if len(input_shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 4096
                                            for d in input_shape) or input_shape[2] != 3:
            self.fail(f"manifest {where}.input_shape = {list(input_shape)!r:.40} (expected [H, W, 3])")
        if output not in ("embedding", "regression"):
            self.fail(f"manifest {where}.output = {output!r} (expected 'embedding' or 'regression')")
        layer_entries = self.get(entry, "layers", list, where)
        layers = tuple(self.layer(le, f"{where}.layers[{i}]") for i, le in enumerate(layer_entries))
        known = nets.NETS.get(spec_name)
        if known is not None:
            if known.layers != layers or tuple(known.input_shape) != input_shape or known.output != output:
                self.fail(f"manifest {where}: layers of net {spec_name!r} differ from kernels.nets "
                          f"(a bundle carries the layer lists of kernels.nets unchanged)")
            spec = known
        else:
            spec = nets.NetSpec(spec_name, input_shape, layers, output, 0.0, 0.0)
        try:
            counts = list(nets.iter_counts(spec))
        except Exception as exc:  # NetSpecError, or arithmetic on odd sizes
            self.fail(f"manifest {where}: layer list does not fit input {input_shape} ({exc})")
        if not counts:
            self.fail(f"manifest {where}: net has no layers")
        qlayers = []
        for i, row in enumerate(counts):
            lwhere = f"{where}.layers[{i}] ({row.layer.name})"
            if isinstance(row.layer, nets.MaxPool):
                qlayers.append(qn.QMaxPool(row.layer))
            elif isinstance(row.layer, nets.Flatten):
                qlayers.append(qn.QFlatten(row.layer))
            else:
                qlayers.append(self.quantized_layer(layer_entries[i], row, lwhere))
        scale = self.positive_float(entry, "input_scale", where)
        out_scale = self.positive_float(entry, "output_scale", where)
        metadata = entry.get("metadata", {})
        if not isinstance(metadata, dict):
            self.fail(f"manifest {where}.metadata: expected an object")
        return qn.QuantizedNet(
            spec=spec, layers=qlayers, input_scale=scale,
            input_zero_point=self.int_in(entry, "input_zero_point", -128, 127, where),
            output_scale=out_scale,
            output_zero_point=self.int_in(entry, "output_zero_point", -128, 127, where),
            metadata=metadata,
        )

    def quantized_layer(self, entry, row: nets.LayerCount, where):
        quant = self.get(entry, "quant", dict, where)
        out_ch = row.out_shape[-1]
        if isinstance(row.layer, nets.Conv):
            wshape = (out_ch, row.layer.kernel, row.layer.kernel, row.in_shape[2])
            cls = qn.QConv
        else:
            wshape = (out_ch, row.in_shape[0])
            cls = qn.QAffine
        weights = self.tensor(quant.get("weights"), f"{where}.weights", "int8", wshape)
        bias = self.tensor(quant.get("bias"), f"{where}.bias", "int32", (out_ch,))
        multiplier = self.tensor(quant.get("multiplier"), f"{where}.multiplier", "int32", (out_ch,))
        shift = self.tensor(quant.get("shift"), f"{where}.shift", "int32", (out_ch,))
        weight_scale = None
        if quant.get("weight_scale") is not None:
            weight_scale = self.tensor(quant["weight_scale"], f"{where}.weight_scale", "float32", (out_ch,))
        if np.any((multiplier != 0) & (multiplier < 1 << 30)):
            self.fail(f"{where}: a multiplier is outside [2^30, 2^31) and not 0")
        if np.any((shift < -31) | (shift > 30)):
            self.fail(f"{where}: a shift is outside [-31, 30]")
        if np.any(weights == -128):
            self.fail(f"{where}: weights must be in [-127, 127] (symmetric), found -128")
        act_min = self.int_in(quant, "act_min", -128, 127, where)
        act_max = self.int_in(quant, "act_max", -128, 127, where)
        if act_min > act_max:
            self.fail(f"{where}: act_min {act_min} > act_max {act_max}")
        return cls(
            spec=row.layer, weights=weights, bias=bias, multiplier=multiplier, shift=shift,
            input_zero_point=self.int_in(quant, "input_zero_point", -128, 127, where),
            output_zero_point=self.int_in(quant, "output_zero_point", -128, 127, where),
            output_scale=self.positive_float(quant, "output_scale", where),
            act_min=act_min, act_max=act_max, weight_scale=weight_scale,
        )

    def layer_golden(self, manifest: dict) -> dict:
        """The optional ``layer_golden`` object, its structure checked (the digests are checked by the self-test)."""
        if "layer_golden" not in manifest:
            return {}
        table = self.get(manifest, "layer_golden", dict, "")
        if sorted(table) != sorted(NET_ROLES):
            self.fail(f"manifest layer_golden: expected the nets {list(NET_ROLES)}, found {sorted(table)!r:.60}")
        out = {}
        for role in NET_ROLES:
            entries = self.get(table, role, list, "layer_golden")
            for i, entry in enumerate(entries):
                where = f"layer_golden.{role}[{i}]"
                self.get(entry, "layer", str, where)
                self.get(entry, "index", int, where)
                shape = self.get(entry, "probe_shape", list, where)
                if not shape or not all(type(v) is int and 0 < v <= 4096 for v in shape):
                    self.fail(f"manifest {where}.probe_shape: expected positive sizes, found {shape!r:.60}")
                digest = self.get(entry, "sha256", str, where)
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    self.fail(f"manifest {where}.sha256: expected 64 hex digits, found {digest!r:.70}")
            out[role] = entries
        return out

    def golden(self, manifest: dict, qnets: dict) -> list:
        vectors = []
        for i, entry in enumerate(self.get(manifest, "golden", list, "")):
            where = f"golden[{i}]"
            role = self.get(entry, "net", str, where)
            if role not in qnets:
                self.fail(f"manifest {where}.net = {role!r} (expected one of {list(qnets)})")
            net = qnets[role]
            out_shape = nets.output_shape(net.spec)
            vectors.append(Golden(
                role,
                self.tensor(entry.get("input"), f"{where}.input", "uint8", net.spec.input_shape),
                self.tensor(entry.get("output_int8"), f"{where}.output_int8", "int8", out_shape),
                self.tensor(entry.get("output_float"), f"{where}.output_float", "float32", out_shape),
            ))
        return vectors


def parse_manifest(container: Container) -> Bundle:
    """Parse and cross-check the manifest and tensors of a container whose hash was checked."""
    r = _ManifestReader(container)
    manifest = r.load_json()
    version = r.get(manifest, "format_version", int, "")
    if version != container.version:
        r.fail(f"manifest format_version {version} differs from the header's {container.version}")
    r.load_tensors(manifest)
    qnets = {role: r.net(manifest, role) for role in NET_ROLES}
    for role, net in qnets.items():
        try:
            validate.check_qnet(net)
        except KernelError as exc:
            r.fail(f"manifest nets.{role}: {exc}")
    if qnets["embed"].spec.output != "embedding" or qnets["align"].spec.output != "regression":
        r.fail("manifest nets: 'embed' must be an embedding net and 'align' a regression net")
    golden = r.golden(manifest, qnets)
    layer_golden = r.layer_golden(manifest)
    compatible = r.get(manifest, "compatible", list, "")
    if not compatible or not all(isinstance(s, str) and s for s in compatible):
        r.fail(f"manifest compatible = {compatible!r:.60} (expected a non-empty list of board families)")
    metric = r.get(manifest, "threshold_metric", str, "")
    if metric not in THRESHOLD_METRICS:
        r.fail(f"manifest threshold_metric = {metric!r} (expected one of {THRESHOLD_METRICS})")
    cohort, cohort_k = r.cohort(manifest, qnets["embed"]) if metric == "l2_cohort" else (None, 0)
    mirror_average = r.get(manifest, "mirror_average", bool, "") if "mirror_average" in manifest else False
    gallery_match = r.get(manifest, "gallery_match", str, "") if "gallery_match" in manifest else GALLERY_MATCHES[0]
    if gallery_match not in GALLERY_MATCHES:
        r.fail(f"manifest gallery_match = {gallery_match!r:.40} (expected one of {GALLERY_MATCHES})")
    by_count = r.get(manifest, "threshold_by_count", list, "") if "threshold_by_count" in manifest else []
    if "threshold_by_count" in manifest and not 1 <= len(by_count) <= THRESHOLD_BY_COUNT_MAX:
        r.fail(f"manifest threshold_by_count: {len(by_count)} entries (expected 1..{THRESHOLD_BY_COUNT_MAX})")
    for i, t in enumerate(by_count):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not t > 0:
            r.fail(f"manifest threshold_by_count[{i}] = {t!r:.40} (expected a positive number)")
    by_count = tuple(float(t) for t in by_count)
    space = r.get(manifest, "embedding_space", str, "")
    actual_space = embedding_space_id(qnets["embed"], mirror_average)
    if space != actual_space:
        r.fail(f"manifest embedding_space {space!r:.40} does not match the embedding net ({actual_space})")
    return Bundle(
        manifest=manifest,
        align_net=qnets["align"],
        embed_net=qnets["embed"],
        threshold=float(r.positive_float(manifest, "threshold", "")),
        threshold_metric=metric,
        model_version=r.get(manifest, "model_version", str, ""),
        rollback_counter=r.int_in(manifest, "rollback_counter", 0, (1 << 32) - 1, ""),
        embedding_space=space,
        compatible=list(compatible),
        size_bytes=len(container.data),
        sha256=container.sha256.hex(),
        key_id=container.key_id.hex() if container.flags & FLAG_SIGNED else None,
        golden=golden,
        layer_golden=layer_golden,
        cohort=cohort,
        cohort_k=cohort_k,
        mirror_average=mirror_average,
        gallery_match=gallery_match,
        threshold_by_count=by_count,
    )


def embedding_space_id(qnet: qn.QuantizedNet, mirror_average: bool = False) -> str:
    """16 hex digits of SHA-256 over an int8 net's layer list, quantization parameters and weights, and whether
    the embedding averages the mirror image's (``mirror_average``; without it the id is the one bundles had before).

    Two bundles share an embedding space exactly when they compute the same embedding bit for bit, so embeddings
    stored under one space stay comparable.
    """
    h = hashlib.sha256()
    if mirror_average:
        h.update(b"mirror_average\0")
    h.update(repr((qnet.spec.name, tuple(qnet.spec.input_shape), qnet.spec.layers, float(qnet.input_scale),
                   int(qnet.input_zero_point), float(qnet.output_scale), int(qnet.output_zero_point))).encode())
    for layer in qnet.layers:
        if isinstance(layer, (qn.QConv, qn.QAffine)):
            h.update(repr((layer.spec.name, int(layer.input_zero_point), int(layer.output_zero_point),
                           float(layer.output_scale), int(layer.act_min), int(layer.act_max))).encode())
            for array, dtype in ((layer.weights, "i1"), (layer.bias, "<i4"), (layer.multiplier, "<i4"),
                                 (layer.shift, "<i4")):
                h.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return h.hexdigest()[:16]


# --- the self-test -----------------------------------------------------------------------------

def run_net(qnet: qn.QuantizedNet, image: np.ndarray, runtime=None) -> tuple[np.ndarray, np.ndarray]:
    """Run one uint8 (H, W, 3) image through the int8 runtime: (int8 output, float32 output).

    The float output is the int8 output dequantized with the net's output scale and zero point,
    and L2-normalised for an embedding net (``kernels.qnet.dequantize_output``).  ``runtime``: an
    ``Int8Runtime`` of ``qnet`` to reuse (built here when None).
    """
    from wearface.kernels.runtime import Int8Runtime

    runtime = runtime if runtime is not None else Int8Runtime(qnet)
    out_int8 = np.asarray(runtime.run_int8(np.asarray(image)), dtype=np.int8)
    return out_int8, qn.dequantize_output(qnet, out_int8)


def run_golden(bundle: Bundle, name: str = "bundle") -> None:
    """The self-test: every layer probe (``golden.check_layer_golden``: a changed weight anywhere fails it), then
    every golden vector through the int8 runtime; GOLDEN_MISMATCH on any difference."""
    from .golden import check_layer_golden

    for role, entries in bundle.layer_golden.items():
        check_layer_golden(bundle.nets[role], role, entries, name)
    runtimes: dict = {}
    for i, g in enumerate(bundle.golden):
        net = bundle.nets[g.net]
        try:
            if g.net not in runtimes:
                from wearface.kernels.runtime import Int8Runtime

                runtimes[g.net] = Int8Runtime(net)
            out_int8, out_float = run_net(net, g.image, runtimes[g.net])
        except BundleError:
            raise
        except Exception as exc:  # a runtime that cannot run this net is a failed self-test, not a crash
            _fail(BundleReason.GOLDEN_MISMATCH, name, f"golden[{i}] ({g.net}): the int8 runtime failed: {exc!r}")
        if out_int8.shape != g.output_int8.shape or not np.array_equal(out_int8, g.output_int8):
            diff = np.flatnonzero(out_int8.reshape(-1) != g.output_int8.reshape(-1)) if \
                out_int8.shape == g.output_int8.shape else np.array([0])
            j = int(diff[0])
            _fail(BundleReason.GOLDEN_MISMATCH, name,
                  f"golden[{i}] ({g.net}): int8 output differs in {diff.size} of {g.output_int8.size} values; "
                  f"first at index {j}: expected {int(g.output_int8.reshape(-1)[j])}, "
                  f"found {int(out_int8.reshape(-1)[j]) if out_int8.size > j else 'nothing'}")
        err = float(np.max(np.abs(out_float - g.output_float))) if out_float.shape == g.output_float.shape else np.inf
        if not err <= GOLDEN_FLOAT_ATOL:
            _fail(BundleReason.GOLDEN_MISMATCH, name,
                  f"golden[{i}] ({g.net}): float output differs by {err:.3g} (allowed {GOLDEN_FLOAT_ATOL})")


# --- entry points ------------------------------------------------------------------------------

def read_bundle(data: bytes, name: str = "bundle") -> Bundle:
    """Parse a bundle, checking its structure and SHA-256 (not its signature, board or self-test)."""
    return parse_manifest(parse_container(data, name))


def verify_bundle(data: bytes, trusted_public_keys, board_compatible: str, min_rollback: int = 0,
                  self_test: bool = True, name: str = "bundle") -> Bundle:
    """Everything a board checks before it trusts a model, in this order: structure, SHA-256,
    signature by a trusted key (raw 32 bytes or base64 text), manifest, ``board_compatible`` in the
    bundle's ``compatible`` list, rollback counter >= ``min_rollback``, then the golden vectors
    through the int8 runtime (``self_test``).  The manifest is parsed only after the signature holds.
    """
    container = parse_container(data, name)
    check_signature(container, trusted_public_keys)
    bundle = parse_manifest(container)
    if board_compatible not in bundle.compatible:
        _fail(BundleReason.INCOMPATIBLE_BOARD, name,
              f"built for {bundle.compatible}, this board is {board_compatible!r}")
    if bundle.rollback_counter < min_rollback:
        _fail(BundleReason.ROLLBACK, name,
              f"rollback counter {bundle.rollback_counter} is older than this board's minimum {min_rollback}")
    if self_test:
        run_golden(bundle, name)
    return bundle
