"""The WebSocket frame reader against frames built by websocket-client, split anywhere."""

from __future__ import annotations

import pytest
import websocket
from hypothesis import given
from hypothesis import strategies as st

from spooled_integrations.errors import ProtocolError
from spooled_integrations.protocol.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_OVERSIZED,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
)

from ..conftest import split_at


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: int = 0) -> bytes:
    """Server-side (unmasked) frame bytes, encoded by websocket-client."""
    return websocket.ABNF(int(fin), rsv1, 0, 0, opcode, 0, payload).format()  # type: ignore[no-untyped-call]


def read_all(chunks: list[bytes]) -> list[tuple[int, bytes]]:
    reader = FrameReader()
    out: list[tuple[int, bytes]] = []
    for chunk in chunks:
        out.extend(reader.feed(chunk))
    return out


def test_text_frames_of_every_length_encoding() -> None:
    payloads = [b"", b"x" * 125, b"y" * 126, b"z" * 65535, b"w" * 65536, b"v" * 200_000]
    stream = b"".join(frame(OP_TEXT, p) for p in payloads)
    assert read_all([stream]) == [(OP_TEXT, p) for p in payloads]


def test_a_large_frame_in_small_pieces() -> None:
    payload = bytes(range(256)) * 4000
    stream = frame(OP_BINARY, payload) + frame(OP_TEXT, b"after")
    pieces = [stream[i : i + 1000] for i in range(0, len(stream), 1000)]
    assert read_all(pieces) == [(OP_BINARY, payload), (OP_TEXT, b"after")]


def test_fragments_are_joined_and_control_frames_pass_between_them() -> None:
    stream = (
        frame(OP_TEXT, b"he", fin=False)
        + frame(OP_PING, b"p")
        + frame(OP_CONTINUATION, b"ll", fin=False)
        + frame(OP_CONTINUATION, b"o")
        + frame(OP_PONG, b"")
        + frame(OP_CLOSE, b"\x03\xe8bye")
    )
    assert read_all([stream]) == [
        (OP_PING, b"p"),
        (OP_TEXT, b"hello"),
        (OP_PONG, b""),
        (OP_CLOSE, b"\x03\xe8bye"),
    ]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x81\x85abcd" + b"x" * 5, "masked"),
        (frame(OP_TEXT, b"x", rsv1=1), "reserved bits"),
        (b"\x83\x00", "reserved opcode"),
        (frame(OP_PING, b"", fin=False), "fragmented control"),
        (b"\x89\x7e\x00\x7e" + b"p" * 126, "oversized control"),
        (frame(OP_CONTINUATION, b"x"), "continuation with no message"),
        (frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), "message inside a message"),
    ],
)
def test_what_a_client_must_refuse(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        read_all([data])
    assert caught.value.reason == "bad_frame", why


messages = st.lists(
    st.tuples(
        st.sampled_from([OP_TEXT, OP_BINARY, OP_PING]),
        st.binary(max_size=300),
        st.integers(min_value=1, max_value=3),  # fragments (data messages only)
    ),
    max_size=20,
)


@given(messages, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_messages_split_anywhere_come_out_whole(
    spec: list[tuple[int, bytes, int]], cuts: list[int]
) -> None:
    stream = b""
    expected = []
    for opcode, data, parts in spec:
        payload = data[:125] if opcode == OP_PING else data
        if opcode == OP_PING:
            stream += frame(OP_PING, payload)
        else:
            step = max(1, len(payload) // parts)
            pieces = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
            for index, piece in enumerate(pieces):
                code = opcode if index == 0 else OP_CONTINUATION
                stream += frame(code, piece, fin=index == len(pieces) - 1)
        expected.append((opcode, payload))
    assert read_all(split_at(stream, cuts)) == expected


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=2000), max_size=8))
def test_any_bytes_raise_nothing_but_protocol_error(data: bytes, cuts: list[int]) -> None:
    reader = FrameReader()
    try:
        for chunk in split_at(data, cuts):
            for opcode, payload in reader.feed(chunk):
                assert opcode in (OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)
                assert isinstance(payload, bytes)
    except ProtocolError as exc:
        assert exc.reason == "bad_frame"


def read_limited(chunks: list[bytes], limit: int) -> tuple[list[tuple[int, bytes]], FrameReader]:
    reader = FrameReader(max_message=limit)
    out: list[tuple[int, bytes]] = []
    for chunk in chunks:
        out.extend(reader.feed(chunk))
    return out, reader


def test_an_oversized_frame_is_skipped_as_it_arrives_without_being_kept() -> None:
    huge = b"x" * 300_000
    stream = frame(OP_TEXT, b"before") + frame(OP_TEXT, huge) + frame(OP_TEXT, b"after")
    pieces = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]
    reader = FrameReader(max_message=1000)
    out: list[tuple[int, bytes]] = []
    held = []
    for piece in pieces:
        out.extend(reader.feed(piece))
        held.append(sum(len(c) for c in reader._chunks))
    assert out == [(OP_TEXT, b"before"), (OP_OVERSIZED, b""), (OP_TEXT, b"after")]
    assert max(held) < 4096 + 16  # never more than one read's worth, not the frame


def test_a_fragmented_message_over_the_limit_is_reported_once_and_skipped() -> None:
    stream = (
        frame(OP_TEXT, b"a" * 600, fin=False)
        + frame(OP_PING, b"p")
        + frame(OP_CONTINUATION, b"b" * 600, fin=False)
        + frame(OP_CONTINUATION, b"c" * 600, fin=False)
        + frame(OP_CONTINUATION, b"d", fin=True)
        + frame(OP_TEXT, b"next")
    )
    for pieces in ([stream], [stream[i : i + 7] for i in range(0, len(stream), 7)]):
        out, _ = read_limited(pieces, 1000)
        assert out == [(OP_PING, b"p"), (OP_OVERSIZED, b""), (OP_TEXT, b"next")]


def test_messages_at_the_limit_pass_and_a_bad_oversized_frame_still_fails() -> None:
    out, _ = read_limited([frame(OP_TEXT, b"x" * 1000) + frame(OP_BINARY, b"y" * 1000)], 1000)
    assert out == [(OP_TEXT, b"x" * 1000), (OP_BINARY, b"y" * 1000)]
    with pytest.raises(ProtocolError):  # a continuation with no message, oversized or not
        read_limited([frame(OP_CONTINUATION, b"z" * 5000)], 1000)


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_skipping_does_not_depend_on_where_reads_split(cuts: list[int]) -> None:
    stream = (
        frame(OP_TEXT, b"one")
        + frame(OP_TEXT, b"L" * 3000)
        + frame(OP_TEXT, b"f" * 400, fin=False)
        + frame(OP_CONTINUATION, b"g" * 400, fin=True)
        + frame(OP_TEXT, b"M" * 400, fin=False)
        + frame(OP_CONTINUATION, b"N" * 700, fin=True)
        + frame(OP_TEXT, b"two")
    )
    out, _ = read_limited(split_at(stream, cuts), 1000)
    assert out == [
        (OP_TEXT, b"one"),
        (OP_OVERSIZED, b""),
        (OP_TEXT, b"f" * 400 + b"g" * 400),
        (OP_OVERSIZED, b""),
        (OP_TEXT, b"two"),
    ]
