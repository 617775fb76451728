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
    """The arm64 userland under qemu-user cannot be prepared or started (see ``host_tools/emulate.py``)."""

    exit_code = 6


class QemuMissingError(EmulationError):
    """``qemu-aarch64-static`` (Debian/Ubuntu package ``qemu-user-static``) is not installed."""


class NotAarch64BoardError(EmulationError):
    """The board file names a CPU that qemu-aarch64 cannot emulate (not ``arch = "aarch64"``)."""


class UserlandBuildError(EmulationError):
    """apt, dpkg-deb or pip failed while building the arm64 userland; the message quotes the tool's output."""
