"""The SSE decoder against the WHATWG rules, including chunks split anywhere."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spooled_integrations.protocol import SSEDecoder, SSEMessage

from ..conftest import split_at

AXUM_EVENT = (
    b"event: job.status\n"
    b'data: {"type":"JobStatusChange","data":{"job_id":"\xc3\xa9t\xc3\xa9","new_status":"pending"}}\n'
    b"\n"
)


def decode_all(chunks: list[bytes]) -> list[SSEMessage]:
    decoder = SSEDecoder()
    out: list[SSEMessage] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def test_axum_framing_gives_name_and_payload() -> None:
    [message] = decode_all([AXUM_EVENT])
    assert message.event == "job.status"
    assert message.data.startswith('{"type":"JobStatusChange"')
    assert "été" in message.data


def test_line_endings_lf_cr_crlf_are_equivalent() -> None:
    lf = b"event: a\ndata: 1\ndata: 2\n\n"
    cr = lf.replace(b"\n", b"\r")
    crlf = lf.replace(b"\n", b"\r\n")
    expected = [SSEMessage(event="a", data="1\n2")]
    assert decode_all([lf]) == expected
    assert decode_all([cr]) == expected
    assert decode_all([crlf]) == expected


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # A CR at the end of one chunk and LF at the start of the next must not make an
    # empty line (which would dispatch early and lose the event name).
    messages = decode_all([b"event: x\r", b"\ndata: y\r", b"\n\r", b"\n"])
    assert messages == [SSEMessage(event="x", data="y")]


def test_comments_ignored_and_counted() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": keepalive\n\n: ping\n\n") == []
    assert decoder.comments == 2


def test_id_and_retry_are_kept() -> None:
    [message] = decode_all([b"id: 42\nretry: 1500\ndata: x\n\n"])
    assert message.id == "42"
    assert message.retry == 1500


def test_id_with_null_is_ignored_and_bad_retry_too() -> None:
    [message] = decode_all([b"id: a\x00b\nretry: 15s\ndata: x\n\n"])
    assert message.id is None
    assert message.retry is None


def test_no_space_after_colon_and_field_without_colon() -> None:
    [message] = decode_all([b"data:x\ndata\n\n"])
    assert message.data == "x\n"


def test_event_without_data_is_not_dispatched() -> None:
    assert decode_all([b"event: lonely\n\ndata: after\n\n"]) == [
        SSEMessage(event="message", data="after")
    ]


def test_bom_is_stripped_even_when_split() -> None:
    assert decode_all([b"\xef\xbb", b"\xbfdata: x\n\n"]) == [SSEMessage(event="message", data="x")]


def test_unterminated_event_is_discarded_at_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: half") == []
    decoder.close()
    assert decoder.feed(b"\n\n") == []


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    stream = (
        AXUM_EVENT
        + b": keepalive\r\n\r\n"
        + AXUM_EVENT.replace(b"\n", b"\r\n")
        + AXUM_EVENT.replace(b"\n", b"\r")
    )
    whole = decode_all([stream])
    assert len(whole) == 3
    assert decode_all(split_at(stream, cuts)) == whole


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0, max_value=2000), max_size=8))
def test_arbitrary_bytes_never_raise_and_chunking_is_invisible(
    data: bytes, cuts: list[int]
) -> None:
    whole = decode_all([data])
    assert decode_all(split_at(data, cuts)) == whole
    for message in whole:
        assert isinstance(message.data, str)


def decode_limited(chunks: list[bytes], limit: int) -> tuple[list[str], SSEDecoder]:
    decoder = SSEDecoder(max_message=limit)
    out: list[str] = []
    for chunk in chunks:
        out.extend(message.data for message in decoder.feed(chunk))
    return out, decoder


OVERSIZED_STREAM = (
    b"data: before\n\n"
    + b"event: big\ndata: "
    + b"x" * 5000
    + b"\r\n\r\n"  # one long line
    + b"data: "
    + b"y" * 600
    + b"\ndata: "
    + b"z" * 600
    + b"\n\n"  # many lines, too long together
    + b"data: after\n\n"
)


def test_events_over_the_limit_are_dropped_counted_and_never_held() -> None:
    pieces = [OVERSIZED_STREAM[i : i + 256] for i in range(0, len(OVERSIZED_STREAM), 256)]
    decoder = SSEDecoder(max_message=1000)
    out: list[str] = []
    held = []
    for piece in pieces:
        out.extend(m.data for m in decoder.feed(piece))
        held.append(len(decoder._pending) + sum(map(len, decoder._data)))
    assert out == ["before", "after"]
    assert decoder.oversized == 2
    assert max(held) <= 1000 + 256


@given(st.lists(st.integers(min_value=0, max_value=8000), max_size=8))
def test_dropping_does_not_depend_on_where_chunks_split(cuts: list[int]) -> None:
    out, decoder = decode_limited(split_at(OVERSIZED_STREAM, cuts), 1000)
    assert out == ["before", "after"]
    assert decoder.oversized == 2


def test_without_a_limit_long_events_pass() -> None:
    out, decoder = decode_limited([OVERSIZED_STREAM], 100_000)
    assert [len(d) for d in out] == [6, 5000, 1201, 5]
    assert decoder.oversized == 0


# Pieces of the shape servers send (decoded all at once by the canonical path) mixed
# with everything that must leave it: comments, ids, several data lines, no event line,
# blank runs, "event:" without a space, an event over the limit.
STREAM_PIECES = st.sampled_from(
    [
        AXUM_EVENT,
        b"event: job.completed\ndata: {}\n\n",
        b"event: \ndata: unnamed\n\n",
        b"event: x\ndata: \n\n",
        b"event: a\ndata: event: b\n\n",
        b"data: no name\n\n",
        b": keepalive\n\n",
        b"id: 7\nevent: y\ndata: with id\n\n",
        b"event: z\ndata: one\ndata: two\n\n",
        b"event:nospace\ndata:nospace\n\n",
        b"event: late\n\ndata: orphan\n\n",
        b"\n\n",
        b"retry: 50\n",
        b"event: big\ndata: " + b"x" * 201 + b"\n\n",  # one over the limit
        b"event: top\ndata: " + b"x" * 200 + b"\n\n",  # at the limit
    ]
)


@given(st.lists(STREAM_PIECES, max_size=25), st.lists(st.integers(0, 8000), max_size=6))
def test_whole_reads_decode_as_line_by_line(pieces: list[bytes], cuts: list[int]) -> None:
    """Large reads take the canonical path where they can; one byte at a time never
    does (a read then holds at most one line). Both must give the same messages."""
    stream = b"".join(pieces)

    def decode(chunks: list[bytes]) -> tuple[list[SSEMessage], int, int]:
        decoder = SSEDecoder(max_message=200)
        out = [message for chunk in chunks for message in decoder.feed(chunk)]
        return out, decoder.oversized, decoder.comments

    by_byte = decode([stream[i : i + 1] for i in range(len(stream))])
    assert decode([stream]) == by_byte
    assert decode(split_at(stream, cuts)) == by_byte


def test_canonical_reads_keep_names_ids_and_defaults() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 9\nretry: 10\n\n")
    out = decoder.feed(b"event: a\ndata: 1\n\nevent: \ndata: 2\n\nevent: a\ndata: 3\n\n")
    assert out == [
        SSEMessage("a", "1", "9", 10),
        SSEMessage("message", "2", "9", 10),
        SSEMessage("a", "3", "9", 10),
    ]
