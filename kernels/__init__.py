"""Board-side int8 inference: the seed's networks as data, the quantization spec, Numba kernels.

Imports numpy and numba only (never torch, never OpenCV).
"""
