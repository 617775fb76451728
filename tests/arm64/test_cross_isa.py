"""Cross-ISA identity: a bundle built on x86 passes its golden self-test on arm64, and the int8 embeddings of
a fixed set of face crops are byte-identical on x86 and on each emulated CPU, for every runtime backend."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from wearface.host_tools import bundle_build
from wearface.kernels import nets
from wearface.kernels.runtime import BACKENDS

from . import board_side
from .conftest import REPO

#: one board per emulated CPU (the bundle's compatible list covers both families)
BOARD_FOR_CPU = {"cortex-a53": REPO / "boards" / "rpi-zero2w.toml", "cortex-a76": REPO / "boards" / "a55-dotprod.toml"}
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


@pytest.fixture(scope="session")
def x86_side(tmp_path_factory):
    """The bundle and crops written for the board, and the x86 embeddings of those crops."""
    from tests.conftest import SHARED_DATA

    folder = tmp_path_factory.mktemp("cross_isa")
    data = bundle_build.build_test_bundle(seed=3)
    bundle_path = folder / "test.wfb"
    bundle_path.write_bytes(data)
    crops = face_crops(SHARED_DATA if SHARED_DATA.is_dir() else None)
    np.save(folder / "crops.npy", crops)
    from wearface.firmware.bundle import read_bundle

    embed = read_bundle(data).embed_net
    return {"folder": folder, "bundle": bundle_path, "crops": crops,
            "x86": board_side.embeddings_int8(embed, crops, BACKENDS)}


def test_x86_backends_agree_with_each_other(x86_side):
    reference = x86_side["x86"]["reference"]
    for backend, emb in x86_side["x86"].items():
        assert np.array_equal(emb, reference), f"x86 backend {backend} differs from the integer reference"


@pytest.mark.slow
def test_x86_bundle_self_tests_and_embeds_identically_on_arm64(emulated, x86_side):
    out = x86_side["folder"] / f"arm64-{emulated.qemu_cpu}.npz"
    run = emulated.run([str(REPO / "tests" / "arm64" / "board_side.py"), "cross-isa", str(x86_side["bundle"]),
                        str(BOARD_FOR_CPU[emulated.qemu_cpu]), str(x86_side["folder"] / "crops.npy"), str(out)],
                       timeout_s=600)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["machine"] == "aarch64"
    arm = np.load(out)
    assert sorted(arm.files) == sorted(BACKENDS)
    for backend in BACKENDS:
        x86 = x86_side["x86"][backend]
        assert arm[backend].dtype == np.int8 and arm[backend].shape == x86.shape
        assert arm[backend].tobytes() == x86.tobytes(), (
            f"{emulated.qemu_cpu} backend {backend}: int8 embeddings differ from x86 in "
            f"{int(np.sum(arm[backend] != x86))} of {x86.size} values")
