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
