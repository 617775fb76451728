"""A bundle build holds every float thread pool to one thread, so its bytes do not follow the core count."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from wearface.host_tools.bundle.one_thread import one_thread
from wearface.kernels import float_ref, nets, ptq

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> set:
    return {pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"}


def test_one_thread_holds_blas_and_opencv_to_one_thread_and_restores_them():
    with threadpoolctl.threadpool_limits(limits=2):
        cv2.setNumThreads(2)
        with one_thread():
            assert _blas_threads() == {1} and cv2.getNumThreads() == 1
        assert _blas_threads() == {2} and cv2.getNumThreads() == 2


def test_the_calibration_sums_are_the_same_whatever_the_threads_outside():
    # model A's float trace feeds the calibration ranges; with OpenBLAS on 2 threads its matrix products round
    # differently from 1 thread (measured on the shipped checkpoint: int8 weights differ from the 7th layer on)
    spec = nets.get_net("A")
    weights = ptq.random_float_weights(spec, seed=3)
    image = ptq.random_images(spec.input_shape, 1, seed=4)[0]
    traces = []
    for outside in (1, 2):
        with threadpoolctl.threadpool_limits(limits=outside), one_thread():
            traces.append(float_ref.forward_trace(spec, weights, image))
    for layer, (one, two) in enumerate(zip(*traces)):
        np.testing.assert_array_equal(one, two, err_msg=f"layer {layer}")
