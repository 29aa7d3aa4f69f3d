"""HTTP/1.1 response body framing (RFC 9112 §6-7), bytes in, body bytes out.

The SSE client reads the socket in large chunks and unframes the body here: the
backend sends every event as its own HTTP chunk, and a general HTTP client pays for
each chunk separately (through httpcore and h11 that is more than everything else done
per event; see ``bench/README.md``), while one pass over a whole read costs a fraction
of that.
"""

from __future__ import annotations

from itertools import repeat

from spooled_integrations.errors import ProtocolError

__all__ = ["BodyReader", "ChunkedBody", "CloseDelimitedBody", "LengthBody", "body_reader"]

_MAX_SIZE_LINE = 1024
_HEX = b"0123456789abcdefABCDEF"


class BodyReader:
    """Feed received bytes; get the body bytes they carry.

    ``finished`` turns true when the framing says the body is complete; ``ends_at_close``
    says whether the connection closing is a normal end of the body.
    """

    finished = False
    ends_at_close = False

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError


class ChunkedBody(BodyReader):
    """``Transfer-Encoding: chunked``. Malformed framing raises
    :class:`~spooled_integrations.errors.ProtocolError` (``reason="bad_chunk"``)."""

    def __init__(self) -> None:
        self._pending = b""
        self._left = 0  # data bytes still due in the current chunk
        self._crlf = False  # the CRLF that ends a chunk's data is due
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        if self.finished:
            return b""  # trailers: nothing we use
        buf = self._pending + data if self._pending else data
        out: list[bytes] = []
        pos = self._step(buf, 0, out, one_chunk=True) if self._left or self._crlf else 0
        if not (self._left or self._crlf or self.finished) and pos < len(buf):
            body, used = _whole_chunks(buf[pos:] if pos else buf)
            if used:
                out.append(body)
                pos += used
        if not self.finished:
            pos = self._step(buf, pos, out)
        self._pending = buf[pos:] if pos < len(buf) and not self.finished else b""
        return b"".join(out) if len(out) != 1 else out[0]

    def _step(self, buf: bytes, pos: int, out: list[bytes], *, one_chunk: bool = False) -> int:
        """Read ``buf`` from ``pos`` chunk by chunk into ``out``; the position reached.
        With ``one_chunk``, stop at the end of the chunk in progress."""
        end = len(buf)
        left, crlf = self._left, self._crlf
        while pos < end:
            if left:
                stop = pos + left
                if stop > end:
                    out.append(buf[pos:])
                    left = stop - end
                    pos = end
                    break
                out.append(buf[pos:stop])
                pos, left, crlf = stop, 0, True
            if crlf:  # straight after the data, not one more turn of the loop
                if end - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF", reason="bad_chunk")
                pos += 2
                crlf = False
                if one_chunk:
                    break
                continue
            line_end = buf.find(b"\r\n", pos, pos + _MAX_SIZE_LINE)
            if line_end < 0:
                if end - pos >= _MAX_SIZE_LINE:
                    raise ProtocolError("chunk size line too long", reason="bad_chunk")
                break
            line = buf[pos:line_end]
            # The usual line is bare hex; extensions and errors take the slow path.
            size = (
                int(line, 16) if 0 < len(line) <= 16 and not line.strip(_HEX) else _chunk_size(line)
            )
            pos = line_end + 2
            if size == 0:
                self.finished = True
                break
            left = size
        self._left, self._crlf = left, crlf
        return pos


def _whole_chunks(buf: bytes) -> tuple[bytes, int]:
    """``(data, bytes used)`` of the complete chunks ``buf`` starts with, found at once.

    ``buf`` starts at a chunk. Split at every CRLF, the parts alternate size line, data,
    as long as no chunk's data holds a CRLF; the check that every size is bare hex and
    equals the length of the part after it fails at the first chunk where that breaks
    (its part is shorter than its size), so what passes is exactly what reading chunk by
    chunk gives. Anything else (extensions, CRLF in data, the last chunk, bad framing)
    gives ``(b"", 0)``: the caller reads step by step. C calls over the whole read
    instead of a turn of a loop per chunk (the backend sends one per event).
    """
    parts = buf.split(b"\r\n")
    count = (len(parts) - 1) // 2  # (size line, data) pairs followed by a CRLF
    if not count:
        return b"", 0
    sizes, datas = parts[0 : 2 * count : 2], parts[1 : 2 * count : 2]
    if not all(sizes) or b"".join(sizes).translate(None, _HEX):
        return b"", 0
    lengths = list(map(int, sizes, repeat(16)))
    if 0 in lengths or lengths != list(map(len, datas)):
        return b"", 0
    return b"".join(datas), sum(map(len, sizes)) + sum(lengths) + 4 * count


def _chunk_size(line: bytes) -> int:
    """``chunk-size [; ext]`` → the size; extensions are ignored."""
    semicolon = line.find(b";")
    if semicolon >= 0:
        line = line[:semicolon].rstrip(b" \t")
    if not line or len(line) > 16 or line.strip(_HEX):
        raise ProtocolError(f"bad chunk size {line[:20]!r}", reason="bad_chunk")
    return int(line, 16)


class LengthBody(BodyReader):
    """``Content-Length: n``: the first ``n`` bytes; anything after them is ignored."""

    def __init__(self, length: int) -> None:
        self._left = length
        self.finished = length == 0

    def feed(self, data: bytes) -> bytes:
        if len(data) >= self._left:
            data = data[: self._left]
            self.finished = True
        self._left -= len(data)
        return data


class CloseDelimitedBody(BodyReader):
    """No framing header: the body runs until the server closes the connection."""

    ends_at_close = True

    def feed(self, data: bytes) -> bytes:
        return data


def body_reader(headers: list[tuple[bytes, bytes]]) -> BodyReader:
    """The framing the response headers declare (names lower-case)."""
    encodings = b",".join(v for k, v in headers if k == b"transfer-encoding")
    if encodings:
        # We send no TE header, so chunked is the only coding a server may use.
        if encodings.replace(b" ", b"").lower() != b"chunked":
            raise ProtocolError(f"unsupported transfer-encoding {encodings!r}", reason="bad_chunk")
        return ChunkedBody()
    lengths = {v.strip() for k, v in headers if k == b"content-length"}
    if lengths:
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            raise ProtocolError("bad content-length", reason="bad_chunk")
        return LengthBody(int(next(iter(lengths))))
    return CloseDelimitedBody()
