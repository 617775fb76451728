"""The instruction-set tile paths (``kernels/tiles``): bit-exact with the integer reference, and selected safely.

Every path this CPU has is checked (``tiles.available_paths()``; ``portable`` always), on hypothesis-drawn
shapes that hit the tiles' edges: K not a multiple of 4 or 64, pixel tails (not a multiple of the 4-pixel
tile), channel tails and several channel blocks (not a multiple of 16/32), odd pool windows, extreme zero
points and multipliers, saturation.  Asking for a path the CPU lacks runs in a subprocess, so that even an
abort inside LLVM could not take pytest down.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wearface.kernels import nets, ptq, reference, runtime, tiles
from wearface.kernels.errors import KernelError, KernelPathError
from wearface.kernels.tiles import features

from .qbuild import tiny_conv_net

PATHS = tiles.available_paths()


def _check_paths(qnet, image):
    want = reference.forward_trace(qnet, image)
    for path in PATHS:
        rt = runtime.Int8Runtime(qnet, "tiles", path)
        for (name, got), w in zip(rt.trace(image), want):
            np.testing.assert_array_equal(got, w, err_msg=f"{path} {name}")
        np.testing.assert_array_equal(rt.run_int8(image), want[-1], err_msg=f"{path} fused")


def test_portable_is_always_available_and_last():
    assert PATHS[-1] == "portable"
    assert set(PATHS) <= set(tiles.PATHS)
    assert tiles.selected_path() in PATHS


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 11), w=st.integers(1, 11), cin=st.integers(1, 70), cout=st.integers(1, 70),
    kernel=st.sampled_from([1, 2, 3, 5]), stride=st.integers(1, 3), padding=st.integers(0, 3),
    relu=st.booleans(), zp_mid=st.integers(-128, 127), zp_out=st.integers(-128, 127),
    log_mult=st.floats(-7.0, 1.0), pool=st.sampled_from([None, False, True]),
    pool_window=st.sampled_from([(2, 2), (2, 2), (3, 2), (2, 1)]), cccp=st.sampled_from([None, 3, 33]),
    affine=st.sampled_from([None, 2, 37]), seed=st.integers(0, 2**32 - 1),
)
def test_every_path_equals_reference_on_drawn_shapes(h, w, cin, cout, kernel, stride, padding, relu, zp_mid,
                                                     zp_out, log_mult, pool, pool_window, cccp, affine, seed):
    assume(kernel <= h + 2 * padding and kernel <= w + 2 * padding)
    oh = (h + 2 * padding - kernel) // stride + 1
    ow = (w + 2 * padding - kernel) // stride + 1
    pool_spec = None
    if pool is not None:
        # 2x2/2 is fused into the tile (the 4 pixels are the window); 3x3/2 and 2x2/1 run as separate pool ops
        size, pstride = pool_window
        assume(pool or (oh >= size and ow >= size))
        pool_spec = nets.MaxPool("pool", size, pstride, ceil=pool)
    rng = np.random.default_rng(seed)
    if relu:
        zp_out = min(zp_out, 100)
    qnet = tiny_conv_net(rng, h, w, cin, cout, kernel, stride, padding, relu, zp_mid, zp_out, 10.0**log_mult,
                         pool=pool_spec, cccp=cccp, affine=affine)
    _check_paths(qnet, rng.integers(0, 256, size=(h, w, cin), dtype=np.uint8))


@pytest.mark.parametrize("zp_mid", [-128, 127])
@pytest.mark.parametrize("pixel", [0, 255])
def test_extremes_saturate_identically(zp_mid, pixel):
    # weights all +-127, inputs at the ends of the range, zero points at the ends, a multiplier that
    # saturates every output (and one that rounds everything to zero in the cccp): the int32 sums are
    # near their bound and the clamp decides the result.
    rng = np.random.default_rng(5)
    qnet = tiny_conv_net(rng, 9, 7, 67, 45, 3, 1, 1, False, zp_mid, -128, 8.0,
                         pool=nets.MaxPool("pool", 2, 2, ceil=True), cccp=40)
    for q in qnet.layers:
        if hasattr(q, "weights"):
            q.weights[...] = np.where(rng.random(q.weights.shape) < 0.5, -127, 127).astype(np.int8)
    image = np.full((9, 7, 67), pixel, np.uint8)
    image[::2, ::3] = 255 - pixel
    _check_paths(qnet, image)


def test_long_k_and_a_4096_input_affine():
    # K = 3*3*130 = 1170 (not a multiple of 4 or 64), 2 channel blocks + tail; an affine over 4096 inputs
    rng = np.random.default_rng(3)
    qnet = tiny_conv_net(rng, 6, 5, 130, 70, 3, 1, 1, True, -3, -128, 1e-4, affine=5,
                         pool=nets.MaxPool("pool", 2, 2, ceil=False))
    _check_paths(qnet, rng.integers(0, 256, size=(6, 5, 130), dtype=np.uint8))
    from wearface.kernels.qnet import QFlatten, QuantizedNet

    from .qbuild import qaffine

    spec = nets.NetSpec("fc", (4, 4, 256), (nets.Flatten("f"), nets.Affine("fc", 5, relu=False)), "regression", 1, 1)
    q = QuantizedNet(spec, [QFlatten(spec.layers[0]), qaffine(rng, spec.layers[1], 4096, 0, 0, 1e-5)])
    _check_paths(q, rng.integers(0, 256, size=(4, 4, 256), dtype=np.uint8))


@pytest.mark.parametrize("name", ["align", "A", "B"])
def test_whole_nets_on_every_path(random_qnets, name):
    qnet = random_qnets.get(name) or ptq.random_quantized_net(nets.get_net(name), seed=11)
    _check_paths(qnet, ptq.random_images(qnet.spec.input_shape, 1, 7)[0])


def test_runtime_reports_its_path(random_qnets):
    rt = runtime.Int8Runtime(random_qnets["align"])
    assert rt.backend == "tiles" and rt.path == tiles.selected_path()
    assert runtime.Int8Runtime(random_qnets["align"], "reference").path is None
    with pytest.raises(KernelError, match="needs backend 'tiles'"):
        runtime.Int8Runtime(random_qnets["align"], "reference", "portable")


def test_unknown_path_name_is_the_packages_error():
    with pytest.raises(KernelPathError, match=r"unknown kernels path 'avx9'"):
        tiles.require("avx9")


def test_numba_target_override_without_the_features_disables_the_x86_paths(monkeypatch):
    monkeypatch.setenv("NUMBA_CPU_NAME", "generic")
    monkeypatch.delenv("NUMBA_CPU_FEATURES", raising=False)
    assert features.x86_vnni_reason() is not None
    assert features.x86_avx2_reason() is not None
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+avx512f,+avx512bw,+avx512vnni")
    reason = features.x86_vnni_reason()
    assert reason is None or "lacks" in reason or "not x86_64" in reason


SELECT = """
import json, numpy as np
try:
    from wearface.kernels import nets, ptq, tiles
    from wearface.kernels.runtime import Int8Runtime
    rt = Int8Runtime(ptq.random_quantized_net(nets.ALIGN_NET, 5))
    rt.run_int8(np.zeros(nets.ALIGN_NET.input_shape, np.uint8))
    print(json.dumps({"path": rt.path, "selected": tiles.selected_path()}))
except Exception as exc:
    from wearface.kernels.errors import KernelPathError
    print(json.dumps({"error": type(exc).__name__, "path_error": isinstance(exc, KernelPathError),
                      "message": str(exc)}))
"""


def _select(forced: str) -> dict:
    env = dict(os.environ, WEARFACE_KERNELS=forced)
    done = subprocess.run([sys.executable, "-c", SELECT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"WEARFACE_KERNELS={forced}: rc {done.returncode}\n{done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("path", [p for p in tiles.PATHS if p not in PATHS] or ["none-missing"])
def test_forcing_a_path_the_cpu_lacks_is_the_packages_error(path):
    if path == "none-missing":
        pytest.skip("this CPU has every tile path")
    report = _select(path)
    assert report.get("path_error") is True, report
    assert f"kernels path {path!r} is not available on this CPU" in report["message"], report


def test_forcing_each_available_path_runs_it():
    for path in PATHS:
        assert _select(path) == {"path": path, "selected": path}
    assert _select("auto")["path"] == PATHS[0]


NO_ALLOC = """
import json, numpy as np
from numba.core.runtime import rtsys
from wearface.kernels import nets, ptq, runtime
report = {}
for path in %r:
    for name in ("align", "A"):
        q = ptq.random_quantized_net(nets.get_net(name), seed=1)
        rt = runtime.Int8Runtime(q, "tiles", path)
        image = np.zeros(q.spec.input_shape, np.uint8)
        rt.run(image)
        plan = rt._plan(True)
        prog, (_, fn, _) = plan.prog, plan.steps[0]
        mod = __import__("wearface.kernels.tiles." + path, fromlist=["run_ops"])
        def allocs(stop):
            s0 = rtsys.get_allocation_stats().alloc
            for _ in range(5):
                mod.run_ops(prog.ops, 0, stop, plan.image, prog.act, prog.wts, prog.prm, prog.tile)
            return rtsys.get_allocation_stats().alloc - s0
        allocs(len(prog.ops))
        report[path + ":" + name] = [allocs(0), allocs(len(prog.ops))]
print(json.dumps(report))
"""


def test_a_frame_allocates_nothing_on_the_tile_paths():
    # Numba counts its allocations when NUMBA_NRT_STATS=1 (set before numba is imported: a subprocess).  A call
    # that runs every op of a net must allocate exactly what a call that runs none does (the arguments'
    # unboxing): the ops themselves allocate nothing per frame.
    fast = [p for p in PATHS if p != "portable"]
    if not fast:
        pytest.skip("no register-tile path on this CPU")
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    done = subprocess.run([sys.executable, "-c", NO_ALLOC % (fast,)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for key, (empty, full) in report.items():
        assert full == empty, f"{key}: {full} allocations for 5 frames, {empty} for 5 empty calls"
