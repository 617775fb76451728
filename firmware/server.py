"""The board side of the serial protocol: read frames, call the app, answer, push events.

One job: the request/response loop over one serial line.  It knows the protocol (``protocol.py``) and the
``BoardApp`` interface (``firmware/app.py``), nothing about models, slots or cameras.  Must not import torch.

Entry point used by ``python -m wearface.firmware``::

    serve(port_spec, app, stop_event=None, baud=115200)

``port_spec`` is ``fd:N`` (an already-open file descriptor, e.g. the master side of the virtual board's pty)
or anything pyserial opens (``/dev/ttyS0``, ``/dev/ttyGS0``, ``/dev/pts/3``, ``socket://host:port``).
``serve`` returns when ``stop_event`` is set; it never returns because of what arrives on the line: a bad frame
is answered ``BAD_FRAME``, an unknown opcode ``UNKNOWN_OPCODE``, an app exception its mapped status, and the loop
keeps running.  When the host goes away (pty closed, cable pulled) the server waits for it and drops events it
cannot send instead of blocking the app.

The app (duck-typed ``BoardApp``) must offer: ``info() -> dict``, ``flash_begin(size, sha256: bytes) ->
{"slot", "offset"}``, ``flash_chunk(offset, data: bytes) -> new_offset``, ``flash_end() -> dict``, ``reboot()``,
``enroll_images(name, images: list[np.ndarray HxWx3 uint8 RGB]) -> dict``, ``enroll_from_camera(name, n_frames)
-> dict``, ``gallery_list() -> list[dict]``, ``gallery_delete(name) -> int``, ``set_debug_embeddings(on)``,
``stats() -> dict``, ``log_tail(n) -> list[str]``, ``subscribe(callback)`` (callback(event: dict) with keys
"event", "t" and the payload; numpy arrays in it travel as binary).

``reboot``: the server sends the OK answer and drains its output first, then calls ``app.reboot()``.  If that
returns, the loop continues (the app decides how a reboot happens, e.g. by setting ``stop_event`` and exiting
so that the supervisor — systemd, or the virtual board — starts the firmware again).

Errors raised by the app map to statuses: ``ReasonError.reason`` (see ``REASON_STATUS``), ``BundleError`` ->
FLASH_REJECTED, ``LookupError`` -> NOT_FOUND, ``ValueError``/``TypeError`` -> BAD_REQUEST, other
``FirmwareError`` -> APP_ERROR, anything else -> INTERNAL_ERROR (logged with its traceback).
"""
from __future__ import annotations

import errno
import logging
import os
import queue
import select
import termios
import threading
import time
import traceback
import zlib
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from . import protocol as P
from .errors import BundleError, FirmwareError

log = logging.getLogger("wearface.firmware.server")

#: events waiting to be written beyond this are dropped (counted in ``events_dropped``): never block the app
MAX_PENDING_EVENTS = 256
#: a frame the line cannot take within this is dropped (host gone, flow control stuck)
WRITE_TIMEOUT_S = 2.0
#: answers remembered per (seq, code, crc) so that a retried request is answered again, not executed twice
DEDUP_ENTRIES = 32
READ_POLL_S = 0.05
#: pause after the host side is found closed (EIO on a pty), before polling it again
HOST_GONE_POLL_S = 0.05

REASON_STATUS = {
    "unknown_name": P.Status.NOT_FOUND,
    "no_face": P.Status.NO_FACE,
    "several_faces": P.Status.MANY_FACES,
    "offset_mismatch": P.Status.FLASH_OFFSET,
    "hash_mismatch": P.Status.FLASH_REJECTED,
    "bundle_invalid": P.Status.FLASH_REJECTED,
    "slot_busy": P.Status.BUSY,
    "busy": P.Status.BUSY,
    "bad_name": P.Status.BAD_REQUEST,
    "bad_embedding": P.Status.BAD_REQUEST,
    "size_exceeded": P.Status.BAD_REQUEST,
}


# ---------------------------------------------------------------- ports


class FdPort:
    """A serial line given as an open file descriptor (the board's end of a pty).  Never blocks long."""

    def __init__(self, fd: int):
        self.fd = fd
        os.set_blocking(fd, False)
        self.host_present = True

    def read(self, timeout_s: float) -> bytes:
        readable, _, _ = select.select([self.fd], [], [], timeout_s)
        if not readable:
            return b""
        try:
            data = os.read(self.fd, 65536)
            self.host_present = True
            return data
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            # EIO on a pty master: no host has the other end open; wait for one
            self.host_present = False
            time.sleep(HOST_GONE_POLL_S)
            return b""

    def write(self, data: bytes, timeout_s: float) -> bool:
        view = memoryview(data)
        deadline = time.monotonic() + timeout_s
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _, writable, _ = select.select([], [self.fd], [], left)
            if not writable:
                return False
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return False
                raise
            view = view[n:]
        return True

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class SerialPort:
    """A serial line opened with pyserial (a UART, a USB gadget tty, a pty slave, a socket:// URL).

    If the device vanishes (a USB gadget unplugged) it is closed and reopened by name at the next reads."""

    def __init__(self, url: str, baud: int):
        import serial

        self._serial_mod = serial
        self.url = url
        self.baud = baud
        self.ser = self._open()

    def _open(self):
        return self._serial_mod.serial_for_url(self.url, baudrate=self.baud, timeout=READ_POLL_S,
                                               write_timeout=WRITE_TIMEOUT_S)

    def _lost(self) -> None:
        try:
            if self.ser is not None:
                self.ser.close()
        except Exception:  # noqa: BLE001 - closing a vanished device fails in many ways
            pass
        self.ser = None
        time.sleep(HOST_GONE_POLL_S)

    def read(self, timeout_s: float) -> bytes:
        if self.ser is None:
            try:
                self.ser = self._open()
            except Exception:  # noqa: BLE001 - still gone; try again at the next read
                time.sleep(HOST_GONE_POLL_S)
                return b""
        self.ser.timeout = timeout_s
        try:
            first = self.ser.read(1)
            if not first:
                return b""
            return first + self.ser.read(self.ser.in_waiting or 0)
        except (self._serial_mod.SerialException, OSError, termios.error, TypeError, AttributeError):
            self._lost()
            return b""

    def write(self, data: bytes, timeout_s: float) -> bool:
        ser = self.ser
        if ser is None:
            return False
        try:
            ser.write_timeout = timeout_s
            ser.write(data)
            return True
        except (self._serial_mod.SerialException, OSError, termios.error, TypeError, AttributeError):
            return False

    def close(self) -> None:
        if self.ser is not None:
            self.ser.close()


def open_port(port_spec: str, baud: int = 115200):
    """``fd:N`` -> FdPort, anything else -> pyserial.  Raises FirmwareError naming the spec on failure."""
    if port_spec.startswith("fd:"):
        try:
            fd = int(port_spec[3:])
            os.fstat(fd)
        except (ValueError, OSError) as exc:
            raise FirmwareError(f"serial port {port_spec!r}: not an open file descriptor ({exc})") from exc
        return FdPort(fd)
    try:
        return SerialPort(port_spec, baud)
    except Exception as exc:  # pyserial raises SerialException / ValueError / OSError
        raise FirmwareError(f"serial port {port_spec!r}: cannot open ({exc})") from exc


# ---------------------------------------------------------------- server


class RequestError(Exception):
    """Raised inside a handler to answer with ``status`` and ``payload`` (never leaves this module)."""

    def __init__(self, status: P.Status, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.extra = extra


def _require(payload: dict, key: str, kind: type | tuple):
    value = payload.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RequestError(P.Status.BAD_REQUEST, f"argument {key!r}: expected {names}, found {type(value).__name__}")
    return value


def decode_image(item: Any) -> np.ndarray:
    """An uploaded image (encoded PNG/JPEG bytes, or a uint8 HxWx3 RGB array) -> HxWx3 uint8 RGB."""
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
            raise RequestError(P.Status.BAD_REQUEST, f"image array: expected HxWx3 uint8, found {item.dtype}{list(item.shape)}")
        return item
    if isinstance(item, bytes):
        import cv2

        bgr = cv2.imdecode(np.frombuffer(item, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RequestError(P.Status.BAD_REQUEST, f"image: {len(item)} bytes that OpenCV cannot decode")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    raise RequestError(P.Status.BAD_REQUEST, f"image: expected encoded bytes or an array, found {type(item).__name__}")


class Server:
    """One serial line, one app.  ``run(stop_event)`` is the loop; ``counters`` says what happened."""

    def __init__(self, port, app, write_timeout_s: float = WRITE_TIMEOUT_S):
        self.port = port
        self.app = app
        self.write_timeout_s = write_timeout_s
        self.decoder = P.FrameDecoder()
        self._out: queue.Queue = queue.Queue()
        self._events_pending = 0
        self._lock = threading.Lock()
        self._event_seq = 0
        self._answers: OrderedDict = OrderedDict()
        self.counters = {"requests": 0, "bad_frames": 0, "events_sent": 0, "events_dropped": 0,
                         "frames_dropped": 0, "app_errors": 0}
        self.handlers: dict[int, Callable[[dict], Any]] = {
            P.Opcode.PING: lambda p: {"t": time.time()},
            P.Opcode.INFO: self._info,
            P.Opcode.FLASH_BEGIN: self._flash_begin,
            P.Opcode.FLASH_CHUNK: self._flash_chunk,
            P.Opcode.FLASH_END: lambda p: self.app.flash_end(),
            P.Opcode.REBOOT: lambda p: {"rebooting": True},
            P.Opcode.ENROLL_IMAGES: self._enroll_images,
            P.Opcode.ENROLL_CAMERA: self._enroll_camera,
            P.Opcode.GALLERY_LIST: lambda p: {"people": self.app.gallery_list()},
            P.Opcode.GALLERY_DELETE: lambda p: {"deleted": self.app.gallery_delete(_require(p, "name", str))},
            P.Opcode.DEBUG_EMBEDDINGS: self._debug_embeddings,
            P.Opcode.STATS: lambda p: dict(self.app.stats(), serial=dict(self.counters)),
            P.Opcode.LOG_TAIL: lambda p: {"lines": self.app.log_tail(int(p.get("n", 50)))},
        }

    # -- handlers (payload dict -> result dict)

    def _info(self, payload: dict) -> dict:
        info = dict(self.app.info())
        info.setdefault("protocol", P.PROTOCOL_VERSION)
        info.setdefault("max_body_bytes", P.MAX_BODY_BYTES)
        return info

    def _flash_begin(self, payload: dict) -> dict:
        size = _require(payload, "size", int)
        sha = _require(payload, "sha256", (bytes, str))
        if isinstance(sha, str):
            try:
                sha = bytes.fromhex(sha)
            except ValueError as exc:
                raise RequestError(P.Status.BAD_REQUEST, f"argument 'sha256': not hex ({exc})") from exc
        if len(sha) != 32:
            raise RequestError(P.Status.BAD_REQUEST, f"argument 'sha256': expected 32 bytes, found {len(sha)}")
        return dict(self.app.flash_begin(size, sha))

    def _flash_chunk(self, payload: dict) -> dict:
        offset = _require(payload, "offset", int)
        data = _require(payload, "data", bytes)
        crc = payload.get("crc32")
        if crc is not None and zlib.crc32(data) != crc:
            raise RequestError(P.Status.CHUNK_CRC, f"chunk at {offset}: crc32 {zlib.crc32(data):08x}, "
                                                   f"request says {crc:08x}")
        return {"offset": int(self.app.flash_chunk(offset, data))}

    def _enroll_images(self, payload: dict) -> dict:
        name = _require(payload, "name", str)
        items = _require(payload, "images", list)
        if not items:
            raise RequestError(P.Status.BAD_REQUEST, "argument 'images': empty list")
        return dict(self.app.enroll_images(name, [decode_image(i) for i in items]))

    def _enroll_camera(self, payload: dict) -> dict:
        return dict(self.app.enroll_from_camera(_require(payload, "name", str), int(payload.get("n_frames", 10))))

    def _debug_embeddings(self, payload: dict) -> dict:
        on = bool(payload.get("on", True))
        self.app.set_debug_embeddings(on)
        return {"on": on}

    # -- output

    def _send(self, data: bytes, droppable: bool) -> None:
        with self._lock:
            if droppable:
                if self._events_pending >= MAX_PENDING_EVENTS:
                    self.counters["events_dropped"] += 1
                    return
                self._events_pending += 1
        self._out.put((data, droppable))

    def push_event(self, event: dict) -> None:
        """The app's subscribe callback: queue an event frame; drop it if the line is backed up."""
        with self._lock:
            seq = self._event_seq
            self._event_seq = (self._event_seq + 1) % P.EVENT_SEQ_MODULO
        try:
            data = P.encode_frame(P.Kind.EVENT, seq, 0, event)
        except P.ProtocolError as exc:
            log.warning("event %r not sent: %s", event.get("event"), exc)
            self.counters["events_dropped"] += 1
            return
        self._send(data, droppable=True)

    def _writer(self, stop_event: threading.Event) -> None:
        while not stop_event.is_set():
            try:
                data, droppable = self._out.get(timeout=0.1)
            except queue.Empty:
                continue
            if data is None:
                self._out.task_done()
                continue
            try:
                ok = self.port.write(data, self.write_timeout_s)
            except OSError as exc:  # a line fault must not end the writer: the frame is lost, like on a wire
                log.warning("serial write failed: %s", exc)
                ok = False
            with self._lock:
                if droppable:
                    self._events_pending -= 1
                    self.counters["events_sent" if ok else "events_dropped"] += 1
                elif not ok:
                    self.counters["frames_dropped"] += 1
            self._out.task_done()

    def _drain(self, timeout_s: float = 2.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._out.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    # -- input

    def _answer(self, seq: int, code: int, status: P.Status, payload: dict, key=None) -> None:
        try:
            data = P.encode_frame(P.Kind.RESPONSE, seq, code, payload, status)
        except P.ProtocolError as exc:
            data = P.encode_frame(P.Kind.RESPONSE, seq, code, {"error": f"answer not encodable: {exc}"},
                                  P.Status.INTERNAL_ERROR)
        if key is not None:
            self._answers[key] = data
            while len(self._answers) > DEDUP_ENTRIES:
                self._answers.popitem(last=False)
        self._send(data, droppable=False)

    def _status_for(self, exc: Exception) -> tuple[P.Status, dict]:
        extra: dict = {"error": str(exc) or exc.__class__.__name__}
        if isinstance(exc, RequestError):
            extra.update(exc.extra)
            return exc.status, extra
        if isinstance(exc, BundleError):
            extra.update(reason=exc.reason.name.lower(), offset=exc.offset)
            return P.Status.FLASH_REJECTED, extra
        reason = getattr(exc, "reason", None)
        if isinstance(reason, str):
            extra["reason"] = reason
            for attr in ("offset", "expected", "found"):
                if isinstance(getattr(exc, attr, None), (int, str)):
                    extra[attr] = getattr(exc, attr)
            return REASON_STATUS.get(reason, P.Status.APP_ERROR), extra
        if isinstance(exc, LookupError):
            return P.Status.NOT_FOUND, extra
        if isinstance(exc, (ValueError, TypeError)):
            return P.Status.BAD_REQUEST, extra
        if isinstance(exc, FirmwareError):
            return P.Status.APP_ERROR, extra
        log.error("request failed with a bug:\n%s", traceback.format_exc())
        extra["error"] = f"{exc.__class__.__name__}: {exc}"
        return P.Status.INTERNAL_ERROR, extra

    def handle(self, frame: P.Frame) -> None:
        if frame.kind != P.Kind.REQUEST:
            return  # the host never sends responses or events; ignore echoes
        key = (frame.seq, frame.code, frame.crc)
        if key in self._answers:
            self._send(self._answers[key], droppable=False)
            return
        self.counters["requests"] += 1
        handler = self.handlers.get(frame.code)
        if handler is None:
            self._answer(frame.seq, frame.code, P.Status.UNKNOWN_OPCODE,
                         {"error": f"unknown opcode {frame.code}", "known": [int(o) for o in P.Opcode]}, key)
            return
        try:
            result = handler(frame.payload)
            status = P.Status.OK
        except Exception as exc:  # every app failure becomes a status; the loop goes on
            self.counters["app_errors"] += 1
            status, result = self._status_for(exc)
        self._answer(frame.seq, frame.code, status, result if isinstance(result, dict) else {"result": result}, key)
        if frame.code == P.Opcode.REBOOT and status == P.Status.OK:
            self._drain()
            try:
                self.app.reboot()
            except Exception:  # noqa: BLE001 - the answer is sent; a failed reboot must not end the server
                self.counters["app_errors"] += 1
                log.error("reboot failed:\n%s", traceback.format_exc())

    def _fault(self, fault: P.DecodeFault) -> None:
        self.counters["bad_frames"] += 1
        if fault.header is not None and fault.header[0] == P.Kind.REQUEST:
            _, seq, code = fault.header
            self._answer(seq, code, fault.error.status, {"error": str(fault.error)})
        elif fault.raw:
            # seq unknown: one BAD_FRAME tells the host to resend what it is waiting for
            self._answer(P.RESPONSE_SEQ_UNKNOWN, 0, P.Status.BAD_FRAME, {"error": str(fault.error)})

    def run(self, stop_event: threading.Event | None = None) -> None:
        stop_event = stop_event or threading.Event()
        writer_stop = threading.Event()
        writer = threading.Thread(target=self._writer, args=(writer_stop,), name="serial-writer", daemon=True)
        writer.start()
        subscribe = getattr(self.app, "subscribe", None)
        if subscribe is not None:
            subscribe(self.push_event)
        try:
            while not stop_event.is_set():
                try:
                    data = self.port.read(READ_POLL_S)
                except OSError as exc:
                    self.counters["read_errors"] = self.counters.get("read_errors", 0) + 1
                    log.warning("serial read failed: %s", exc)
                    time.sleep(HOST_GONE_POLL_S * 4)
                    continue
                if not data:
                    continue
                for item in self.decoder.feed(data):
                    if isinstance(item, P.Frame):
                        self.handle(item)
                    else:
                        self._fault(item)
        finally:
            self._drain(0.5)
            writer_stop.set()
            writer.join(timeout=1.0)


def serve(port_spec: str, app, stop_event: threading.Event | None = None, baud: int = 115200) -> None:
    """Open ``port_spec`` (``fd:N`` or a pyserial name/URL) and answer the host until ``stop_event`` is set."""
    port = open_port(port_spec, baud)
    try:
        Server(port, app).run(stop_event)
    finally:
        port.close()
