"""HTTP body framing: chunked bodies split anywhere, lengths, close-delimited, bad framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spooled_integrations.errors import ProtocolError
from spooled_integrations.protocol.httpbody import (
    ChunkedBody,
    CloseDelimitedBody,
    LengthBody,
    body_reader,
)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def unchunk(pieces: list[bytes]) -> tuple[bytes, bool]:
    body = ChunkedBody()
    out = b"".join(body.feed(piece) for piece in pieces)
    return out, body.finished


def test_backend_framing_one_chunk_per_event() -> None:
    event = b'event: job.completed\ndata: {"type":"JobCompleted"}\n\n'
    wire = (b"%x\r\n%s\r\n" % (len(event), event)) * 3 + b"0\r\n\r\n"
    assert unchunk([wire]) == (event * 3, True)


def test_extensions_upper_case_hex_and_trailers() -> None:
    wire = b"A ; name=value\r\n0123456789\r\n1;x\r\n!\r\n0\r\nTrailer: yes\r\n\r\n"
    assert unchunk([wire]) == (b"0123456789!", True)


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=20),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    st.booleans(),
)
def test_any_chunks_split_anywhere_give_the_body(
    chunks: list[bytes], cuts: list[int], end: bool
) -> None:
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + (b"0\r\n\r\n" if end else b"")
    assert unchunk(split_at(wire, cuts)) == (b"".join(chunks), end)


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\nhello\r\n",
        b"5\r\nhelloXX",
        b"-5\r\nhello\r\n",
        b"0x5\r\nhello\r\n",
        b"1_0\r\n" + b"x" * 16 + b"\r\n",
        b" 5\r\nhello\r\n",
        b"\r\n",
        b"11111111111111111\r\n",
        b"5" * 2000,
    ],
)
def test_bad_framing_is_a_protocol_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        unchunk([wire])
    assert caught.value.reason == "bad_chunk"


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=2000), max_size=8))
def test_any_bytes_raise_nothing_but_protocol_error(data: bytes, cuts: list[int]) -> None:
    try:
        unchunk(split_at(data, cuts))
    except ProtocolError as exc:
        assert exc.reason == "bad_chunk"


def test_length_and_close_delimited_bodies() -> None:
    body = LengthBody(5)
    assert body.feed(b"abc") == b"abc" and not body.finished
    assert body.feed(b"defgh") == b"de" and body.finished
    assert LengthBody(0).finished
    rest = CloseDelimitedBody()
    assert rest.feed(b"xyz") == b"xyz" and not rest.finished and rest.ends_at_close


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ([(b"transfer-encoding", b"chunked")], ChunkedBody),
        ([(b"transfer-encoding", b"Chunked")], ChunkedBody),
        ([(b"content-length", b"12")], LengthBody),
        ([(b"content-length", b"12"), (b"content-length", b"12")], LengthBody),
        ([(b"content-type", b"text/event-stream")], CloseDelimitedBody),
    ],
)
def test_framing_from_headers(headers: list[tuple[bytes, bytes]], kind: type) -> None:
    assert isinstance(body_reader(headers), kind)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"transfer-encoding", b"gzip, chunked")],
        [(b"content-length", b"12"), (b"content-length", b"13")],
        [(b"content-length", b"-1")],
    ],
)
def test_framing_we_cannot_read(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(ProtocolError):
        body_reader(headers)
