"""Cross-ISA identity: bundles built on x86 (a random test bundle, and models/default.wfb when it exists) pass their
golden self-test on arm64, and the int8 embeddings of a fixed set of face crops are byte-identical on x86 and on
each emulated CPU, for every runtime backend.
Also: the firmware's alignment crops, compared the same way (a known difference, see below), and the BlazeFace
detector's boxes (float nets: equal within a tolerance)."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from wearface.firmware import scene
from wearface.host_tools.bundle import bundle_build
from wearface.kernels import nets
from wearface.kernels.runtime import BACKENDS

from . import board_side
from .conftest import REPO, describe_failure

#: one board per emulated CPU (the bundle's compatible list covers both families)
BOARD_FOR_CPU = {"cortex-a53": REPO / "boards" / "rpi-zero2w.toml", "cortex-a76": REPO / "boards" / "a55-dotprod.toml"}
#: every runtime backend: "tiles" is the board's own path (arm_dot on the A76, arm_neon on the A53), "reference" the
#: plain-numpy specification
CROSS_ISA_BACKENDS = tuple(BACKENDS)
DEFAULT_BUNDLE = REPO / "models" / "default.wfb"
SYNTHETIC_CROPS = 3
LFW_CROPS = 3


def face_crops(shared_data_dir) -> np.ndarray:
    """(N, 112, 112, 3) uint8 RGB: a few synthetic crops (always) + LFW128 crops [8:120, 8:120] when the data is here."""
    h, w, _ = nets.MODEL_A.input_shape
    rng = np.random.default_rng(1234)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(SYNTHETIC_CROPS - 1)]
    crops.append(np.full((h, w, 3), 255, np.uint8))  # saturated input: the extreme of every accumulator
    archive = shared_data_dir / "lfw" / "lfw128.zip" if shared_data_dir else None
    if archive is not None and archive.is_file():
        import cv2

        with zipfile.ZipFile(archive) as zf:
            names = sorted(n for n in zf.namelist() if n.lower().endswith((".jpg", ".png")))[:LFW_CROPS]
            for name in names:
                bgr = cv2.imdecode(np.frombuffer(zf.read(name), np.uint8), cv2.IMREAD_COLOR)
                crops.append(np.ascontiguousarray(bgr[8:120, 8:120, ::-1]))
    return np.stack(crops)


@pytest.fixture(scope="module")
def x86_side(tmp_path_factory):
    """Inputs written for the boards, the x86 results on them, and the arm64 results of both CPUs."""
    from tests.conftest import SHARED_DATA
    from wearface.firmware.bundle import read_bundle

    folder = tmp_path_factory.mktemp("cross_isa")
    (folder / "test.wfb").write_bytes(bundle_build.build_test_bundle(seed=3))
    bundles = [folder / "test.wfb"] + ([DEFAULT_BUNDLE] if DEFAULT_BUNDLE.is_file() else [])
    crops = face_crops(SHARED_DATA if SHARED_DATA.is_dir() else None)
    np.save(folder / "crops.npy", crops)
    actors = scene.portrait_scene(640, 480, 40)
    frames = np.stack([scene.render(actors, i, 40)[0] for i in (15, 25)])
    np.save(folder / "frames.npy", frames)
    x86 = {}
    for index, path in enumerate(bundles):
        embed = read_bundle(path.read_bytes()).embed_net
        for backend, emb in board_side.embeddings_int8(embed, crops, CROSS_ISA_BACKENDS).items():
            x86[f"{index}:{backend}"] = emb
    return {"folder": folder, "crops": crops, "bundles": bundles, "x86": x86,
            "x86_alignment_crops": board_side.alignment_crops(str(folder / "frames.npy")),
            "x86_blazeface_boxes": board_side.blazeface_boxes(str(folder / "frames.npy"))}


@pytest.fixture(scope="module")
def arm64_side(all_cpus, x86_side) -> dict:
    """{cpu: npz of the board-side results}: both CPUs at once, each verifying the bundle as its board does."""
    folder = x86_side["folder"]
    bundles = ",".join(map(str, x86_side["bundles"]))
    # the shipped A53/A55 files trust no key (unprovisioned hardware): verify as an emulated board does, dev key
    from wearface.host_tools.device.emulate import emulated_board_file

    boards = {cpu: emulated_board_file(BOARD_FOR_CPU[cpu], folder / f"flash-{cpu}") for cpu in BOARD_FOR_CPU}
    results = all_cpus.run(lambda cpu: [REPO / "tests" / "arm64" / "board_side.py", "cross-isa", bundles,
                                        boards[cpu], folder / "crops.npy", folder / "frames.npy",
                                        folder / f"arm64-{cpu}.npz"], timeout_s=900)
    out = {}
    for cpu, done in results.items():
        assert done.returncode == 0, describe_failure(cpu, done)  # includes the golden self-test at verify
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["machine"] == "aarch64" and report["qemu_cpu"] == cpu, report
        out[cpu] = np.load(folder / f"arm64-{cpu}.npz")
    return out


def test_x86_backends_agree_with_each_other(x86_side):
    for key, emb in x86_side["x86"].items():
        reference = x86_side["x86"][key.split(":")[0] + ":reference"]
        assert np.array_equal(emb, reference), f"x86 {key} differs from the integer reference"


@pytest.mark.slow
def test_x86_bundle_self_tests_and_embeds_identically_on_arm64(x86_side, arm64_side):
    for cpu, arm in arm64_side.items():
        assert sorted(k for k in arm.files if ":" in k) == sorted(x86_side["x86"]), (cpu, arm.files)
        for key, x86 in x86_side["x86"].items():
            bundle = x86_side["bundles"][int(key.split(":")[0])].name
            assert arm[key].dtype == np.int8 and arm[key].shape == x86.shape, (cpu, bundle, key)
            assert arm[key].tobytes() == x86.tobytes(), (
                f"{cpu}, {bundle}, backend {key.split(':')[1]}: int8 embeddings differ from x86 in "
                f"{int(np.sum(arm[key] != x86))} of {x86.size} values")


@pytest.mark.xfail(strict=False, raises=AssertionError, reason=(
    "firmware/align.py pre-shrinks faces larger than the crop with cv2.resize(INTER_AREA), whose float "
    "arithmetic differs between OpenCV's x86 and aarch64 builds (measured: a few pixels differ by 1); an "
    "integer shrink (e.g. pyrDown, or integer-factor INTER_AREA) would make the crops identical"))
def test_alignment_crops_are_identical_on_arm64(x86_side, arm64_side):
    x86 = x86_side["x86_alignment_crops"]
    for cpu, arm in arm64_side.items():
        got = arm["alignment_crops"]
        assert got.shape == x86.shape
        differing = [i for i in range(len(x86)) if not np.array_equal(got[i], x86[i])]
        assert not differing, (f"{cpu}: alignment crops {differing} of {len(x86)} differ from x86 "
                               f"(max |diff| {int(np.max(np.abs(got.astype(int) - x86.astype(int))))})")


#: BlazeFace's float nets run by OpenCV's DNN module, whose x86 and aarch64 builds sum in other orders: measured on
#: one frame, a box moved by 0.003 px and its score by 1e-4 (docs/ARM64.md)
BLAZE_BOX_ATOL_PX = 0.05
BLAZE_SCORE_ATOL = 2e-3


@pytest.mark.slow
def test_blazeface_finds_the_same_faces_on_arm64_within_float_tolerance(x86_side, arm64_side):
    x86 = x86_side["x86_blazeface_boxes"]
    assert np.isfinite(x86[:, 0, 0]).any(), "the test frames' face was not found on x86"  # (frame 25 has none)
    for cpu, arm in arm64_side.items():
        got = arm["blazeface_boxes"]
        assert np.array_equal(np.isnan(got), np.isnan(x86)), f"{cpu}: other boxes than x86: {got} vs {x86}"
        found = ~np.isnan(x86[..., 0])
        assert np.abs(got[found][:, :4] - x86[found][:, :4]).max() <= BLAZE_BOX_ATOL_PX, (cpu, got, x86)
        assert np.abs(got[found][:, 4] - x86[found][:, 4]).max() <= BLAZE_SCORE_ATOL, (cpu, got, x86)
