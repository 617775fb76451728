"""The one error family of ``wearface.firmware``.

The firmware answers bad input with a protocol status and keeps running; these exceptions are
raised inside it and by the shared parsers (board files, bundles, protocol frames).
"""


class FirmwareError(Exception):
    """Root of every error raised on purpose by wearface.firmware."""


# --- model bundles (firmware/bundle.py) -------------------------------------------------------
from enum import IntEnum as _IntEnum


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

    ``reason`` is a ``BundleReason``; ``offset`` the byte where it was found (or None).  The CLI
    exits with ``exit_code`` = 20 + reason, so each reason has its own status (21..31).
    """

    def __init__(self, reason: BundleReason, message: str, offset: int | None = None):
        super().__init__(message)
        self.reason = BundleReason(reason)
        self.offset = offset

    @property
    def exit_code(self) -> int:
        return 20 + int(self.reason)
