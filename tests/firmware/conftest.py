"""Fixtures for the firmware tests: a virtual board on a temp flash folder, and signed test bundles."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import pytest

from wearface.firmware import events as ev
from wearface.firmware.board import boards_dir, parse_board
from wearface.firmware.boot import Booter
from wearface.firmware.slots import SlotStore

REPO = Path(__file__).resolve().parents[2]


def make_board(tmp_path, **sections):
    """The virtual board with its flash root at ``tmp_path / 'flash'``; ``sections`` override fields,
    e.g. ``boot={"trial_boots": 2}`` or ``frame_budget_ms=50.0``."""
    text = (boards_dir() / "virtual.toml").read_text().replace(
        'root = "~/.cache/wearface/virtual-flash"', 'root = "flash"')
    path = Path(tmp_path) / "virtual.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    board = parse_board(text, path)
    changes = {}
    for key, value in sections.items():
        if isinstance(value, dict):
            changes[key] = dataclasses.replace(getattr(board, key), **value)
        else:
            changes[key] = value
    return dataclasses.replace(board, **changes)


def run_loop(tmp_path, board, model, bundle, frames) -> tuple:
    """Run the real ``Pipeline`` over ``frames`` with an empty gallery in ``tmp_path``: (pipeline, the sorted
    track ids after each frame, every event published)."""
    from wearface.firmware.camera import IterableSource
    from wearface.firmware.gallery import Gallery
    from wearface.firmware.pipeline import Pipeline

    gallery = Gallery(Path(tmp_path) / "g.sqlite", str(bundle.embedding_space), float(bundle.threshold))
    events = []
    bus = ev.EventBus()
    bus.subscribe(events.append)
    pipeline = Pipeline(board, model, gallery, bus, IterableSource(frames))
    ids = []
    try:
        for frame in frames:
            pipeline.step(frame)
            ids.append(sorted(pipeline.tracker.tracks))
    finally:
        gallery.close()
    return pipeline, ids, events


#: the bundle the project ships (model A with its trained alignment net)
SHIPPED_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default.wfb"


@pytest.fixture(scope="module")
def shipped_bundle(tmp_path_factory):
    """``models/default.wfb`` verified for the virtual board: its trained alignment net and embedding (a random
    one says nothing about where a face went or whom it shows)."""
    from wearface.firmware.bundle import verify_bundle

    board = make_board(tmp_path_factory.mktemp("board"))
    return verify_bundle(SHIPPED_BUNDLE.read_bytes(), list(board.public_keys), board.compatible, 0)


@functools.lru_cache(maxsize=None)
def signed_bundle(seed: int = 0, rollback_counter: int = 0, model_version: str | None = None, **kw) -> bytes:
    """A signed bundle of random nets (cached per arguments; building one takes ~0.3 s)."""
    from wearface.host_tools.bundle.bundle_build import build_test_bundle

    return build_test_bundle(seed=seed, rollback_counter=rollback_counter,
                             model_version=model_version or f"test-{seed}-r{rollback_counter}", **kw)


@pytest.fixture
def board(tmp_path):
    return make_board(tmp_path)


class Flasher:
    """The flash requests of BoardApp, done directly on a store + booter (for slot/boot tests)."""

    def __init__(self, board, flash_dir):
        self.board = board
        self.flash_dir = Path(flash_dir)
        self.open()

    def open(self):
        """(Re)open the store as a fresh boot would, with a recorder on the event bus."""
        self.bus = ev.EventBus()
        self.events = ev.EventRecorder()
        self.bus.subscribe(self.events)
        self.store = SlotStore.for_board(self.board, self.flash_dir)
        self.booter = Booter(self.board, self.store, self.bus)
        return self

    def write(self, data: bytes, chunk: int = 65536) -> dict:
        part = self.store.begin_write(len(data), hashlib.sha256(data).digest())
        offset = part.offset
        while offset < len(data):
            offset = self.store.write_chunk(offset, data[offset:offset + chunk])
        return self.booter.accept_written()

    def reboot(self):
        self.open()
        return self.booter.boot()

    def names(self):
        return [e["event"] for e in self.events.events]


@pytest.fixture
def flasher(board):
    return Flasher(board, board.flash_root())


def flash_app(app, data: bytes, chunk: int = 1 << 20) -> dict:
    """Flash ``data`` through the BoardApp's own flash requests (as the serial server would)."""
    info = app.flash_begin(len(data), hashlib.sha256(data).digest())
    offset = info["offset"]
    while offset < len(data):
        offset = app.flash_chunk(offset, data[offset:offset + chunk])
    return app.flash_end()


def lfw_faces(shared_data, names=("George_W_Bush", "Colin_Powell")) -> dict:
    """{identity: BGR 128x128 crop} of the first LFW128 photo of each name (never written to the repo)."""
    import zipfile

    import cv2
    import numpy as np

    faces = {}
    with zipfile.ZipFile(shared_data / "lfw" / "lfw128.zip") as z:
        for name in names:
            raw = z.read(f"lfw128/{name}/{name}_0001.jpg")
            faces[name] = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    return faces
