"""Board-side int8 inference: the seed's networks as data, the quantization spec, Numba kernels.

Imports numpy and numba only (never torch, never OpenCV).  Module map:

* ``nets.py`` -- the layer lists (align, A, B, C); ``qnet.py`` -- the int8 net contract.
* ``quant.py`` -- multiplier/shift and the requantization primitive (TFLite double rounding).
* ``reference.py`` -- plain-numpy integer reference of every op (the specification);
  ``float_ref.py`` -- float reference and float forward; ``ptq.py`` -- post-training quantization.
* ``tiles/`` -- the default: one register-tile path per instruction set (``x86_vnni``, ``arm_dot``,
  ``portable``), chosen once per process (``tiles.selected_path()``, ``$WEARFACE_KERNELS``); see
  ``docs/kernels.md``.
* ``int_gemm.py`` (the portable path), ``exact_gemm.py``, ``conv.py``/``affine.py``/``pool.py`` -- the Numba
  kernels of the three fast backends; ``plans.py`` -- their buffers and steps;
  ``runtime.py`` -- ``Int8Runtime`` / ``run_int8``; ``validate.py`` -- input and parameter checks.

See ``docs/quantization.md``, ``docs/kernels.md`` and ``docs/nets.md``.
"""
