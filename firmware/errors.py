"""The one error family of ``wearface.firmware``.

The firmware answers bad input with a protocol status and keeps running; these exceptions are
raised inside it and by the shared parsers (board files, bundles, protocol frames).
"""
from enum import IntEnum as _IntEnum


class FirmwareError(Exception):
    """Root of every error raised on purpose by wearface.firmware."""


# --- model bundles (firmware/bundle.py) -------------------------------------------------------


class BundleReason(_IntEnum):
    """Why a model bundle was rejected (``BundleError.reason``); the value is stable, never reused."""

    BAD_MAGIC = 1
    UNSUPPORTED_VERSION = 2
    TRUNCATED = 3
    BAD_HEADER = 4
    HASH_MISMATCH = 5
    BAD_SIGNATURE = 6
    UNKNOWN_KEY = 7
    BAD_MANIFEST = 8
    INCOMPATIBLE_BOARD = 9
    ROLLBACK = 10
    GOLDEN_MISMATCH = 11


class BundleError(FirmwareError):
    """A model bundle is malformed, unauthentic or unsuitable for this board.

    ``reason`` is a ``BundleReason``; ``offset`` the byte where it was found (or None).  (The host CLI
    maps the reason to its exit status: ``host_tools/cli.py`` ``exit_code``.)
    """

    def __init__(self, reason: BundleReason, message: str, offset: int | None = None):
        super().__init__(message)
        self.reason = BundleReason(reason)
        self.offset = offset


class BoardFileError(FirmwareError):
    """A board file (``boards/*.toml``) is missing, not TOML, or has a key of the wrong type.

    The message names the file, the dotted key, the expected type and what was found.
    """

    def __init__(self, path, key: str, message: str):
        self.path = str(path)
        self.key = key
        super().__init__(f"{self.path}: {key + ': ' if key else ''}{message}")


class ReasonError(FirmwareError):
    """A firmware error with a machine-readable ``reason`` (snake_case) beside its message.

    The serial server maps ``reason`` to a protocol status; the host prints the message.
    """

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


class SlotError(ReasonError):
    """A slot write, slot table or flash request was refused (e.g. ``no_flash_in_progress``,
    ``hash_mismatch``, ``slot_busy``, ``offset_mismatch``, ``size_exceeded``, ``bundle_invalid``)."""


class GalleryError(ReasonError):
    """A gallery request was refused (``unknown_name``, ``bad_name``, ``bad_embedding``, ``bad_crop``, ``bad_cohort``,
    ``bad_match``, ``bad_threshold``)."""


class EnrollError(ReasonError):
    """Enrolment failed (``no_face``, ``several_faces``, ``no_model`` in recovery, ``timeout``)."""


class CameraError(ReasonError):
    """The camera could not be opened (``camera_unavailable``, ``bad_source``)."""


class NotRunningError(ReasonError):
    """The request needs a loaded model, and the board is in the recovery state (``recovery``)."""


class ImageError(ReasonError):
    """An uploaded enrolment image was refused before or while decoding it: ``bad_image`` (not PNG/JPEG, a
    broken header, undecodable) or ``image_too_large`` (its header's width x height exceeds the board's
    ``enrolment.max_image_pixels``)."""


class RequestError(FirmwareError):
    """A request the serial server answers with ``status`` (a ``protocol.Status``) and ``extra`` keys beside
    ``error``: an argument missing, of the wrong type, out of range or too large (BAD_REQUEST), or a chunk
    whose own CRC does not match (CHUNK_CRC).  The message names the argument, what was expected and what
    was found."""

    def __init__(self, status, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.extra = extra


class DetectError(FirmwareError):
    """Face detection got an input it cannot use (wrong dtype/shape, empty frame) or no cascade."""


class AlignError(FirmwareError):
    """Alignment geometry got an input it cannot use: a bad frame, window or correction."""
