"""The one error family of ``wearface.kernels``.

Messages name the layer and state what was expected and what was found.
"""


class KernelError(Exception):
    """Root of every error raised on purpose by wearface.kernels (bad input, not a bug)."""


class ShapeError(KernelError):
    """A tensor has the wrong shape, dtype or channel count for the layer it is fed to."""


class QuantizationError(KernelError):
    """Quantization parameters are out of their documented range (multiplier, shift, zero point)."""


class NetSpecError(KernelError):
    """A layer list cannot be built or evaluated (unknown layer, spatial size shrinks to zero...)."""


class KernelPathError(KernelError):
    """A kernels path (``WEARFACE_KERNELS``) is unknown or cannot run on this CPU."""
