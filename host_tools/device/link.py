"""The host side of the serial protocol: one port, requests with timeouts and retries, events, reconnect.

One job: talk to a board.  Opens any pyserial name or URL (``/dev/ttyUSB0``, ``/dev/pts/N`` or a symlink to one,
``socket://host:port``, ``rfc2217://host:port``, ``loop://``).  A reader thread decodes frames; responses wake
the request waiting on their ``seq``, events go to ``on_event`` (and to :meth:`Link.next_event`).  When the port
disappears (cable pulled, virtual board restarted) the reader closes it and reopens the same name every
``reconnect_interval_s`` until it is back; requests waiting meanwhile are retried when it returns.

Must not import torch or OpenCV.
"""
from __future__ import annotations

import queue
import termios
import threading
import time
from dataclasses import dataclass
from typing import Callable

import serial

from wearface.firmware import protocol as P

from ..errors import BoardError, LinkError, NoFaceError, SeveralFacesError, UnknownNameError

DEFAULT_TIMEOUT_S = 3.0
DEFAULT_RETRIES = 4
RECONNECT_INTERVAL_S = 0.2
READ_POLL_S = 0.05
#: per attempt the timeout grows by the time the bytes need on the wire, times this margin
WIRE_MARGIN = 2.0

STATUS_ERRORS = {
    P.Status.NO_FACE: NoFaceError,
    P.Status.MANY_FACES: SeveralFacesError,
    P.Status.NOT_FOUND: UnknownNameError,
}
#: statuses that say "this copy of the request did not arrive intact": send it again
RESEND_STATUSES = {P.Status.BAD_FRAME, P.Status.CHUNK_CRC}
#: bytes of a kept answer asked for per ANSWER_PART: a part's round trip is ~200 bytes, which crosses a line
#: flipping 1 % of its bytes in one of ~8 tries (a whole 1 KB INFO answer: one in 20,000)
ANSWER_PART_BYTES = 48
#: tries per part: at 1 % flipped bytes a part fails 87 % of the time
ANSWER_PART_RETRIES = 100


@dataclass
class LinkStats:
    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    bad_frames_rx: int = 0
    reconnects: int = 0
    events: int = 0
    events_lost: int = 0
    bytes_tx: int = 0
    bytes_rx: int = 0
    #: intact frames received (answers and events): with bad_frames_rx, how much the line damages
    frames_rx: int = 0
    #: BAD_FRAME answers: requests the board received damaged
    bad_frames_reported: int = 0
    #: long answers fetched in pieces (ANSWER_PART) because whole copies kept arriving damaged
    answers_in_parts: int = 0

    def line_report(self) -> str:
        """``N of M frames received bad, K requests arrived damaged at the board``: what the line does."""
        total = self.frames_rx + self.bad_frames_rx
        return (f"{self.bad_frames_rx} of {total} frames received bad (CRC/framing errors), "
                f"{self.bad_frames_reported} requests arrived damaged at the board, {self.retries} resends")

    def line_damaging(self) -> bool:
        return self.bad_frames_rx + self.bad_frames_reported > 0


class _Pending:
    __slots__ = ("seq", "done", "frame", "resend")

    def __init__(self, seq: int):
        self.seq = seq
        self.done = threading.Event()
        self.frame: P.Frame | None = None
        self.resend = threading.Event()


class Sent:
    """A request written by :meth:`Link.send`, awaiting its answer."""

    __slots__ = ("pending", "attempt_s", "sent_t", "write_failed")

    def __init__(self, pending: _Pending, attempt_s: float):
        self.pending = pending
        self.attempt_s = attempt_s
        self.sent_t = time.monotonic()
        self.write_failed = False


class Link:
    """A connection to one board.  Use as a context manager; thread-safe for requests.

    ``baud`` is passed to pyserial (a pty ignores it); ``timeout_s`` is per attempt, before the wire-time
    allowance; ``on_event(frame)`` runs on the reader thread for each EVENT frame; ``on_raw(bytes)`` sees
    every byte read (the monitor's hex view); ``on_link(up: bool)`` is told about disconnects and reconnects.
    """

    def __init__(self, url: str, baud: int = 115200, timeout_s: float = DEFAULT_TIMEOUT_S,
                 retries: int = DEFAULT_RETRIES, reconnect: bool = True,
                 on_event: Callable[[P.Frame], None] | None = None,
                 on_raw: Callable[[bytes], None] | None = None,
                 on_link: Callable[[bool], None] | None = None,
                 open_timeout_s: float = 5.0):
        self.url = url
        self.baud = baud
        self.timeout_s = timeout_s
        self.retries = retries
        self.reconnect = reconnect
        self.on_event = on_event
        self.on_raw = on_raw
        self.on_link = on_link
        self.open_timeout_s = open_timeout_s
        self.stats = LinkStats()
        self._ser: serial.SerialBase | None = None
        self._connected = threading.Event()
        self._closing = threading.Event()
        self._write_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._pending_lock = threading.Lock()
        self._seq = int(time.time() * 1000) & 0x7FFF  # a fresh start per session keeps old answers apart
        self._events: queue.Queue = queue.Queue(maxsize=10000)
        self._last_event_seq: int | None = None
        self._reader: threading.Thread | None = None
        self._last_open_error: Exception | None = None
        #: None: unknown whether the board answers ANSWER_PART; False: it does not (an older firmware)
        self._parts_ok: bool | None = None

    # -- lifecycle

    def open(self) -> "Link":
        """Open the port (waiting up to ``open_timeout_s`` for it to appear) and start the reader."""
        self._closing.clear()
        deadline = time.monotonic() + self.open_timeout_s
        while not self._try_open():
            if time.monotonic() >= deadline:
                raise LinkError(f"serial port {self.url}: cannot open ({self._last_open_error})")
            time.sleep(RECONNECT_INTERVAL_S)
        self._reader = threading.Thread(target=self._read_loop, name=f"link-reader {self.url}", daemon=True)
        self._reader.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        self._drop_port()

    def __enter__(self) -> "Link":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _try_open(self) -> bool:
        try:
            ser = serial.serial_for_url(self.url, baudrate=self.baud, timeout=READ_POLL_S, write_timeout=2.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._last_open_error = exc
            return False
        self._ser = ser
        self._connected.set()
        return True

    def _drop_port(self) -> None:
        self._connected.clear()
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # closing a vanished device may fail in many ways; it is gone either way
                pass

    # -- reader

    def _read_loop(self) -> None:
        decoder = P.FrameDecoder()
        while not self._closing.is_set():
            ser = self._ser
            if ser is None:
                if not self.reconnect:
                    time.sleep(READ_POLL_S)
                    continue
                if self._try_open():
                    self.stats.reconnects += 1
                    decoder = P.FrameDecoder()
                    if self.on_link:
                        self._call(self.on_link, True)
                    self._wake_all_for_resend()
                else:
                    time.sleep(RECONNECT_INTERVAL_S)
                continue
            try:
                data = ser.read(max(1, ser.in_waiting))
            except (serial.SerialException, OSError, termios.error, TypeError, AttributeError):
                # termios.error (tcdrain on a vanished pty) is no OSError; TypeError/AttributeError: pyserial
                # racing with close() on a vanished fd
                self._drop_port()
                if self.on_link and not self._closing.is_set():
                    self._call(self.on_link, False)
                continue
            if not data:
                continue
            self.feed(decoder, data)

    def feed(self, decoder: P.FrameDecoder, data: bytes) -> None:
        """Bytes read from the port -> responses to waiting requests, events to their consumers."""
        self.stats.bytes_rx += len(data)
        if self.on_raw:
            self._call(self.on_raw, data)
        for item in decoder.feed(data):
            if isinstance(item, P.Frame):
                self.stats.frames_rx += 1
                self._dispatch(item)
            else:
                # most likely an answer damaged on the way: resend now rather than wait out the timeout (the
                # board answers a repeated request from memory, so an extra resend costs only line time)
                self.stats.bad_frames_rx += 1
                self._wake_all_for_resend()

    @staticmethod
    def _call(callback, arg) -> None:
        """Run a user callback on the reader thread; its failure must not stop the reader."""
        try:
            callback(arg)
        except Exception:  # noqa: BLE001
            import traceback

            traceback.print_exc()

    def _dispatch(self, frame: P.Frame) -> None:
        if frame.kind == P.Kind.RESPONSE:
            if frame.seq == P.RESPONSE_SEQ_UNKNOWN and frame.status == P.Status.BAD_FRAME:
                self.stats.bad_frames_reported += 1
                self._wake_all_for_resend()
                return
            with self._pending_lock:
                pending = self._pending.get(frame.seq)
            if pending is not None and pending.frame is None:
                pending.frame = frame
                pending.done.set()
        elif frame.kind == P.Kind.EVENT:
            self.stats.events += 1
            if self._last_event_seq is not None:
                gap = (frame.seq - self._last_event_seq - 1) % P.EVENT_SEQ_MODULO
                if gap < 1000:  # a bigger jump is a restarted board, not loss
                    self.stats.events_lost += gap
            self._last_event_seq = frame.seq
            if self.on_event:
                self._call(self.on_event, frame)
            try:
                self._events.put_nowait(frame)
            except queue.Full:
                pass

    def _wake_all_for_resend(self) -> None:
        with self._pending_lock:
            for pending in self._pending.values():
                pending.resend.set()

    def next_event(self, timeout_s: float | None = None) -> P.Frame | None:
        """The oldest unread event frame, or None after ``timeout_s``."""
        try:
            return self._events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    # -- requests

    def _next_seq(self) -> int:
        with self._pending_lock:
            self._seq = (self._seq + 1) % P.RESPONSE_SEQ_UNKNOWN  # never the "unknown" seq
            return self._seq

    def _write(self, data: bytes, deadline: float) -> bool:
        """Write ``data``; False when the port is gone and does not come back before ``deadline``."""
        while time.monotonic() < deadline and not self._closing.is_set():
            if not self._connected.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic()))):
                continue
            with self._write_lock:
                ser = self._ser
                if ser is None:
                    continue
                try:
                    ser.write(data)
                    ser.flush()
                    self.stats.bytes_tx += len(data)
                    return True
                except (serial.SerialException, OSError, termios.error, TypeError, AttributeError):
                    self._drop_port()
        return False

    def attempt_timeout_s(self, request_bytes: int, response_bytes: int = 256, timeout_s: float | None = None) -> float:
        wire_s = (request_bytes + response_bytes) * 10 / max(self.baud, 1)
        return (self.timeout_s if timeout_s is None else timeout_s) + WIRE_MARGIN * wire_s

    def send(self, opcode: P.Opcode, payload: dict | None = None, timeout_s: float | None = None,
             response_bytes: int = 256) -> "Sent":
        """Write one request without waiting (pipelining); ``wait_for`` its answer.  No retries: the caller
        decides what a lost answer means.  Always ``forget`` it (``wait_for`` does) so its seq is released."""
        seq = self._next_seq()
        data = P.encode_frame(P.Kind.REQUEST, seq, opcode, payload)
        pending = _Pending(seq)
        with self._pending_lock:
            self._pending[seq] = pending
        self.stats.requests += 1
        attempt_s = self.attempt_timeout_s(len(data), response_bytes, timeout_s)
        sent = Sent(pending, attempt_s)
        if not self._write(data, time.monotonic() + attempt_s):
            sent.write_failed = True
        return sent

    def wait_for(self, sent: "Sent") -> P.Frame | None:
        """The answer to a :meth:`send`, or None (timed out, damaged on the way, or never written)."""
        try:
            if sent.write_failed:
                return None
            deadline = sent.sent_t + sent.attempt_s
            while time.monotonic() < deadline:
                if sent.pending.done.wait(timeout=0.02):
                    return sent.pending.frame
                if sent.pending.resend.is_set():
                    return None
            self.stats.timeouts += 1
            return None
        finally:
            self.forget(sent)

    def forget(self, sent: "Sent") -> None:
        with self._pending_lock:
            self._pending.pop(sent.pending.seq, None)

    def request_frame(self, opcode: P.Opcode, payload: dict | None = None, timeout_s: float | None = None,
                      retries: int | None = None, response_bytes: int = 256) -> P.Frame:
        """Send one request; return the board's RESPONSE frame, whatever its status.

        Resends the same frame (same seq, so the board answers from its memory instead of acting twice) when an
        attempt times out, the answer says the request arrived damaged, or the port came back after a drop.
        When copies keep arriving damaged (a long answer on a line that flips bytes), the answer is fetched from
        the board's memory in small pieces (ANSWER_PART; skipped with boards that do not know it).
        Raises LinkError after ``retries`` resends without an answer; its message names a damaging line.
        """
        retries = self.retries if retries is None else retries
        seq = self._next_seq()
        data = P.encode_frame(P.Kind.REQUEST, seq, opcode, payload)
        damaged_before = self.stats.bad_frames_rx + self.stats.bad_frames_reported
        pending = _Pending(seq)
        with self._pending_lock:
            self._pending[seq] = pending
        self.stats.requests += 1
        attempt_s = self.attempt_timeout_s(len(data), response_bytes, timeout_s)
        try:
            for attempt in range(retries + 1):
                if attempt:
                    self.stats.retries += 1
                pending.resend.clear()
                deadline = time.monotonic() + attempt_s
                if not self._write(data, deadline):
                    self.stats.timeouts += 1
                    continue
                while time.monotonic() < deadline:
                    if pending.done.wait(timeout=0.02):
                        break
                    if pending.resend.is_set():
                        break
                if pending.done.is_set():
                    frame = pending.frame
                    if frame.status in RESEND_STATUSES and attempt < retries:
                        pending.frame = None
                        pending.done.clear()
                        continue
                    return frame
                if not pending.resend.is_set():
                    self.stats.timeouts += 1
                damaged = self.stats.bad_frames_rx + self.stats.bad_frames_reported > damaged_before
                if attempt >= 1 and damaged and opcode != P.Opcode.ANSWER_PART and self._parts_ok is not False:
                    frame = self._fetch_answer(seq, opcode, P.frame_crc(data))
                    if frame is not None:
                        return frame
            what = Opcode_name(opcode)
            if self.stats.bad_frames_rx + self.stats.bad_frames_reported > damaged_before:
                raise LinkError(f"{self.url}: the line is damaging frames: no intact answer to {what} after "
                                f"{retries + 1} attempts ({self.stats.line_report()}); check the cable, its "
                                f"length and the baud rate")
            state = "connected" if self.connected else "port missing"
            raise LinkError(f"{self.url}: no answer to {what} after {retries + 1} attempts of {attempt_s:.1f} s "
                            f"({state}; {self.stats.bad_frames_rx} damaged frames received)")
        finally:
            with self._pending_lock:
                self._pending.pop(seq, None)

    def _fetch_answer(self, seq: int, opcode: int, crc: int) -> P.Frame | None:
        """The board's kept answer to request (seq, opcode, crc), fetched ANSWER_PART_BYTES at a time; None when
        the board has none (the request never arrived intact: resend it) or does not know ANSWER_PART."""
        buf = bytearray()
        total: int | None = None
        while total is None or len(buf) < total:
            frame = self.request_frame(P.Opcode.ANSWER_PART, {"seq": seq, "code": int(opcode), "crc": crc,
                                                              "offset": len(buf), "size": ANSWER_PART_BYTES},
                                       retries=max(self.retries, ANSWER_PART_RETRIES))
            if frame.status in (P.Status.UNKNOWN_OPCODE, P.Status.BAD_REQUEST):
                self._parts_ok = False
                return None
            if frame.status != P.Status.OK:
                return None
            self._parts_ok = True
            piece, total = frame.payload.get("data"), frame.payload.get("total")
            if not isinstance(piece, bytes) or type(total) is not int or not piece and len(buf) < total:
                return None
            buf += piece
        self.stats.answers_in_parts += 1
        for item in P.FrameDecoder().feed(bytes(buf)):
            if isinstance(item, P.Frame) and item.kind == P.Kind.RESPONSE and item.seq == seq:
                return item
        return None

    def request(self, opcode: P.Opcode, payload: dict | None = None, timeout_s: float | None = None,
                retries: int | None = None, response_bytes: int = 256) -> dict:
        """Send one request and return the OK answer's payload; a non-OK status raises BoardError (or a subclass)."""
        frame = self.request_frame(opcode, payload, timeout_s, retries, response_bytes)
        if frame.status != P.Status.OK:
            raise board_error(opcode, frame)
        return frame.payload


def Opcode_name(code: int) -> str:
    try:
        return P.Opcode(code).name
    except ValueError:
        return f"opcode {code}"


def status_name(status: int) -> str:
    try:
        return P.Status(status).name
    except ValueError:
        return f"status {status}"


def board_error(opcode: int, frame: P.Frame) -> BoardError:
    """The error a non-OK answer becomes: message says request, status and the board's own words."""
    message = frame.payload.get("error", "") if isinstance(frame.payload, dict) else ""
    cls = STATUS_ERRORS.get(frame.status, BoardError)
    return cls(f"board refused {Opcode_name(opcode)}: {status_name(frame.status)}"
               + (f": {message}" if message else ""), frame.status, frame.payload)
