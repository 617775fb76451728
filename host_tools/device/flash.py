"""Put a bundle on a board: verify it here, stream it in chunks, resume after a cut, reboot, await the verdict.

One job: the flash procedure over a :class:`~wearface.host_tools.device.link.Link` (esptool's ``write_flash`` for this
board).  Steps, each with its own error (exit codes in docs/PROTOCOL.md):

1. ``INFO``: the board's ``compatible`` family and public keys; the bundle is verified *here* first
   (structure, SHA-256, Ed25519 signature by a key the board trusts, compatibility, anti-rollback floor) so a
   wrong file never occupies the line — ``BundleError`` (exit 20 + reason).
2. ``FLASH_BEGIN`` (size, SHA-256 of the whole): the board picks its inactive slot and answers the offset to
   resume from (0, or how far an earlier interrupted upload of the same bytes got).
3. ``FLASH_CHUNK`` (offset, bytes, crc32 of the chunk) until done, ``window`` chunks in flight while the line
   is clean (the wire stays busy while the board fsyncs), one at a time with retries after a hiccup.  A damaged
   frame is resent; a lost line is waited for (``resume_timeout_s``) and the upload resumes at the board's offset.
4. ``FLASH_END``: the board hashes and verifies the slot itself and marks it pending —
   ``FlashRejectedError`` (15) if it refuses.
5. ``REBOOT``, then wait for the board to run the trial slot and confirm it (``boot.confirmed``) or roll back
   (``RollbackError``, 16); neither within ``confirm_timeout_s``: ``ConfirmTimeoutError`` (17).
"""
from __future__ import annotations

import hashlib
import math
import sys
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from wearface.firmware import protocol as P

from ..errors import BoardError, ConfirmTimeoutError, FlashRejectedError, LinkError, RollbackError
from .link import Link

#: how long a vanished board may stay away mid-upload before the flash gives up
RESUME_TIMEOUT_S = 30.0
CONFIRM_TIMEOUT_S = 90.0
INFO_POLL_S = 0.5
#: the smallest chunk the adaptive size goes down to (a line flipping 1 % of its bytes wants ~100)
MIN_CHUNK_BYTES = 32
#: bytes a FLASH_CHUNK round trip adds to its data on the wire (request header, JSON, CRC, ENDs; the answer)
CHUNK_OVERHEAD_BYTES = 110
#: tries of the flash's control requests (INFO, FLASH_BEGIN, FLASH_END, REBOOT) at least, whatever the link's
CONTROL_RETRIES = 12


class ChunkSizer:
    """The chunk size for a line that damages some bytes: shrinks when chunks fail, grows back when they pass.

    Like TCP's AIMD it cuts at once on a loss and grows while the line is clean, but aims where throughput
    peaks: a round trip of ``n`` bytes on a line damaging a fraction ``p`` of its bytes passes with
    ``(1-p)**n``, and ``data * (1-p)**(data + overhead)`` is largest at ``data = 1/p``.  ``p`` is estimated
    from the failed share of the last ~10 attempts (exponentially weighted) and their bytes on the wire.  A
    failure never grows the size and never leaves it above ``1/p``; a success never shrinks it and at most
    doubles it (clean line: ``p`` -> 0, the size returns to ``max_bytes`` within a few dozen chunks).
    """

    def __init__(self, max_bytes: int, min_bytes: int = MIN_CHUNK_BYTES, memory: float = 0.9):
        self.min_bytes = max(1, min(min_bytes, max_bytes))
        self.max_bytes = max(self.min_bytes, max_bytes)
        self.memory = memory
        self.size = self.max_bytes
        self.attempts = 0
        self.failures = 0
        #: (attempt number, new size) at each change: shrinks and growths, for tests and the bench
        self.history: list[tuple[int, int]] = []
        self._w_attempts = self._w_fails = self._w_wire = 0.0

    @property
    def smallest(self) -> int:
        return min([self.max_bytes] + [size for _, size in self.history])

    def damage_per_byte(self) -> float:
        """The estimated share of bytes the line damages (0 while the recent attempts all passed)."""
        if self._w_attempts == 0:
            return 0.0
        fail = self._w_fails / self._w_attempts
        if fail < 1e-3:
            return 0.0
        return -math.log(max(1.0 - fail, 0.05)) / (self._w_wire / self._w_attempts)

    def record(self, ok: bool, data_bytes: int) -> int:
        """One chunk's attempt passed (``ok``) or failed; returns the size for the next chunk."""
        self.attempts += 1
        self.failures += not ok
        m = self.memory
        self._w_attempts = m * self._w_attempts + 1.0
        self._w_fails = m * self._w_fails + (0.0 if ok else 1.0)
        self._w_wire = m * self._w_wire + data_bytes + CHUNK_OVERHEAD_BYTES
        p = self.damage_per_byte()
        target = self.max_bytes if p <= 0 else int(1.0 / p)
        new = max(self.size, min(target, 2 * self.size)) if ok else min(self.size, target)
        new = max(self.min_bytes, min(self.max_bytes, new))
        if new != self.size:
            self.size = new
            self.history.append((self.attempts, new))
        return new


@dataclass
class FlashResult:
    slot: str
    size_bytes: int
    sha256: str
    model_version: str
    resumed_from: int
    resumes: int
    upload_s: float
    rate_bytes_s: float
    confirmed: bool | None = None   # None: reboot not requested
    final_state: dict = field(default_factory=dict)


ProgressFn = Callable[[int, int], None]


class ProgressBar:
    """``[#####....]  45%  123.4 KiB/s  ETA 0:05`` on stderr, redrawn at most 10 times a second."""

    def __init__(self, label: str = "flash", stream=None, width: int = 30):
        self.label, self.stream, self.width = label, stream if stream is not None else sys.stderr, width
        self.t0 = time.monotonic()
        self.start_offset: int | None = None
        self._last_draw = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.start_offset is None:
            self.start_offset, self.t0 = done, now
        if now - self._last_draw < 0.1 and done < total:
            return
        self._last_draw = now
        frac = done / total if total else 1.0
        rate = (done - self.start_offset) / max(now - self.t0, 1e-6)
        eta_s = (total - done) / rate if rate > 0 else float("inf")
        eta = f"{int(eta_s // 60)}:{int(eta_s % 60):02d}" if eta_s != float("inf") else "?:??"
        bar = "#" * int(frac * self.width)
        self.stream.write(f"\r{self.label} [{bar:<{self.width}}] {frac * 100:5.1f}%  {rate / 1024:7.1f} KiB/s  ETA {eta} ")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def board_public_keys(info: dict) -> list[bytes]:
    """The keys a board trusts: from ``info["public_keys"]`` if it reports them, else from the board file in
    ``boards/`` whose ``name`` and ``compatible`` match what the board reports."""
    if "public_keys" in info:  # the board says what it trusts (an empty list: not provisioned, refuses everything)
        return list(info["public_keys"])
    from wearface.firmware.board import boards_dir, load_board
    from wearface.firmware.errors import FirmwareError

    for path in sorted(boards_dir().glob("*.toml")):
        try:
            board = load_board(path)
        except FirmwareError:
            continue
        if board.name == info.get("board") and board.compatible == info.get("compatible"):
            return list(board.public_keys)
    return []


def verify_locally(data: bytes, info: dict, trusted_keys: list | None = None, name: str = "bundle",
                   self_test: bool = False):
    """Check ``data`` as the board will: raises BundleError (reason) if the board would refuse it.

    The keys are the board's own (:func:`board_public_keys`) unless ``trusted_keys`` is given; the golden-vector
    self-test is left to the board unless ``self_test`` (it costs the int8 runtime's compile time here).
    """
    from wearface.firmware.bundle import verify_bundle

    keys = trusted_keys if trusted_keys is not None else board_public_keys(info)
    if not keys:
        from ..errors import DataError

        if "public_keys" in info:  # the board answered: it trusts nothing yet
            raise DataError(f"board {info.get('board')!r} ({info.get('compatible')!r}) trusts no signing key (not "
                            f"provisioned): it refuses every bundle; provision its board file with `wearface keys "
                            f"provision BOARD.toml --key KEY.pub` (docs/FIRMWARE.md, Provisioning)")
        raise DataError(f"no public key known for board {info.get('board')!r} ({info.get('compatible')!r}): it is "
                        f"not in boards/*.toml and does not report one; pass --key FILE")
    return verify_bundle(data, keys, info.get("compatible", ""), min_rollback=int(info.get("min_rollback") or 0),
                         self_test=self_test, name=name)


def slot_view(info: dict) -> dict:
    """The board's slot state from ``INFO``: state, active/pending/confirmed slot, trial, model_version."""
    return {key: info.get(key) for key in ("state", "active_slot", "pending_slot", "confirmed_slot", "trial",
                                           "model_version")}


def _chunk_payload(data: bytes, offset: int, chunk_bytes: int) -> dict:
    chunk = data[offset:offset + chunk_bytes]
    return {"offset": offset, "data": chunk, "crc32": zlib.crc32(chunk)}


def _pipelined(link: Link, data: bytes, offset: int, chunk_bytes: int, window: int,
               progress: ProgressFn | None, sizer: ChunkSizer | None = None) -> int:
    """Keep ``window`` chunks in flight so the wire is busy while the board writes; return the offset reached.

    Stops at the first answer that is missing, damaged or not the expected offset (a lost or damaged chunk makes
    every later one an offset mismatch); the caller then asks the board where to resume, so nothing is lost
    but the chunks in flight.
    """
    inflight: deque = deque()
    next_offset = offset
    try:
        while offset < len(data):
            while len(inflight) < window and next_offset < len(data):
                payload = _chunk_payload(data, next_offset, chunk_bytes)
                end = next_offset + len(payload["data"])
                inflight.append((link.send(P.Opcode.FLASH_CHUNK, payload), end))
                next_offset = end
            sent, end = inflight.popleft()
            frame = link.wait_for(sent)
            if frame is None or frame.status != P.Status.OK or frame.payload.get("offset") != end:
                if sizer is not None:
                    sizer.record(False, chunk_bytes)
                return offset
            if sizer is not None:
                sizer.record(True, chunk_bytes)
            offset = end
            if progress:
                progress(offset, len(data))
        return offset
    finally:
        for sent, _ in inflight:
            link.forget(sent)


def upload(link: Link, data: bytes, chunk_bytes: int = P.DEFAULT_CHUNK_BYTES, progress: ProgressFn | None = None,
           resume_timeout_s: float = RESUME_TIMEOUT_S, window: int = 1,
           sizer: ChunkSizer | None = None) -> tuple[dict, int, int]:
    """Steps 2-3: returns (FLASH_BEGIN answer, first resume offset, number of resumes after a cut).

    ``chunk_bytes`` is the largest chunk; a :class:`ChunkSizer` (pass your own to read its ``history``) shrinks
    it when chunks fail and grows it back when they pass.  Each try of a chunk is a fresh request of the current
    size; an answer lost after the board wrote the chunk comes back as FLASH_OFFSET with the board's offset, which
    is where the next chunk starts.  ``window`` > 1 pipelines that many chunks while the line is clean (no
    recent failure, full-size chunks) and goes one at a time after any hiccup.  No answer at all for
    ``resume_timeout_s``: LinkError, naming a damaging line when damaged frames kept coming, a vanished board
    otherwise (run the same command again to resume).
    """
    sizer = sizer if sizer is not None else ChunkSizer(chunk_bytes)
    sha = hashlib.sha256(data).digest()
    begin_args = {"size": len(data), "sha256": sha}
    retries = max(link.retries, CONTROL_RETRIES)
    begin = link.request(P.Opcode.FLASH_BEGIN, begin_args, retries=retries)
    offset = first = int(begin.get("offset", 0))
    resumes = 0
    if progress:
        progress(offset, len(data))
    last_ok_t = time.monotonic()
    rx_at_last_ok = link.stats.bytes_rx
    while offset < len(data):
        if window > 1 and sizer.size == sizer.max_bytes and sizer.damage_per_byte() == 0:
            reached = _pipelined(link, data, offset, sizer.size, window, progress, sizer)
            if reached != offset:
                offset = reached
                last_ok_t, rx_at_last_ok = time.monotonic(), link.stats.bytes_rx
                continue
        payload = _chunk_payload(data, offset, sizer.size)
        sent = link.send(P.Opcode.FLASH_CHUNK, payload, response_bytes=64)
        frame = link.wait_for(sent)
        status = None if frame is None else frame.status
        if status == P.Status.OK and isinstance(frame.payload.get("offset"), int):
            sizer.record(True, len(payload["data"]))
            offset = int(frame.payload["offset"])
        elif status == P.Status.FLASH_OFFSET and isinstance(frame.payload.get("offset"), int) \
                and 0 <= frame.payload["offset"] <= len(data):
            # an earlier copy got written and its answer lost on the way: go on from where the board is
            sizer.record(True, len(payload["data"]))
            offset = int(frame.payload["offset"])
        elif status is None or status in (P.Status.BAD_FRAME, P.Status.CHUNK_CRC):
            sizer.record(False, len(payload["data"]))
            if time.monotonic() - last_ok_t > resume_timeout_s:
                if link.stats.bytes_rx > rx_at_last_ok and link.stats.line_damaging():
                    raise LinkError(f"{link.url}: the line is damaging frames: no chunk got through for "
                                    f"{resume_timeout_s:.0f} s at byte {offset} of {len(data)}, with chunks down to "
                                    f"{sizer.size} bytes ({link.stats.line_report()}); check the cable and the "
                                    f"baud rate, then run the same flash command again to resume")
                raise LinkError(f"{link.url}: board gone for more than {resume_timeout_s:.0f} s during the upload "
                                f"at byte {offset} of {len(data)}; run the same flash command again to resume")
            if not link.connected or sent.write_failed:
                time.sleep(0.2)  # the board is gone (cable, reboot, crash): wait for it
            continue
        elif status in (P.Status.FLASH_OFFSET, P.Status.APP_ERROR) and frame.payload.get("reason") in (
                "offset_mismatch", "no_flash_in_progress", None):
            # the board restarted or lost our place: begin again with the same hash, it says where to go on
            begin = link.request(P.Opcode.FLASH_BEGIN, begin_args, retries=retries)
            offset = int(begin.get("offset", 0))
            resumes += 1
        else:
            from .link import board_error

            raise board_error(P.Opcode.FLASH_CHUNK, frame)
        last_ok_t, rx_at_last_ok = time.monotonic(), link.stats.bytes_rx
        if progress:
            progress(offset, len(data))
    return begin, first, resumes


def wait_for_verdict(link: Link, slot: str, timeout_s: float = CONFIRM_TIMEOUT_S,
                     log: Callable[[str], None] | None = None) -> dict:
    """After REBOOT: poll INFO until ``slot`` runs confirmed (returns the slot view) or the board runs something
    else (RollbackError with the board's reason).  The board answers nothing while it reboots, so every answer
    after the REBOOT one describes the new boot."""
    deadline = time.monotonic() + timeout_s
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            info = link.request(P.Opcode.INFO, timeout_s=2.0, retries=1)
        except (LinkError, BoardError):
            time.sleep(INFO_POLL_S)
            continue
        view = slot_view(info)
        if view != last and log:
            log(f"board: state {view['state']}, active slot {view['active_slot']}, trial {view['trial']}, "
                f"confirmed slot {view['confirmed_slot']}")
        last = view
        if view["state"] == "running" and view["active_slot"] == slot and view["confirmed_slot"] == slot \
                and not view["trial"]:
            return view
        if view["state"] != "running" or (view["active_slot"] != slot and view["pending_slot"] != slot):
            record = (info.get("slots") or {}).get(slot) or {}
            reason = record.get("bad_reason") or info.get("recovery_reason") or "unknown"
            raise RollbackError(f"board rolled back from slot {slot!r} ({reason}): it runs slot "
                                f"{view['active_slot']!r} in state {view['state']!r}")
        time.sleep(INFO_POLL_S)
    raise ConfirmTimeoutError(f"board did not confirm slot {slot!r} within {timeout_s:.0f} s "
                              f"(last seen: {last or 'no answer'})")


def flash(link: Link, data: bytes, *, name: str = "bundle", trusted_keys: list | None = None,
          chunk_bytes: int = P.DEFAULT_CHUNK_BYTES, progress: ProgressFn | None = None, reboot: bool = True,
          confirm_timeout_s: float = CONFIRM_TIMEOUT_S, resume_timeout_s: float = RESUME_TIMEOUT_S,
          log: Callable[[str], None] | None = None, window: int = 2,
          sizer: ChunkSizer | None = None) -> FlashResult:
    """The whole procedure (steps 1-5 in the module docstring)."""
    retries = max(link.retries, CONTROL_RETRIES)
    info = link.request(P.Opcode.INFO, retries=retries)
    bundle = verify_locally(data, info, trusted_keys, name)
    if log:
        log(f"{name}: {len(data)} bytes, model {bundle.model_version}, signature ok, "
            f"compatible with {info.get('compatible')!r}")
    t0 = time.monotonic()
    begin, first, resumes = upload(link, data, chunk_bytes, progress, resume_timeout_s, window, sizer)
    upload_s = time.monotonic() - t0
    slot = str(begin.get("slot"))
    frame = link.request_frame(P.Opcode.FLASH_END, timeout_s=30.0, retries=retries)
    if frame.status != P.Status.OK:
        reason = frame.payload.get("reason") or frame.status
        raise FlashRejectedError(f"board rejected the uploaded bundle in slot {slot}: {reason}: "
                                 f"{frame.payload.get('error', '')}", frame.status, frame.payload)
    result = FlashResult(slot=slot, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                         model_version=bundle.model_version, resumed_from=first, resumes=resumes,
                         upload_s=upload_s, rate_bytes_s=(len(data) - first) / max(upload_s, 1e-9))
    if not reboot:
        return result
    if log:
        log(f"slot {slot} pending; rebooting into it on trial")
    link.request(P.Opcode.REBOOT, timeout_s=30.0, retries=retries)
    result.final_state = wait_for_verdict(link, slot, confirm_timeout_s, log)
    result.confirmed = True
    return result
