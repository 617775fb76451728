"""Build a bundle's bytes the same on any machine: every float thread pool held to one thread meanwhile.

A bundle's int8 weights come from float sums (``kernels.float_ref``'s matrix products, via OpenBLAS, feed the
calibration ranges) and its cohort from the board path (OpenCV's DNN module runs the detector).  Those libraries
split a sum across their threads, and the order of a float sum changes its last bits: measured, the same
checkpoint quantized with OpenBLAS on 1 and on 2 threads gives different int8 weights from the 7th layer of model A
on (docs/RELIABILITY.md).  One thread each makes ``bundle rebuild`` reproduce the bytes whatever the core count.
"""
from __future__ import annotations

import contextlib

import cv2


@contextlib.contextmanager
def one_thread():
    """Hold OpenBLAS/OpenMP (threadpoolctl) and OpenCV to one thread; restore them after.

    torch only loads a checkpoint and folds its BatchNorm (element-wise), so its threads change no bit."""
    from threadpoolctl import threadpool_limits

    cv_threads = cv2.getNumThreads()
    try:
        with threadpool_limits(limits=1):
            cv2.setNumThreads(1)
            yield
    finally:
        cv2.setNumThreads(cv_threads)
