"""The one error family of ``wearface.host_tools``.

Only ``cli.main`` turns these (and the kernels' and firmware's roots) into one line and an exit code.
"""


class HostToolError(Exception):
    """Root of every error raised on purpose by the host tools: bad input or a board that misbehaves."""

    #: process exit status the CLI uses for this error (subclasses override)
    exit_code = 1


class DataError(HostToolError):
    """A dataset, pairs file, image or path given by the user is missing or malformed."""

    exit_code = 3


class EmulationError(HostToolError):
    """The arm64 userland under qemu-user cannot be prepared or started (see ``host_tools/device/emulate.py``)."""

    exit_code = 6


class QemuMissingError(EmulationError):
    """``qemu-aarch64-static`` (Debian/Ubuntu package ``qemu-user-static``) is not installed."""


class NotAarch64BoardError(EmulationError):
    """The board file names a CPU that qemu-aarch64 cannot emulate (not ``arch = "aarch64"``)."""


class UserlandBuildError(EmulationError):
    """apt, dpkg-deb or pip failed while building the arm64 userland; the message quotes the tool's output."""


# --- serial link, flash, monitor, enroll (host_tools/device/link.py and neighbours): exit codes 10..17 ------------
class LinkError(HostToolError):
    """The serial port cannot be opened, or the board does not answer within the timeout and retries."""

    exit_code = 10


class BoardError(HostToolError):
    """The board answered a request with a non-OK status; ``status`` (protocol.Status) and ``payload`` say why."""

    exit_code = 11

    def __init__(self, message: str, status=None, payload: dict | None = None):
        super().__init__(message)
        self.status = status
        self.payload = payload or {}


class NoFaceError(BoardError):
    """Enrolment: the board found no face in an image."""

    exit_code = 12


class SeveralFacesError(BoardError):
    """Enrolment: the board found more than one face in an image."""

    exit_code = 13


class UnknownNameError(BoardError):
    """Gallery: no person of that name is enrolled."""

    exit_code = 14


class FlashRejectedError(BoardError):
    """Flash: the board's own verification of the uploaded bundle failed (hash, signature, compatibility)."""

    exit_code = 15


class RollbackError(HostToolError):
    """Flash: the board tried the new slot and rolled back to the previous one."""

    exit_code = 16


class ConfirmTimeoutError(HostToolError):
    """Flash: the board did not confirm nor roll back the new slot within the timeout."""

    exit_code = 17


class KeyFileError(HostToolError):
    """A signing key file is missing, unreadable or not an Ed25519 key (host_tools/bundle/keys.py)."""

    exit_code = 4


class BundleBuildError(HostToolError):
    """The nets or settings given to the bundle builder cannot make a valid bundle."""

    exit_code = 5


class QuantizeError(HostToolError):
    """A checkpoint or calibration set cannot be quantized (host_tools/train/quantize.py, tflite_export.py)."""

    exit_code = 7
