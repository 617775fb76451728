"""Parse a board file (``boards/*.toml``) into a frozen :class:`Board`.

Boards differ in data, not in code: everything the firmware needs to know about one board (serial line,
flash layout, camera, CPU, model, frame budget, detector settings, signing key, ``compatible`` family)
is in its TOML file.  Errors name the file, the dotted key, the expected type and what was found.

Must not import torch, OpenCV or numba (the host tools parse board files too).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import tomllib

from .errors import BoardFileError
from .images import DEFAULT_MAX_IMAGE_PIXELS

#: Architectures the firmware runs on.  "host" is the virtual board (whatever this machine is).
SUPPORTED_ARCHS = ("host", "aarch64")
#: 32-bit ARM is refused with this reason (numba publishes no 32-bit ARM wheels).
UNSUPPORTED_ARCHS = {
    "armv7": "32-bit ARM (armv7/Cortex-A7) is unsupported: numba has no 32-bit ARM wheels on the package index",
    "armhf": "32-bit ARM (armhf) is unsupported: numba has no 32-bit ARM wheels on the package index",
    "arm": "32-bit ARM is unsupported: numba has no 32-bit ARM wheels on the package index",
}
EMBEDDING_MODELS = ("A", "B", "C")
ED25519_PUBLIC_KEY_BYTES = 32


@dataclass(frozen=True)
class CpuConfig:
    """The board's processor.  ``arch`` "host" means this machine (virtual board)."""

    arch: str = "host"
    core: str = "host"
    dotprod: bool = False
    ghz: float = 0.0
    cores: int = 1
    #: sustained one-thread int8 multiply-accumulate rate of the board's kernels path, GMAC/s; predicts a net's
    #: latency (`wearface bundle inspect`).  0 = unknown.  Each board file says whether it is measured.
    int8_gmac_per_s: float = 0.0


@dataclass(frozen=True)
class EmulationConfig:
    """How to emulate the board with qemu-user (``qemu_cpu`` as ``QEMU_CPU`` and ``NUMBA_CPU_NAME``)."""

    qemu_cpu: str = ""


@dataclass(frozen=True)
class SerialConfig:
    """``device`` is a path (``/dev/ttyS0``), ``"pty"`` (the firmware opens a pseudo-terminal) or ``fd:N``."""

    device: str = "pty"
    baud: int = 115200


@dataclass(frozen=True)
class FlashConfig:
    """The flash layout.  File names are relative to ``root`` (a folder; ``--flash DIR`` replaces it)."""

    root: str = "flash"
    slot_a: str = "slot_a.wfb"
    slot_b: str = "slot_b.wfb"
    slot_table: str = "slots.json"
    gallery: str = "gallery.sqlite"
    log: str = "firmware.log"
    #: the largest bundle a slot accepts, bytes
    slot_size_bytes: int = 16 * 1024 * 1024
    log_max_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class CameraConfig:
    """``source``: a device index (int), a video file path, or ``"synthetic"`` (a scene made in code)."""

    source: Any = 0
    width: int = 640
    height: int = 480
    fps: float = 30.0
    #: a video file starts again at its end (a virtual camera never runs dry)
    loop: bool = True
    #: a video file is read no faster than its own frame rate, as a camera would deliver it
    pace: bool = True


@dataclass(frozen=True)
class DetectorConfig:
    """The face detector: ``kind`` "haar" (OpenCV's Haar cascade, ``cv2.CascadeClassifier.detectMultiScale``) or
    "blazeface" (MediaPipe's BlazeFace nets through OpenCV's DNN module, ``firmware/blazeface.py``)."""

    #: "haar" or "blazeface"
    kind: str = "haar"
    #: blazeface only: the net for whole frames ("full_range", "short_range" or both joined by "+") and the net for
    #: regions around known faces (``blazeface.NETS``; "" = the first frame net), and the score a box needs (0-1;
    #: 0 = the net's own, MediaPipe's graph option)
    net: str = "full_range"
    region_net: str = "short_range"
    #: blazeface only: the net run on the whole frame when the frame net finds nothing ("" = none): the short-range
    #: net finds faces that fill the frame (close-ups, tight photos), which the full-range net misses
    fallback_net: str = ""
    #: blazeface only: the whole frame is searched as this many overlapping squares along its longer side (1-4;
    #: ``blazeface.tile_boxes``): a wide frame's faces reach the net larger, at that many times the cost
    tiles: int = 1
    min_score: float = 0.0
    #: blazeface only, 0 = off: a frame net's box scoring at least this (0-1) but under its threshold is looked at
    #: again by the region net, on the region around it, and kept when that scores it at least ``confirm_score``:
    #: faces too small in a letterboxed frame for the frame net to be sure of (``blazeface.BlazeFaceDetector``)
    propose_score: float = 0.0
    confirm_score: float = 0.6
    cascade: str = "haarcascade_frontalface_default.xml"
    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size_px: int = 40
    #: frames are shrunk so their longer side is at most this before detection (0 = never)
    max_side_px: int = 640
    max_faces: int = 8
    #: the whole frame is searched once every this many frames (1 = every frame, today's policy); between, the
    #: tracks are followed by the alignment net (``[follow]``) and only regions are searched: around new and
    #: doubtful tracks, and where the picture changed outside the tracks.  A new face appears within this many
    #: frames (+ ``tracker.appear_after_hits`` - 1, its confirming detections, done on its region at once)
    every_frames: int = 1
    #: search the region where the frame changed (outside tracked faces) between full searches
    roi_on_change: bool = True
    #: a thumbnail cell (8x8 frame px) has changed when its mean grey moved by more than this (0-255) since the
    #: previous frame
    change_grey_levels: float = 18.0
    #: a changed region larger than this fraction of the frame (a camera pan, the light) waits for the next
    #: full search instead of being searched at once
    change_max_fraction: float = 0.35
    #: a frame where more than this fraction of the thumbnail's cells changed (by ``change_grey_levels``) since the
    #: previous frame is a cut (a new shot, or the wearer turned away): every track ends, since whoever is now where
    #: a track was is not its person, and the whole frame is searched.  0 = off
    cut_fraction: float = 0.0
    #: 0 = off; else a frame whose thumbnail (mean grey per 8x8 cell) differs from the last frame the loop worked
    #: on by at most this many grey levels (0-255) in every cell is "still": nothing is searched, followed or
    #: embedded in it, and the tracks keep their boxes and names.  Video converted from 24 to 30 fps repeats every
    #: 5th frame with only compression noise (2-7 levels on the test clip; a moving face: 9 and more)
    still_grey_levels: float = 0.0
    #: the grey frame before the cascade: "none", "hist" (global histogram equalisation) or "clahe" (local,
    #: contrast-limited); see ``detect.DetectorSettings``
    equalize: str = "none"
    #: 0 = off; else faces too large for the frame (close-ups) are also searched in the frame padded by this
    #: fraction of its shorter side (``detect.DetectorSettings.pad_fraction``; measured in docs/BENCHMARKS.md)
    pad_fraction: float = 0.0


@dataclass(frozen=True)
class EnrolmentConfig:
    """Limits on what a host may upload for enrolment (``firmware/images.py``)."""

    #: one uploaded image may have at most this many pixels (width x height), read from its PNG/JPEG header and
    #: refused before decoding: decoding costs 3 bytes a pixel and more for OpenCV's working copies
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    #: keep each enrolment's aligned 112x112 crop (lossless PNG, ~20-30 KB a face) so that a bundle with a new
    #: embedding space re-embeds the gallery by itself once confirmed; false: a new space needs re-enrolment
    keep_crops: bool = True
    #: the old space's embeddings are dropped after the new space has been confirmed at this many boots in a row
    #: (until then a rollback to the old slot finds them); 0 = never drop
    drop_old_space_after_boots: int = 3


@dataclass(frozen=True)
class BootConfig:
    """A pending slot gets ``trial_boots`` boots to run ``confirm_after_frames`` healthy frames."""

    trial_boots: int = 3
    confirm_after_frames: int = 30


@dataclass(frozen=True)
class TrackerConfig:
    """Tracking and re-embedding policy (see ``firmware/tracker.py``)."""

    iou_min: float = 0.3
    max_missed_frames: int = 8
    appear_after_hits: int = 2
    #: a track keeps being embedded until it has this many samples ...
    min_embeddings: int = 3
    #: ... then once every this many frames (0 = never again)
    reembed_every_frames: int = 30
    #: the mean of at most this many recent embeddings decides a track's name
    max_embeddings: int = 16
    #: 0: embed the neediest track every frame and more while the frame budget lasts; N > 0: at most N
    #: per frame whatever the time (events then do not depend on the machine's speed: emulated boards)
    max_embeds_per_frame: int = 0


@dataclass(frozen=True)
class FollowConfig:
    """Following faces between detections with the alignment net (``firmware/follow.py``).

    ``enabled``: follow (else a track's box changes only when the detector finds it, today's policy).
    The follower's "no face here" signals: the net's correction moved the window by more than ``max_shift``
    frame widths (it is trained on shifts up to 0.12); or the face's grey appearance in the corrected window
    correlates with its appearance at the last detection by less than ``min_similarity`` (normalised
    cross-correlation, -1..1); or the window's centre left the frame (the track ends).  A doubtful track keeps
    its last box and its region is searched by the detector in the next frame.
    """

    enabled: bool = False
    max_shift: float = 0.25
    min_similarity: float = 0.3
    #: a confirmed track the follower holds may go this many frames without a detection (the Haar cascade misses
    #: turned, blurred and dim faces the follower still sees); a search that misses it after that ends it
    max_undetected_frames: int = 30


@dataclass(frozen=True)
class StatsConfig:
    interval_s: float = 3.0


@dataclass(frozen=True)
class Board:
    """One board, as its TOML file describes it.  ``path`` is the file it came from."""

    name: str
    compatible: str
    model: str
    frame_budget_ms: float
    public_keys: tuple[bytes, ...]
    ram_mb: int = 0
    cpu: CpuConfig = field(default_factory=CpuConfig)
    emulation: EmulationConfig = field(default_factory=EmulationConfig)
    serial: SerialConfig = field(default_factory=SerialConfig)
    flash: FlashConfig = field(default_factory=FlashConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    enrolment: EnrolmentConfig = field(default_factory=EnrolmentConfig)
    boot: BootConfig = field(default_factory=BootConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    follow: FollowConfig = field(default_factory=FollowConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    notes: str = ""
    path: str = ""

    def flash_root(self, override: str | Path | None = None) -> Path:
        """The flash folder: ``override`` if given, else ``flash.root`` (relative to the board file's folder)."""
        if override is not None:
            return Path(override)
        root = Path(self.flash.root).expanduser()
        if not root.is_absolute() and self.path:
            root = Path(self.path).parent / root
        return root


# ---------------------------------------------------------------------------------------------- parsing

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "table", list: "array"}.get(
        type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def _check_type(path: str, key: str, value: Any, expected: Any) -> Any:
    """Return ``value`` if it has the ``expected`` type (int accepted for float), else raise."""
    if expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, expected):
        return value
    raise BoardFileError(path, key, f"expected {_TYPE_NAMES.get(expected, expected)}, found {_describe(value)}")


def _fill(cls, path: str, prefix: str, table: Mapping[str, Any]):
    """Build dataclass ``cls`` from a TOML ``table``; unknown keys and wrong types are errors."""
    if not isinstance(table, dict):
        raise BoardFileError(path, prefix, f"expected a table, found {_describe(table)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            raise BoardFileError(path, dotted, f"unknown key (known: {', '.join(sorted(fields))})")
        expected = fields[key].type
        expected = {"str": str, "int": int, "float": float, "bool": bool}.get(expected, expected)
        if expected == "Any":  # camera.source: int index or string
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise BoardFileError(path, dotted, f"expected a device index (integer) or a string, "
                                                   f"found {_describe(value)}")
            values[key] = value
        else:
            values[key] = _check_type(path, dotted, value, expected)
    return cls(**values)


def _positive(path: str, key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise BoardFileError(path, key, f"expected a {'non-negative' if allow_zero else 'positive'} number, "
                                        f"found {value!r}")


def _decode_key(path: str, key: str, text: Any) -> bytes:
    text = _check_type(path, key, text, str)
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BoardFileError(path, key, f"expected a base64 Ed25519 public key, found {_describe(text)}") from None
    if len(raw) != ED25519_PUBLIC_KEY_BYTES:
        raise BoardFileError(path, key, f"expected a {ED25519_PUBLIC_KEY_BYTES}-byte Ed25519 public key, "
                                        f"found {len(raw)} bytes")
    return raw


_SECTIONS = {
    "cpu": CpuConfig, "emulation": EmulationConfig, "serial": SerialConfig, "flash": FlashConfig,
    "camera": CameraConfig, "detector": DetectorConfig, "enrolment": EnrolmentConfig, "boot": BootConfig,
    "tracker": TrackerConfig, "follow": FollowConfig, "stats": StatsConfig,
}
_TOP = {"name": str, "compatible": str, "model": str, "frame_budget_ms": float, "ram_mb": int, "notes": str}
_REQUIRED = ("name", "compatible", "model", "frame_budget_ms")


def parse_board(text: str, path: str | Path = "<board>") -> Board:
    """Parse board TOML ``text``; ``path`` is only used in error messages and for relative flash roots."""
    path = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BoardFileError(path, "", f"not valid TOML: {exc}") from None
    values: dict[str, Any] = {"path": path}
    for key, value in data.items():
        if key in _SECTIONS:
            values[key] = _fill(_SECTIONS[key], path, key, value)
        elif key in _TOP:
            values[key] = _check_type(path, key, value, _TOP[key])
        elif key in ("public_key", "public_keys"):
            pass
        else:
            known = sorted([*_TOP, *_SECTIONS, "public_key", "public_keys"])
            raise BoardFileError(path, key, f"unknown key (known: {', '.join(known)})")
    for key in _REQUIRED:
        if key not in values:
            raise BoardFileError(path, key, f"missing (expected {_TYPE_NAMES[_TOP[key]]})")

    keys: list[bytes] = []
    if "public_key" in data:
        keys.append(_decode_key(path, "public_key", data["public_key"]))
    if "public_keys" in data:
        listed = data["public_keys"]
        if not isinstance(listed, list):
            raise BoardFileError(path, "public_keys", f"expected an array of strings, found {_describe(listed)}")
        keys += [_decode_key(path, f"public_keys[{i}]", k) for i, k in enumerate(listed)]
    if not keys and "public_keys" not in data:
        raise BoardFileError(path, "public_key", "missing (expected a base64 Ed25519 public key, or `public_keys = []` "
                                                 "for a board not yet provisioned: it refuses every bundle)")
    values["public_keys"] = tuple(keys)

    board = Board(**values)
    _validate(board)
    return board


def _validate(board: Board) -> None:
    path = board.path
    if not board.name.strip():
        raise BoardFileError(path, "name", "expected a non-empty string")
    if not board.compatible.strip():
        raise BoardFileError(path, "compatible", "expected a non-empty string (the board family bundles name)")
    if board.model not in EMBEDDING_MODELS:
        raise BoardFileError(path, "model", f"expected one of {', '.join(EMBEDDING_MODELS)}, found {board.model!r}")
    _positive(path, "frame_budget_ms", board.frame_budget_ms)
    _positive(path, "ram_mb", board.ram_mb, allow_zero=True)
    arch = board.cpu.arch
    if arch in UNSUPPORTED_ARCHS:
        raise BoardFileError(path, "cpu.arch", UNSUPPORTED_ARCHS[arch])
    if arch not in SUPPORTED_ARCHS:
        raise BoardFileError(path, "cpu.arch", f"expected one of {', '.join(SUPPORTED_ARCHS)}, found {arch!r}")
    if arch == "aarch64" and not board.emulation.qemu_cpu:
        raise BoardFileError(path, "emulation.qemu_cpu", "missing (an aarch64 board names the qemu CPU that "
                                                         "emulates it, e.g. \"cortex-a53\")")
    _positive(path, "cpu.cores", board.cpu.cores)
    _positive(path, "cpu.ghz", board.cpu.ghz, allow_zero=True)
    _positive(path, "serial.baud", board.serial.baud)
    for key in ("slot_a", "slot_b", "slot_table", "gallery", "log"):
        name = getattr(board.flash, key)
        if not name or "/" in name or name in (".", ".."):
            raise BoardFileError(path, f"flash.{key}", f"expected a plain file name inside flash.root, found {name!r}")
    names = [board.flash.slot_a, board.flash.slot_b, board.flash.slot_table, board.flash.gallery, board.flash.log]
    if len(set(names)) != len(names):
        raise BoardFileError(path, "flash", f"expected distinct file names, found {names}")
    _positive(path, "flash.slot_size_bytes", board.flash.slot_size_bytes)
    _positive(path, "flash.log_max_bytes", board.flash.log_max_bytes)
    if isinstance(board.camera.source, int) and board.camera.source < 0:
        raise BoardFileError(path, "camera.source", f"expected a device index >= 0, found {board.camera.source}")
    if isinstance(board.camera.source, str) and not board.camera.source:
        raise BoardFileError(path, "camera.source", "expected a device index, a video path or \"synthetic\"")
    _positive(path, "camera.width", board.camera.width)
    _positive(path, "camera.height", board.camera.height)
    _positive(path, "camera.fps", board.camera.fps)
    if board.detector.kind not in ("haar", "blazeface"):
        raise BoardFileError(path, "detector.kind", f"expected \"haar\" or \"blazeface\", found {board.detector.kind!r}")
    blaze_nets = ("full_range", "short_range")  # firmware/blazeface.py NETS (this module imports no OpenCV)
    if not board.detector.net or any(n not in blaze_nets for n in board.detector.net.split("+")):
        raise BoardFileError(path, "detector.net",
                             f"expected one of {blaze_nets} or two joined by \"+\", found {board.detector.net!r}")
    if board.detector.region_net not in blaze_nets + ("",):
        raise BoardFileError(path, "detector.region_net",
                             f"expected one of {blaze_nets} or \"\", found {board.detector.region_net!r}")
    if board.detector.fallback_net not in blaze_nets + ("",):
        raise BoardFileError(path, "detector.fallback_net",
                             f"expected one of {blaze_nets} or \"\", found {board.detector.fallback_net!r}")
    if not 1 <= board.detector.tiles <= 4:  # blazeface.MAX_TILES
        raise BoardFileError(path, "detector.tiles", f"expected an integer in 1..4, found {board.detector.tiles}")
    if not 0.0 <= board.detector.min_score < 1.0:
        raise BoardFileError(path, "detector.min_score", f"expected a number in [0, 1), found {board.detector.min_score}")
    if not 0.0 <= board.detector.propose_score < 1.0:
        raise BoardFileError(path, "detector.propose_score",
                             f"expected a number in [0, 1) (0: off), found {board.detector.propose_score}")
    if not 0.0 < board.detector.confirm_score < 1.0:
        raise BoardFileError(path, "detector.confirm_score",
                             f"expected a number in (0, 1), found {board.detector.confirm_score}")
    if board.detector.scale_factor <= 1.0:
        raise BoardFileError(path, "detector.scale_factor", f"expected a number > 1, found {board.detector.scale_factor}")
    _positive(path, "detector.min_neighbors", board.detector.min_neighbors, allow_zero=True)
    _positive(path, "detector.min_size_px", board.detector.min_size_px)
    _positive(path, "detector.max_side_px", board.detector.max_side_px, allow_zero=True)
    _positive(path, "detector.max_faces", board.detector.max_faces)
    _positive(path, "detector.every_frames", board.detector.every_frames)
    _positive(path, "detector.change_grey_levels", board.detector.change_grey_levels)
    if not 0.0 <= board.detector.still_grey_levels < 255.0:
        raise BoardFileError(path, "detector.still_grey_levels",
                             f"expected a number in [0, 255) (0: off), found {board.detector.still_grey_levels}")
    if not 0.0 <= board.detector.cut_fraction < 1.0:
        raise BoardFileError(path, "detector.cut_fraction",
                             f"expected a number in [0, 1) (0: off), found {board.detector.cut_fraction}")
    if not 0.0 < board.detector.change_max_fraction <= 1.0:
        raise BoardFileError(path, "detector.change_max_fraction",
                             f"expected a number in (0, 1], found {board.detector.change_max_fraction}")
    if board.detector.equalize not in ("none", "hist", "clahe"):
        raise BoardFileError(path, "detector.equalize",
                             f"expected \"none\", \"hist\" or \"clahe\", found {board.detector.equalize!r}")
    if not 0.0 <= board.detector.pad_fraction <= 1.0:
        raise BoardFileError(path, "detector.pad_fraction",
                             f"expected a number in [0, 1], found {board.detector.pad_fraction}")
    if board.detector.every_frames > 1 and not board.follow.enabled:
        raise BoardFileError(path, "detector.every_frames", "expected 1 unless [follow] enabled = true (between "
                                                            "full searches only followed tracks move)")
    _positive(path, "follow.max_shift", board.follow.max_shift)
    _positive(path, "follow.max_undetected_frames", board.follow.max_undetected_frames, allow_zero=True)
    if not -1.0 <= board.follow.min_similarity < 1.0:
        raise BoardFileError(path, "follow.min_similarity",
                             f"expected a number in [-1, 1), found {board.follow.min_similarity}")
    _positive(path, "enrolment.max_image_pixels", board.enrolment.max_image_pixels)
    _positive(path, "enrolment.drop_old_space_after_boots", board.enrolment.drop_old_space_after_boots, allow_zero=True)
    _positive(path, "boot.trial_boots", board.boot.trial_boots)
    _positive(path, "boot.confirm_after_frames", board.boot.confirm_after_frames)
    if not 0.0 < board.tracker.iou_min <= 1.0:
        raise BoardFileError(path, "tracker.iou_min", f"expected a number in (0, 1], found {board.tracker.iou_min}")
    _positive(path, "tracker.max_missed_frames", board.tracker.max_missed_frames, allow_zero=True)
    _positive(path, "tracker.appear_after_hits", board.tracker.appear_after_hits)
    _positive(path, "tracker.min_embeddings", board.tracker.min_embeddings)
    _positive(path, "tracker.reembed_every_frames", board.tracker.reembed_every_frames, allow_zero=True)
    _positive(path, "tracker.max_embeddings", board.tracker.max_embeddings)
    _positive(path, "tracker.max_embeds_per_frame", board.tracker.max_embeds_per_frame, allow_zero=True)
    _positive(path, "stats.interval_s", board.stats.interval_s)


def load_board(path: str | Path) -> Board:
    """Read and parse one board file.  Raises :class:`BoardFileError` (never OSError)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BoardFileError(path, "", "no such board file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BoardFileError(path, "", f"cannot read: {exc}") from None
    return parse_board(text, path)


def boards_dir() -> Path:
    """The repository's ``boards/`` folder (beside the package sources in an editable install)."""
    return Path(__file__).resolve().parent.parent / "boards"
