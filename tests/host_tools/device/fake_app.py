"""A tiny in-memory stand-in for ``firmware/app.BoardApp`` — tests only, never on the shipped path."""
from __future__ import annotations

import hashlib
import time

import numpy as np

from wearface.firmware.errors import ReasonError


class FakeApp:
    def __init__(self):
        self.flash = bytearray()
        self.expect = None
        self.gallery: dict[str, int] = {}
        self.debug = False
        self.callbacks = []
        self.reboots = 0

    def info(self):
        import base64

        from wearface.host_tools.bundle.keys import DEV_PUBLIC_KEY, load_public_key

        return {"board": "fake", "compatible": "wearface-virtual",
                "public_keys": [base64.b64encode(load_public_key(DEV_PUBLIC_KEY)).decode()]}

    def flash_begin(self, size, sha256):
        if self.expect != (size, sha256):
            self.expect, self.flash = (size, sha256), bytearray()
        return {"slot": "b", "offset": len(self.flash)}

    def flash_chunk(self, offset, data):
        if self.expect is None:
            raise ReasonError("no_flash_in_progress", "flash_chunk before flash_begin")
        if offset != len(self.flash):
            raise ReasonError("offset_mismatch", f"chunk at {offset}, board is at {len(self.flash)}")
        self.flash += data
        return len(self.flash)

    def flash_end(self):
        if hashlib.sha256(self.flash).digest() != self.expect[1]:
            raise ReasonError("hash_mismatch", "sha256 of the written slot differs")
        return {"slot": "b", "pending": True}

    def reboot(self):
        self.reboots += 1

    def enroll_images(self, name, images):
        if any(img.mean() < 1 for img in images):
            raise ReasonError("no_face", "no face found in image 0")
        self.gallery[name] = self.gallery.get(name, 0) + len(images)
        return {"name": name, "n_embeddings": len(images), "spread": 0.1, "shapes": [list(i.shape) for i in images]}

    def enroll_from_camera(self, name, n_frames):
        return self.enroll_images(name, [np.full((4, 4, 3), 9, np.uint8)] * n_frames)

    def gallery_list(self):
        return [{"name": n, "n_embeddings": k} for n, k in sorted(self.gallery.items())]

    def gallery_delete(self, name):
        if name not in self.gallery:
            raise ReasonError("unknown_name", f"no person named {name!r}")
        return self.gallery.pop(name)

    def gallery_crops(self, name, max_crops=3):
        if name not in self.gallery:
            raise ReasonError("unknown_name", f"no person named {name!r}")
        return []

    def set_debug_embeddings(self, on, reason="request", explain=False):
        self.debug = on
        self.debug_explain = on and explain
        self.debug_reason = reason

    def stats(self):
        return {"fps": 10.0}

    def log_tail(self, n):
        return [f"line {i}" for i in range(n)]

    def subscribe(self, callback):
        self.callbacks.append(callback)

    def emit(self, event, **payload):
        for cb in self.callbacks:
            cb(dict(payload, event=event, t=time.time()))
