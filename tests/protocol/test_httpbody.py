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

from ..conftest import split_at


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


# Chunk data made of what could be mistaken for framing: CRLFs, hex sizes, zeros.
FRAMING_LOOKALIKES = st.lists(
    st.sampled_from([b"\r\n", b"\r", b"\n", b"0", b"5", b"a", b"F", b"3\r\nabc", b";x", b"xyz"]),
    min_size=1,
    max_size=12,
).map(b"".join)


@given(
    st.lists(FRAMING_LOOKALIKES, max_size=20),
    st.lists(st.integers(min_value=0, max_value=2_000), max_size=12),
    st.booleans(),
)
def test_data_that_looks_like_framing_is_still_data(
    chunks: list[bytes], cuts: list[int], end: bool
) -> None:
    """Whole reads are unframed at once where they can be; data holding CRLFs and
    size-like bytes must still come out exactly, wherever the reads split."""
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + (b"0\r\n\r\n" if end else b"")
    expected = (b"".join(chunks), end)
    assert unchunk([wire]) == expected
    assert unchunk(split_at(wire, cuts)) == expected
    assert unchunk([wire[i : i + 1] for i in range(len(wire))]) == expected


def test_a_long_chunk_streams_out_before_it_ends() -> None:
    """A 1 MiB chunk's data comes out as it arrives (after a whole chunk in the same
    read too), and what is held stays below one read."""
    payload = bytes(range(256)) * 4096
    wire = b"1\r\n!\r\n%x\r\n%s\r\n" % (len(payload), payload)
    body = ChunkedBody()
    out = b""
    for i in range(0, len(wire), 16 * 1024):
        out += body.feed(wire[i : i + 16 * 1024])
        if i >= 128 * 1024:
            assert len(out) >= i - 64 * 1024
        assert len(body._pending) < 16 * 1024
    assert out == b"!" + payload


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\nhello\r\n",
        b"5\r\nhelloXX",
        b"5\r\nhello\r\n\r\nhello\r\n",
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
