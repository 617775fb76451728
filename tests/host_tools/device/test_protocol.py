"""firmware/protocol.py: round trips, hand-checked frames, and arbitrary bytes into the decoder."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wearface.firmware import protocol as P

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8).filter(lambda k: k != P.BIN_KEY),
                                                                inner, max_size=4),
    max_leaves=20,
)


def _decode_all(data: bytes) -> list:
    return P.FrameDecoder().feed(data)


def test_hand_checked_ping_frame():
    wire = P.encode_frame(P.Kind.REQUEST, 7, P.Opcode.PING)
    body = struct.pack("<BBHBBI", 1, 1, 7, 0, 0, 2) + b"{}"
    assert wire == b"\xc0" + body + struct.pack("<I", zlib.crc32(body)) + b"\xc0"


def test_slip_escapes_end_and_esc_bytes():
    assert P.slip_escape(b"\xc0\xdb\x01") == b"\xdb\xdc\xdb\xdd\x01"
    assert P.slip_unescape(b"\xdb\xdc\xdb\xdd\x01") == b"\xc0\xdb\x01"
    with pytest.raises(P.ProtocolError):
        P.slip_unescape(b"\xdb\x01")


def test_arrays_and_bytes_travel_in_the_blob():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    emb = np.linspace(-1, 1, 5, dtype=np.float32)
    wire = P.encode_frame(P.Kind.EVENT, 3, 0, {"img": img, "e": {"v": emb}, "raw": b"\xc0\xdb"})
    (frame,) = _decode_all(wire)
    assert frame.kind == P.Kind.EVENT and frame.seq == 3
    assert frame.payload["img"].dtype == np.uint8 and np.array_equal(frame.payload["img"], img)
    assert np.array_equal(frame.payload["e"]["v"], emb)
    assert frame.payload["raw"] == b"\xc0\xdb"


def test_crc_mismatch_is_a_bad_frame_and_decoder_resyncs():
    good = P.encode_frame(P.Kind.REQUEST, 1, P.Opcode.INFO)
    bad = bytearray(good)
    bad[5] ^= 0x40
    items = _decode_all(b"noise" + bytes(bad) + b"\x00\xc0garbage" + good)
    faults = [i for i in items if isinstance(i, P.DecodeFault)]
    frames = [i for i in items if isinstance(i, P.Frame)]
    assert len(frames) == 1 and frames[0].opcode == P.Opcode.INFO
    assert faults and all(f.error.status == P.Status.BAD_FRAME for f in faults)


def test_bad_payload_keeps_the_header_to_answer_by_seq():
    text = b'{"x":{"$bin":[0,99]}}'
    body = struct.pack("<BBHBBI", 1, 1, 42, int(P.Opcode.ENROLL_IMAGES), 0, len(text)) + text
    body += struct.pack("<I", zlib.crc32(body))
    (fault,) = _decode_all(b"\xc0" + P.slip_escape(body) + b"\xc0")
    assert fault.error.status == P.Status.BAD_REQUEST
    assert fault.header == (1, 42, int(P.Opcode.ENROLL_IMAGES))


def test_overlong_run_without_end_is_dropped_once():
    dec = P.FrameDecoder(max_body_bytes=64)
    items = dec.feed(b"\x01" * 1000)
    assert len(items) == 1 and isinstance(items[0], P.DecodeFault)
    assert dec.feed(b"\x01" * 1000) == []
    good = P.encode_frame(P.Kind.RESPONSE, 2, P.Opcode.INFO)
    assert isinstance(dec.feed(b"\xc0" + good)[-1], P.Frame)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(list(P.Kind)), seq=st.integers(0, 0xFFFF), code=st.integers(0, 255),
       status=st.integers(0, 255), payload=st.dictionaries(st.text(max_size=8).filter(lambda k: k != P.BIN_KEY),
                                                           json_values, max_size=5),
       blob=st.binary(max_size=300), splits=st.lists(st.integers(0, 400), max_size=6))
def test_round_trip_through_arbitrary_splits(kind, seq, code, status, payload, blob, splits):
    payload = dict(payload, data=blob)
    wire = P.encode_frame(kind, seq, code, payload, status)
    dec = P.FrameDecoder()
    got = []
    cuts = sorted({min(s, len(wire)) for s in splits})
    for a, b in zip([0] + cuts, cuts + [len(wire)]):
        got += dec.feed(wire[a:b])
    (frame,) = got
    assert (frame.kind, frame.seq, frame.code, frame.status) == (kind, seq, code, status)
    assert frame.payload == payload


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=8))
def test_arbitrary_bytes_give_only_frames_or_faults(data, splits):
    dec = P.FrameDecoder(max_body_bytes=512)
    cuts = sorted({min(s, len(data)) for s in splits})
    for a, b in zip([0] + cuts, cuts + [len(data)]):
        for item in dec.feed(data[a:b]):
            assert isinstance(item, (P.Frame, P.DecodeFault))
            if isinstance(item, P.DecodeFault):
                assert isinstance(item.error, P.ProtocolError)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=P.HEADER.size, max_size=600), st.integers(0, 255))
def test_crc_valid_garbage_bodies_give_only_protocol_errors(content, kind):
    # CRC-valid bodies reach the header and payload parsers, which random noise almost never does
    content = bytes([1, kind % 4]) + content[2:]
    body = content + struct.pack("<I", zlib.crc32(content))
    try:
        P.decode_body(body)
    except P.ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(json_values, st.binary(max_size=64))
def test_payload_parser_rejects_bad_references_cleanly(tree, blob):
    import json

    text = json.dumps({"a": tree, "b": {"$bin": [len(blob) // 2, len(blob)], "dtype": "float32", "shape": [3]}})
    try:
        P.unpack_payload(text.encode(), blob)
    except P.ProtocolError as exc:
        assert exc.status == P.Status.BAD_REQUEST


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.binary(max_size=300),
    st.builds(lambda kind, seq, code, status, payload: P.encode_frame(kind, seq, code, payload, status),
              st.sampled_from(list(P.Kind)), st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 255),
              st.dictionaries(st.sampled_from(["event", "t", "error", "x"]),
                              st.one_of(st.none(), st.integers(), st.text(max_size=5), st.binary(max_size=9)),
                              max_size=3))), max_size=8))
def test_host_reader_takes_any_bytes(pieces):
    """The host side's reader (decoder + dispatch to waiting requests and event consumers) never raises."""
    from wearface.host_tools.device.link import Link

    seen = []
    link = Link("loop://", on_event=seen.append, on_raw=lambda b: None)
    pending = link._next_seq()
    from wearface.host_tools.device.link import _Pending

    link._pending[pending] = _Pending(pending)
    decoder = P.FrameDecoder(max_body_bytes=4096)
    for piece in pieces:
        link.feed(decoder, piece)
    assert all(isinstance(f, P.Frame) and f.kind == P.Kind.EVENT for f in seen)
