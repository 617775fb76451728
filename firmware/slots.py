"""Two model slots (A/B) on the flash and the slot table that says which one boots.

One job: the on-flash state of the slots, kept consistent across power loss.  Like RAUC and MCUboot:
only the inactive slot is written, a new image is *pending* until the running loop proves it healthy
(then *confirmed*), a pending image gets a bounded number of trial boots, and a slot that fails is
marked *bad* with the reason.  What to boot is decided in ``boot.py``; this module only stores state.

Layout in the flash folder (names from the board file)::

    slot_a.wfb, slot_b.wfb   the two bundle images (raw bytes, exactly as flashed)
    slots.json               the slot table (JSON), replaced atomically:
                             write slots.json.tmp, fsync it, rename over slots.json, fsync the folder

A slot write is resumable: the table records the partial image (slot, size, sha256, offset of the last
byte known to be on the flash, i.e. written and fsynced before the table said so).  After a power loss
the host asks ``begin_write`` again with the same size and hash and continues at that offset.

Must not import OpenCV, numba or torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from .errors import SlotError

SLOT_NAMES = ("A", "B")
TABLE_FORMAT = 1

#: per-slot states
EMPTY = "empty"          # no image (never written, or erased)
WRITING = "writing"      # a write began and has not been verified
PENDING = "pending"      # verified at flash_end; waits for trial boots to confirm it
CONFIRMED = "confirmed"  # booted and ran healthily (the fallback)
BAD = "bad"              # failed verification or its trial boots; never booted again until rewritten
SLOT_STATES = (EMPTY, WRITING, PENDING, CONFIRMED, BAD)


@dataclass
class SlotRecord:
    """What the table knows about one slot's image.  ``sha256`` is lowercase hex of the whole image."""

    state: str = EMPTY
    size_bytes: int = 0
    sha256: str = ""
    model_version: str = ""
    rollback_counter: int = 0
    embedding_space: str = ""
    bad_reason: str = ""
    #: resumable write: bytes known to be on the flash (fsynced) while state == WRITING
    written_bytes: int = 0
    updated_t: float = 0.0


@dataclass
class SlotTable:
    """The whole table.  ``active``: the slot booted now (None in recovery); ``pending``: a slot waiting for
    confirmation; ``confirmed``: the last confirmed slot (the one to fall back to); ``boot_attempts``: trial
    boots the pending slot has used; ``min_rollback``: anti-rollback floor (highest rollback counter of
    any confirmed image); ``generation`` counts table writes."""

    slots: dict = field(default_factory=lambda: {name: SlotRecord() for name in SLOT_NAMES})
    active: Optional[str] = None
    pending: Optional[str] = None
    confirmed: Optional[str] = None
    boot_attempts: int = 0
    min_rollback: int = 0
    generation: int = 0
    format: int = TABLE_FORMAT

    def to_json(self) -> dict:
        data = asdict(self)
        data["slots"] = {name: asdict(rec) for name, rec in self.slots.items()}
        return data

    @classmethod
    def from_json(cls, data: dict) -> "SlotTable":
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise ValueError(f"format is {data.get('format') if isinstance(data, dict) else data!r}, "
                             f"expected {TABLE_FORMAT}")
        slots = {}
        for name in SLOT_NAMES:
            fields = data["slots"][name]
            rec = SlotRecord(**fields)
            for key, default in asdict(SlotRecord()).items():
                value = getattr(rec, key)
                if type(value) is not type(default) and not (isinstance(default, float) and type(value) is int):
                    raise ValueError(f"slot {name}: {key} is {value!r}, expected {type(default).__name__}")
            if rec.state not in SLOT_STATES:
                raise ValueError(f"slot {name} has unknown state {rec.state!r}")
            slots[name] = rec
        table = cls(slots=slots, **{k: data[k] for k in ("active", "pending", "confirmed", "boot_attempts",
                                                          "min_rollback", "generation")})
        for key in ("active", "pending", "confirmed"):
            if getattr(table, key) not in (None, *SLOT_NAMES):
                raise ValueError(f"{key} is {getattr(table, key)!r}, expected null, 'A' or 'B'")
        for key in ("boot_attempts", "min_rollback", "generation"):
            if type(getattr(table, key)) is not int or getattr(table, key) < 0:
                raise ValueError(f"{key} is {getattr(table, key)!r}, expected an integer >= 0")
        return table


def other(slot: str) -> str:
    return "B" if slot == "A" else "A"


def fsync_dir(path: Path) -> None:
    """fsync a folder so that a rename inside it survives power loss (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that after a crash it holds either the old or the new bytes."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclass
class PartialWrite:
    """A slot write in progress (returned by ``begin_write``)."""

    slot: str
    size_bytes: int
    sha256: str
    offset: int


class SlotStore:
    """The slots and the slot table in one flash folder.  Not thread-safe: the caller (``BoardApp``)
    serialises flash requests.

    ``recovered_from``: None, or why the table was rebuilt at open (missing/corrupt table).
    """

    def __init__(self, flash_dir: str | Path, slot_a: str = "slot_a.wfb", slot_b: str = "slot_b.wfb",
                 table_name: str = "slots.json", slot_size_bytes: int = 16 * 1024 * 1024):
        self.dir = Path(flash_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.paths = {"A": self.dir / slot_a, "B": self.dir / slot_b}
        self.table_path = self.dir / table_name
        self.slot_size_bytes = slot_size_bytes
        self.recovered_from: Optional[str] = None
        self.table = self._load()

    @classmethod
    def for_board(cls, board, flash_dir: str | Path) -> "SlotStore":
        f = board.flash
        return cls(flash_dir, f.slot_a, f.slot_b, f.slot_table, f.slot_size_bytes)

    # ------------------------------------------------------------------------------ table

    def _load(self) -> SlotTable:
        tmp = self.table_path.with_name(self.table_path.name + ".tmp")
        if tmp.exists():  # a table write that never reached its rename: the old table stands
            tmp.unlink()
        if not self.table_path.exists():
            table = SlotTable()
            if any(p.exists() and p.stat().st_size for p in self.paths.values()):
                self.recovered_from = f"{self.table_path.name} missing beside slot images"
                table = self._rebuilt()
            return table
        try:
            return SlotTable.from_json(json.loads(self.table_path.read_text("utf-8")))
        except (ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
            self.recovered_from = f"{self.table_path.name} unreadable ({exc})"
            return self._rebuilt()

    def _rebuilt(self) -> SlotTable:
        """A table inferred from the slot files alone: every non-empty image is a boot candidate
        (``confirmed``) and boot verification decides; the newest file is tried first."""
        table = SlotTable()
        newest = None
        for name, path in self.paths.items():
            if path.exists() and path.stat().st_size:
                data = path.read_bytes()
                table.slots[name] = SlotRecord(state=CONFIRMED, size_bytes=len(data),
                                               sha256=hashlib.sha256(data).hexdigest(), updated_t=time.time())
                if newest is None or path.stat().st_mtime > self.paths[newest].stat().st_mtime:
                    newest = name
        table.confirmed = newest
        return table

    def save(self) -> None:
        """Write the table atomically (temp file, fsync, rename, fsync the folder)."""
        self.table.generation += 1
        atomic_write(self.table_path, json.dumps(self.table.to_json(), indent=1, sort_keys=True).encode("utf-8"))

    def record(self, slot: str) -> SlotRecord:
        return self.table.slots[slot]

    def read_image(self, slot: str) -> bytes:
        """The slot's image bytes (b"" when the file is missing)."""
        try:
            return self.paths[slot].read_bytes()
        except FileNotFoundError:
            return b""

    # ------------------------------------------------------------------------------ writing

    def write_target(self) -> str:
        """The slot a new image goes to: never the confirmed fallback, never the running slot."""
        t = self.table
        if t.confirmed is not None:
            target = other(t.confirmed)
        elif t.active is not None:
            target = other(t.active)
        else:
            target = "A"
        if target == t.active:
            raise SlotError("slot_busy", f"slot {target} is running an unconfirmed trial boot; it is confirmed "
                                         f"after its healthy frames or rolled back at the next reboot; flash after that")
        return target

    def begin_write(self, size_bytes: int, sha256: bytes) -> PartialWrite:
        """Start (or resume) writing an image of ``size_bytes`` whose SHA-256 is ``sha256`` (32 bytes).

        Resumes at the recorded offset when the same image was partly written to the same slot before.
        """
        if not isinstance(size_bytes, int) or size_bytes <= 0 or size_bytes > self.slot_size_bytes:
            raise SlotError("size_exceeded", f"image size {size_bytes} bytes: expected 1..{self.slot_size_bytes}")
        if not isinstance(sha256, (bytes, bytearray)) or len(sha256) != 32:
            raise SlotError("bad_request", f"sha256 must be 32 bytes, found {sha256!r:.40}")
        slot = self.write_target()
        rec = self.table.slots[slot]
        digest = bytes(sha256).hex()
        path = self.paths[slot]
        on_flash = path.stat().st_size if path.exists() else 0
        if rec.state == WRITING and rec.size_bytes == size_bytes and rec.sha256 == digest and rec.written_bytes <= on_flash:
            offset = rec.written_bytes
        else:
            offset = 0
            with open(path, "wb") as f:  # truncate: the old image in this slot is given up now
                f.flush()
                os.fsync(f.fileno())
            self.table.slots[slot] = SlotRecord(state=WRITING, size_bytes=size_bytes, sha256=digest,
                                                written_bytes=0, updated_t=time.time())
            if self.table.pending == slot:
                self.table.pending = None
                self.table.boot_attempts = 0
            self.save()
        return PartialWrite(slot, size_bytes, digest, offset)

    def writing(self) -> Optional[PartialWrite]:
        """The write in progress on the write target, if any."""
        try:
            name = self.write_target()
        except SlotError:
            return None
        rec = self.table.slots[name]
        if rec.state != WRITING:
            return None
        return PartialWrite(name, rec.size_bytes, rec.sha256, rec.written_bytes)

    def write_chunk(self, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset`` of the slot being written; returns the new offset.

        The chunk is fsynced before the table records the new offset, so a recorded offset is never ahead
        of the flash.  ``offset`` must equal the recorded offset (``offset_mismatch`` otherwise).
        """
        part = self.writing()
        if part is None:
            raise SlotError("no_flash_in_progress", "flash_chunk without flash_begin")
        if offset != part.offset:
            err = SlotError("offset_mismatch", f"chunk at offset {offset}, the slot is at offset {part.offset}")
            err.offset = part.offset  # where the host resumes
            raise err
        if offset + len(data) > part.size_bytes:
            raise SlotError("size_exceeded", f"chunk {offset}+{len(data)} runs past the image size {part.size_bytes}")
        with open(self.paths[part.slot], "r+b") as f:
            f.seek(offset)
            f.write(data)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
        rec = self.table.slots[part.slot]
        rec.written_bytes = offset + len(data)
        rec.updated_t = time.time()
        self.save()
        return rec.written_bytes

    def finish_write(self) -> tuple[str, bytes]:
        """Check the complete image against its announced size and SHA-256; returns (slot, image bytes).

        On a hash mismatch the write starts over (the slot is reset to offset 0).
        """
        part = self.writing()
        if part is None:
            raise SlotError("no_flash_in_progress", "flash_end without flash_begin")
        if part.offset != part.size_bytes:
            raise SlotError("incomplete", f"slot {part.slot} holds {part.offset} of {part.size_bytes} bytes")
        data = self.read_image(part.slot)
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != part.size_bytes or digest != part.sha256:
            self.table.slots[part.slot].written_bytes = 0
            self.save()
            raise SlotError("hash_mismatch", f"slot {part.slot}: SHA-256 of the {len(data)} written bytes is "
                                             f"{digest[:16]}..., the host announced {part.sha256[:16]}...; "
                                             f"write it again from offset 0")
        return part.slot, data

    # ------------------------------------------------------------------------------ state changes

    def mark_pending(self, slot: str, *, model_version: str, rollback_counter: int, embedding_space: str) -> None:
        rec = self.table.slots[slot]
        rec.state, rec.bad_reason, rec.written_bytes = PENDING, "", rec.size_bytes
        rec.model_version, rec.rollback_counter, rec.embedding_space = model_version, rollback_counter, embedding_space
        rec.updated_t = time.time()
        self.table.pending = slot
        self.table.boot_attempts = 0
        self.save()

    def mark_bad(self, slot: str, reason: str) -> None:
        rec = self.table.slots[slot]
        rec.state, rec.bad_reason, rec.updated_t = BAD, reason, time.time()
        if self.table.pending == slot:
            self.table.pending = None
            self.table.boot_attempts = 0
        if self.table.confirmed == slot:
            self.table.confirmed = None
            if self.table.slots[other(slot)].state == CONFIRMED:
                self.table.confirmed = other(slot)
        self.save()

    def start_trial(self, slot: str) -> int:
        """Count one trial boot of the pending ``slot`` (saved before the loop starts: a crash counts)."""
        self.table.boot_attempts += 1
        self.table.active = slot
        self.save()
        return self.table.boot_attempts

    def set_active(self, slot: Optional[str]) -> None:
        if self.table.active != slot:
            self.table.active = slot
            self.save()

    def confirm(self, slot: str) -> None:
        rec = self.table.slots[slot]
        rec.state, rec.updated_t = CONFIRMED, time.time()
        self.table.confirmed = slot
        if self.table.pending == slot:
            self.table.pending = None
        self.table.boot_attempts = 0
        self.table.min_rollback = max(self.table.min_rollback, rec.rollback_counter)
        self.save()

    def describe(self) -> dict:
        """JSON-able summary for ``info``."""
        t = self.table
        return {
            "active": t.active, "pending": t.pending, "confirmed": t.confirmed,
            "boot_attempts": t.boot_attempts, "min_rollback": t.min_rollback,
            "slots": {name: {"state": r.state, "size_bytes": r.size_bytes, "sha256": r.sha256,
                             "model_version": r.model_version, "rollback_counter": r.rollback_counter,
                             "embedding_space": r.embedding_space, "bad_reason": r.bad_reason,
                             "written_bytes": r.written_bytes}
                      for name, r in t.slots.items()},
        }
