"""Debug embeddings belong to the host session that asked for them (server side, with the fake app and a fake port)."""
from __future__ import annotations

import time

from wearface.firmware import protocol as P
from wearface.firmware.server import Server

from .fake_app import FakeApp


class Port:
    """A line whose host can be made to vanish; collects what the server writes."""

    def __init__(self):
        self.host_present = True
        self.written = []

    def write(self, data, timeout_s):
        self.written.append(data)
        return True


def request(server: Server, code: int, payload: dict | None = None, seq: int = 1) -> None:
    for item in server.decoder.feed(P.encode_frame(P.Kind.REQUEST, seq, code, payload)):
        server.handle(item)


def session(idle_s: float = 10.0):
    app, port = FakeApp(), Port()
    app.reboot = lambda: None
    server = Server(port, app, debug_idle_s=idle_s)
    request(server, P.Opcode.DEBUG_EMBEDDINGS, {"on": True})
    assert app.debug is True and server.debug_session
    return server, app, port


def test_off_when_the_host_goes_away():
    server, app, port = session()
    assert server.check_debug_session() is None and app.debug is True
    port.host_present = False
    assert server.check_debug_session() == "host_gone"
    assert app.debug is False and app.debug_reason == "host_gone" and not server.debug_session
    port.host_present = True  # the next host: nothing switches them on again by itself
    assert server.check_debug_session() is None and app.debug is False


def test_off_when_the_host_is_silent_and_any_request_keeps_it():
    server, app, port = session(idle_s=10.0)
    now = time.monotonic()
    assert server.check_debug_session(now + 9.0) is None
    request(server, P.Opcode.PING, seq=2)  # a keep-alive
    assert server.check_debug_session(time.monotonic() + 9.0) is None and app.debug is True
    assert server.check_debug_session(time.monotonic() + 10.5) == "host_silent"
    assert app.debug is False and app.debug_reason == "host_silent"


def test_off_after_reboot_and_on_only_on_request():
    server, app, port = session()
    request(server, P.Opcode.REBOOT, seq=3)
    assert not server.debug_session
    request(server, P.Opcode.DEBUG_EMBEDDINGS, {"on": "yes"}, seq=4)  # not a boolean: refused
    request(server, P.Opcode.DEBUG_EMBEDDINGS, {}, seq=5)             # no default "on"
    assert not server.debug_session
