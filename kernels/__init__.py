"""Board-side int8 inference: the seed's networks as data, the quantization spec, Numba kernels.

Imports numpy and numba only (never torch, never OpenCV).  Module map:

* ``nets.py`` -- the layer lists (align, A, B, C); ``qnet.py`` -- the int8 net contract (and
  ``dequantize_output``, the one int8 -> float mapping).
* ``quant.py`` -- multiplier/shift and the requantization primitive (TFLite double rounding).
* ``reference.py`` -- plain-numpy integer reference of every op (the specification);
  ``float_ref.py`` -- float reference and float forward; ``ptq.py`` -- post-training quantization.
* ``tiles/`` -- the board's kernels: one register-tile path per instruction set (``x86_vnni``,
  ``x86_avx2``, ``arm_dot``, ``arm_neon``, ``portable``) run by one driver, chosen once per process
  (``tiles.selected_path()``, ``$WEARFACE_KERNELS``); see ``docs/kernels.md``.
* ``runtime.py`` -- ``Int8Runtime`` (backends ``tiles`` and ``reference``) / ``run_int8_dequantized``;
  ``validate.py`` -- input and parameter checks.

See ``docs/quantization.md``, ``docs/kernels.md`` and ``docs/nets.md``.
"""
