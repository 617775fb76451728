"""The one error family of ``wearface.firmware``.

The firmware answers bad input with a protocol status and keeps running; these exceptions are
raised inside it and by the shared parsers (board files, bundles, protocol frames).
"""


class FirmwareError(Exception):
    """Root of every error raised on purpose by wearface.firmware."""
