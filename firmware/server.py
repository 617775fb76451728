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
-> dict``, ``gallery_list() -> list[dict]``, ``gallery_delete(name) -> int``, ``set_debug_embeddings(on,
reason="request")``,
``stats() -> dict``, ``log_tail(n) -> list[str]``, ``subscribe(callback)`` (callback(event: dict) with keys
"event", "t" and the payload; numpy arrays in it travel as binary).

``reboot``: the server sends the OK answer and drains its output first, then calls ``app.reboot()``.  If that
returns, the loop continues (the app decides how a reboot happens, e.g. by setting ``stop_event`` and exiting
so that the supervisor — systemd, or the virtual board — starts the firmware again).

Every request's arguments are checked first (``request_args.py``: type, range, size; BAD_REQUEST naming the
argument), uploaded images against the board's pixel budget from their header before decoding (``images.py``).
Errors raised by the app map to statuses: ``RequestError.status``, ``ReasonError.reason`` (see
``REASON_STATUS``), ``BundleError`` -> FLASH_REJECTED, ``LookupError`` -> NOT_FOUND, ``ValueError``/``TypeError``
-> BAD_REQUEST, other ``FirmwareError`` -> APP_ERROR, anything else -> INTERNAL_ERROR (a bug: logged with its
traceback).

Debug embeddings are biometric data, so they belong to the host session that asked for them: the server switches
them off (``app.set_debug_embeddings(False, reason=...)``) when that host's end of the line closes (``host_gone``:
EIO on the pty, the USB device vanished) or when no request has arrived for ``debug_idle_s`` seconds
(``host_silent``; default ``protocol.DEBUG_SESSION_IDLE_S``; a host that wants them keeps the session alive with
any request, e.g. PING), and after a REBOOT.  Nothing switches them on but a DEBUG_EMBEDDINGS request.
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

from . import protocol as P
from .errors import BundleError, FirmwareError, RequestError
from .images import DEFAULT_MAX_IMAGE_PIXELS, decode_image
from .request_args import parse_arguments

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
    "bad_request": P.Status.BAD_REQUEST,
    "bad_image": P.Status.BAD_REQUEST,
    "image_too_large": P.Status.BAD_REQUEST,
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
        #: False from the moment the device is found gone until it is reopened
        self.host_present = True

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
        self.host_present = False
        time.sleep(HOST_GONE_POLL_S)

    def read(self, timeout_s: float) -> bytes:
        if self.ser is None:
            try:
                self.ser = self._open()
                self.host_present = True
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


class Server:
    """One serial line, one app.  ``run(stop_event)`` is the loop; ``counters`` says what happened."""

    def __init__(self, port, app, write_timeout_s: float = WRITE_TIMEOUT_S,
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, debug_idle_s: float = P.DEBUG_SESSION_IDLE_S):
        self.port = port
        self.app = app
        self.write_timeout_s = write_timeout_s
        #: an uploaded image whose header declares more pixels (width x height) is refused before decoding
        self.max_image_pixels = int(max_image_pixels)
        #: seconds without a request after which a debug-embeddings session ends
        self.explain_session = False  # explain records (and enrolment crops on request) for this host session
        self.debug_idle_s = float(debug_idle_s)
        self.debug_session = False
        self._last_request_t = time.monotonic()
        self.decoder = P.FrameDecoder()
        self._out: queue.Queue = queue.Queue()
        self._events_pending = 0
        self._lock = threading.Lock()
        self._event_seq = 0
        self._answers: OrderedDict = OrderedDict()
        self.counters = {"requests": 0, "bad_frames": 0, "events_sent": 0, "events_dropped": 0,
                         "frames_dropped": 0, "app_errors": 0}
        #: opcode -> handler(checked arguments: dict, see ``request_args.ARGUMENTS``) -> result
        self.handlers: dict[int, Callable[[dict], Any]] = {
            P.Opcode.PING: lambda a: {"t": time.time()},
            P.Opcode.INFO: self._info,
            P.Opcode.FLASH_BEGIN: lambda a: dict(self.app.flash_begin(a["size"], a["sha256"])),
            P.Opcode.FLASH_CHUNK: self._flash_chunk,
            P.Opcode.FLASH_END: lambda a: self.app.flash_end(),
            P.Opcode.REBOOT: lambda a: {"rebooting": True},
            P.Opcode.ENROLL_IMAGES: self._enroll_images,
            P.Opcode.ENROLL_CAMERA: lambda a: dict(self.app.enroll_from_camera(a["name"], a["n_frames"])),
            P.Opcode.GALLERY_LIST: lambda a: {"people": self.app.gallery_list()},
            P.Opcode.GALLERY_DELETE: lambda a: {"deleted": self.app.gallery_delete(a["name"])},
            P.Opcode.DEBUG_EMBEDDINGS: self._debug_embeddings,
            P.Opcode.GALLERY_CROPS: self._gallery_crops,
            P.Opcode.STATS: lambda a: dict(self.app.stats(), serial=dict(self.counters)),
            P.Opcode.LOG_TAIL: lambda a: {"lines": self.app.log_tail(a["n"])},
        }

    # -- handlers (checked arguments -> result dict)

    def _info(self, args: dict) -> dict:
        info = dict(self.app.info())
        info.setdefault("protocol", P.PROTOCOL_VERSION)
        info.setdefault("max_body_bytes", P.MAX_BODY_BYTES)
        info["max_image_pixels"] = self.max_image_pixels
        info.setdefault("debug_embeddings", self.debug_session)
        info["debug_session_idle_s"] = self.debug_idle_s
        return info

    def _flash_chunk(self, args: dict) -> dict:
        offset, data, crc = args["offset"], args["data"], args["crc32"]
        if crc is not None and zlib.crc32(data) != crc:
            raise RequestError(P.Status.CHUNK_CRC, f"chunk at {offset}: crc32 {zlib.crc32(data):08x}, "
                                                   f"request says {crc:08x}")
        return {"offset": int(self.app.flash_chunk(offset, data))}

    def _enroll_images(self, args: dict) -> dict:
        images = [decode_image(item, self.max_image_pixels, i) for i, item in enumerate(args["images"])]
        return dict(self.app.enroll_images(args["name"], images))

    def _debug_embeddings(self, args: dict) -> dict:
        on, explain = args["on"], args["on"] and args["explain"]
        self.app.set_debug_embeddings(on, explain=explain)
        self.debug_session, self.explain_session = on, explain
        return {"on": on, "explain": explain, "idle_s": self.debug_idle_s}

    def _gallery_crops(self, args: dict) -> dict:
        """A person's kept enrolment crops (biometric data): only inside an explain session, for explain panels."""
        if not self.explain_session:
            raise RequestError(P.Status.BAD_REQUEST, "enrolment crops are sent only inside an explain session "
                                                     "(DEBUG_EMBEDDINGS {\"on\": true, \"explain\": true})")
        return {"name": args["name"], "crops": self.app.gallery_crops(args["name"], args["max_crops"])}

    def end_debug_session(self, reason: str) -> None:
        """Switch debug embeddings off because the session that asked for them ended (``reason``)."""
        self.debug_session = self.explain_session = False
        try:
            self.app.set_debug_embeddings(False, reason=reason)
        except Exception:  # noqa: BLE001 - the session is over whatever the app says; the loop goes on
            self.counters["app_errors"] += 1
            log.error("switching debug embeddings off failed:\n%s", traceback.format_exc())
        log.info("debug embeddings off: %s", reason)

    def check_debug_session(self, now: float | None = None) -> str | None:
        """End a debug-embeddings session whose host is gone or silent; returns the reason when it ended one.

        ``now``: ``time.monotonic()`` seconds (given by tests)."""
        if not self.debug_session:
            return None
        now = time.monotonic() if now is None else now
        if not getattr(self.port, "host_present", True):
            reason = "host_gone"
        elif now - self._last_request_t > self.debug_idle_s:
            reason = "host_silent"
        else:
            return None
        self.end_debug_session(reason)
        return reason

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
        self._last_request_t = time.monotonic()
        key = (frame.seq, frame.code, frame.crc)
        if key in self._answers:
            self._send(self._answers[key], droppable=False)
            return
        self.counters["requests"] += 1
        if frame.code == P.Opcode.ANSWER_PART:
            self._answer_part(frame)
            return
        handler = self.handlers.get(frame.code)
        if handler is None:
            self._answer(frame.seq, frame.code, P.Status.UNKNOWN_OPCODE,
                         {"error": f"unknown opcode {frame.code}", "known": [int(o) for o in P.Opcode]}, key)
            return
        try:
            result = handler(parse_arguments(frame.code, frame.payload))
            status = P.Status.OK
        except Exception as exc:  # every app failure becomes a status; the loop goes on
            self.counters["app_errors"] += 1
            status, result = self._status_for(exc)
        self._answer(frame.seq, frame.code, status, result if isinstance(result, dict) else {"result": result}, key)
        if frame.code == P.Opcode.REBOOT and status == P.Status.OK:
            self.debug_session = self.explain_session = False  # the app boots with debug embeddings off
            self._drain()
            try:
                self.app.reboot()
            except Exception:  # noqa: BLE001 - the answer is sent; a failed reboot must not end the server
                self.counters["app_errors"] += 1
                log.error("reboot failed:\n%s", traceback.format_exc())

    def _answer_part(self, frame: P.Frame) -> None:
        """ANSWER_PART {seq, code, crc, offset, size}: bytes of the kept answer to that request (the encoded frame
        as it went on the wire), so a long answer crosses a damaging line in small pieces.  Not kept itself."""
        args = frame.payload
        names = ("seq", "code", "crc", "offset", "size")
        if not isinstance(args, dict) or not all(type(args.get(k)) is int for k in names) or args["offset"] < 0 \
                or not 1 <= args["size"] <= P.MAX_ANSWER_PART_BYTES:
            self._answer(frame.seq, frame.code, P.Status.BAD_REQUEST,
                         {"error": f"ANSWER_PART needs integers {', '.join(names)} (offset >= 0, "
                                   f"1 <= size <= {P.MAX_ANSWER_PART_BYTES})"})
            return
        data = self._answers.get((args["seq"], args["code"], args["crc"]))
        if data is None:
            self._answer(frame.seq, frame.code, P.Status.NOT_FOUND,
                         {"error": "no answer kept for that request (it never arrived intact, or is too old)"})
            return
        part = data[args["offset"]:args["offset"] + args["size"]]
        self._answer(frame.seq, frame.code, P.Status.OK, {"data": part, "total": len(data)})

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
                self.check_debug_session()
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


def serve(port_spec: str, app, stop_event: threading.Event | None = None, baud: int = 115200,
          max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
    """Open ``port_spec`` (``fd:N`` or a pyserial name/URL) and answer the host until ``stop_event`` is set.

    ``max_image_pixels``: the board's ``enrolment.max_image_pixels`` (width x height of one uploaded image)."""
    port = open_port(port_spec, baud)
    try:
        Server(port, app, max_image_pixels=max_image_pixels).run(stop_event)
    finally:
        port.close()
