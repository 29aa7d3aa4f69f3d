"""Incremental WebSocket frame reader for the client side (RFC 6455 §5), bytes in, messages out.

The WebSocket client reads the socket in large chunks and hands them here, instead of
asking websocket-client for one frame at a time: that reads each frame with two or
three ``recv`` calls (header, length, payload) and builds a frame object for it, which
cost more than everything else done per event (``bench/stream.py``). Only what a client
receives is handled: unmasked frames, no extensions.
"""

from __future__ import annotations

from spooled_integrations.errors import ProtocolError

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_OVERSIZED",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameReader",
    "WSMessage",
]

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
OP_OVERSIZED = -1
"""Not on the wire: a message over ``max_message`` bytes was skipped (payload ``b""``)."""
_DATA_OPCODES = frozenset({OP_TEXT, OP_BINARY})
_CONTROL_OPCODES = frozenset({OP_CLOSE, OP_PING, OP_PONG})
_FIN_TEXT = 0x80 | OP_TEXT  # first byte of a whole, unfragmented text frame


WSMessage = tuple[int, bytes]
"""``(opcode, payload)``: a whole message (fragments joined) or a control frame."""


class FrameReader:
    """Feed received bytes; get complete messages.

    Raises :class:`~spooled_integrations.errors.ProtocolError` (``reason="bad_frame"``)
    for anything a client must not accept (a masked frame, reserved bits or opcodes,
    a fragmented or oversized control frame, a continuation out of place). The
    connection cannot be resynchronized after that: close it.

    A data message longer than ``max_message`` bytes is never held in memory: its
    payload is dropped as it arrives and one ``(OP_OVERSIZED, b"")`` takes its place,
    so a server that announces a huge frame cannot make the worker buffer it.
    """

    __slots__ = (
        "_chunks",
        "_discard",
        "_dropping",
        "_fragment_bytes",
        "_fragments",
        "_have",
        "_max",
        "_need",
        "_opcode",
    )

    def __init__(self, max_message: int | None = None) -> None:
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 2  # bytes needed before parsing can make progress
        self._opcode = OP_CONTINUATION  # opcode of a fragmented message in progress
        self._fragments: list[bytes] = []
        self._fragment_bytes = 0
        self._max = max_message
        self._discard = 0  # payload bytes of an oversized frame still to drop
        self._dropping = False  # the fragmented message in progress is oversized

    def feed(self, data: bytes) -> list[WSMessage]:  # noqa: PLR0915 - one flat loop per frame
        """Decode ``data`` and return the messages it completed."""
        if self._discard:
            data = self._past_discarded(data)
        if not data:
            return []
        self._have += len(data)
        if self._have < self._need:
            self._chunks.append(data)  # a big frame arrives in pieces: join once, not each time
            return []
        if self._chunks:
            self._chunks.append(data)
            data = b"".join(self._chunks)
            self._chunks = []
        out: list[WSMessage] = []
        pos = 0
        end = len(data)
        while True:
            left = end - pos
            if left < 2:
                need = 2
                break
            first = data[pos]
            size = data[pos + 1]
            if size & 0x80:
                raise ProtocolError("the server sent a masked frame", reason="bad_frame")
            head = 2
            if size == 126:
                head = 4
                if left < 4:
                    need = 4
                    break
                size = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif size == 127:
                head = 10
                if left < 10:
                    need = 10
                    break
                size = int.from_bytes(data[pos + 2 : pos + 10], "big")
            need = head + size
            if (
                self._max is not None
                and size + self._fragment_bytes > self._max
                and self._skip(first, out)
            ):
                need = 2
                if left < head + size:  # drop the rest as it arrives, keep nothing
                    self._discard = head + size - left
                    pos = end
                    break
                pos += head + size
                continue
            if left < need:
                break
            start = pos + head
            pos = start + size
            if first == _FIN_TEXT and self._opcode == OP_CONTINUATION:
                out.append((OP_TEXT, data[start:pos]))
            else:
                message = self._frame(first, data[start:pos])
                if message is not None:
                    out.append(message)
        rest = data[pos:] if pos else data
        self._have = len(rest)
        self._need = need
        if rest:
            self._chunks.append(rest)
        return out

    def _past_discarded(self, data: bytes) -> bytes:
        """What follows the rest of a skipped frame in ``data``."""
        if len(data) <= self._discard:
            self._discard -= len(data)
            return b""
        data = data[self._discard :]
        self._discard = 0
        return data

    def _skip(self, first: int, out: list[WSMessage]) -> bool:
        """An oversized frame: True if it is a data frame to skip (its state is kept)."""
        if first & 0x0F not in (OP_CONTINUATION, *_DATA_OPCODES):
            return False  # a control frame: _frame() refuses it as oversized
        reported = self._dropping  # a continuation of a message already reported
        self._frame(first, b"")  # the same checks as any frame, without its payload
        if not reported:
            out.append((OP_OVERSIZED, b""))
        fin = first & 0x80
        self._dropping = not fin
        if fin:
            self._opcode = OP_CONTINUATION
        self._fragments = []
        self._fragment_bytes = 0
        return True

    def _frame(self, first: int, payload: bytes) -> WSMessage | None:
        if first & 0x70:
            raise ProtocolError("reserved bits set (no extension was agreed)", reason="bad_frame")
        fin = first & 0x80
        opcode = first & 0x0F
        if opcode in _CONTROL_OPCODES:
            if not fin or len(payload) > 125:
                raise ProtocolError("fragmented or oversized control frame", reason="bad_frame")
            return (opcode, payload)
        if opcode in _DATA_OPCODES:
            if self._opcode != OP_CONTINUATION:
                raise ProtocolError(
                    "a new message began inside a fragmented one", reason="bad_frame"
                )
            if fin:
                return (opcode, payload)
            self._opcode = opcode
            self._fragments = [payload]
            self._fragment_bytes = len(payload)
            return None
        if opcode != OP_CONTINUATION:
            raise ProtocolError(f"reserved opcode {opcode:#x}", reason="bad_frame")
        if self._opcode == OP_CONTINUATION:
            raise ProtocolError(
                "a continuation frame with no message to continue", reason="bad_frame"
            )
        if self._dropping:  # the rest of a message already reported as oversized
            if fin:
                self._opcode = OP_CONTINUATION
                self._dropping = False
            return None
        self._fragments.append(payload)
        self._fragment_bytes += len(payload)
        if not fin:
            return None
        message = (self._opcode, b"".join(self._fragments))
        self._opcode = OP_CONTINUATION
        self._fragments = []
        self._fragment_bytes = 0
        return message
