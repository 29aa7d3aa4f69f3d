"""Incremental Server-Sent Events decoder (WHATWG HTML §9.2.6), bytes in, messages out.

Ours rather than httpx-sse's: httpx-sse decodes ``str`` lines, so it needs a text
decoder in front and keeps its decoder in a private module; this one splits raw bytes
(line ends are ASCII, so a chunk that ends inside a UTF-8 character or between CR and
LF is simply carried over), which measured faster (``bench/sse_decoder.py``).
"""

from __future__ import annotations

from itertools import repeat
from typing import NamedTuple

__all__ = ["SSEDecoder", "SSEMessage"]


class SSEMessage(NamedTuple):
    """One dispatched event: ``event`` defaults to ``"message"`` as in the spec."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


# tuple.__new__ skips the generated keyword-handling __new__: half the cost per message.
_new_message = tuple.__new__


class SSEDecoder:
    """Feed byte chunks; get complete messages. Comments are ignored (counted).

    With ``max_message``, an event whose data (or one unfinished line) is longer than
    that is dropped and counted in ``oversized``; what is held stays within the limit
    plus one chunk, whatever the server sends.
    """

    __slots__ = (
        "_data",
        "_dropping",
        "_event",
        "_first",
        "_last_id",
        "_max",
        "_pending",
        "_retry",
        "_skip_lf",
        "_skipping_line",
        "comments",
        "oversized",
    )

    def __init__(self, max_message: int | None = None) -> None:
        self._pending = b""
        self._skip_lf = False
        self._first = True
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None
        self._max = max_message
        self._dropping = False  # the event in progress is over the limit
        self._skipping_line = False  # inside a line over the limit: drop to its end
        self.comments = 0
        self.oversized = 0

    @property
    def last_event_id(self) -> str | None:
        return self._last_id

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Decode ``chunk`` and return the messages it completed."""
        if self._skipping_line:
            chunk = self._past_skipped_line(chunk)
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buffer = self._pending + chunk if self._pending else chunk
        if b"\r" in buffer:
            self._skip_lf = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = buffer.rfind(b"\n")
        if end < 0:
            self._pending = buffer
            self._check_size()
            return []
        self._pending = buffer[end + 1 :]
        # Complete lines are complete UTF-8: decoding them at once is safe and cheap.
        text = buffer[:end].decode("utf-8", "replace")
        if self._first:
            self._first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        lines = text.split("\n")
        out: list[SSEMessage] = []
        if self._data or self._event or self._dropping:
            # Finish the event in progress line by line, up to its blank line.
            try:
                first = lines.index("") + 1
            except ValueError:
                first = len(lines)
            self._decode_lines(lines[:first], out)
            lines = lines[first:]
        done = self._decode_canonical(lines, out)
        self._decode_lines(lines[done:] if done else lines, out)
        self._check_size()
        return out

    def _decode_canonical(self, lines: list[str], out: list[SSEMessage]) -> int:
        """Decode the events of ``lines`` at once if every one has the shape servers send
        (``event: <name>``, ``data: <one line>``, blank line); how many lines that took.

        What this returns is what the line-by-line rules give for the same lines; it
        is only faster (whole-list checks and slices instead of a turn per line).
        Anything else (comments, ``id:``, several data lines,
        an event over the limit) returns 0 and takes the general path.
        """
        full = len(lines) - len(lines) % 3
        if not full or any(lines[2:full:3]):
            return 0
        event_lines, datas = lines[0:full:3], lines[1:full:3]
        names: dict[str, str] = {}
        for line in set(event_lines):
            if not line.startswith("event: "):
                return 0
            names[line] = line[7:] or "message"
        if not all(map(str.startswith, datas, repeat("data: "))):
            return 0
        if self._max is not None and max(map(len, datas)) - 6 > self._max:
            return 0
        last_id, retry = self._last_id, self._retry
        out += [
            _new_message(SSEMessage, (names[line], data[6:], last_id, retry))
            for line, data in zip(event_lines, datas, strict=True)
        ]
        return full

    def _decode_lines(self, lines: list[str], out: list[SSEMessage]) -> None:
        """The spec's rules, one line at a time."""
        data = self._data
        for line in lines:
            if not line:
                if data:
                    joined = data[0] if len(data) == 1 else "\n".join(data)
                    if self._dropping or (self._max is not None and len(joined) > self._max):
                        if not self._dropping:  # counted once per event
                            self.oversized += 1
                    else:
                        fields = (self._event or "message", joined, self._last_id, self._retry)
                        out.append(_new_message(SSEMessage, fields))
                    data.clear()
                self._dropping = False
                self._event = ""
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line.startswith("event: "):
                self._event = line[7:]
            elif line[0] == ":":
                self.comments += 1
            else:
                self._field(line)

    def _check_size(self) -> None:
        """Once per chunk, not per line: drop an event that grew past ``max_message``."""
        if self._max is None:
            return
        if len(self._pending) > self._max + 6:  # one line, still unfinished ("data: " + max)
            self._pending = b""
            self._skipping_line = True
        elif sum(map(len, self._data)) <= self._max:
            return
        self._data = []
        if not self._dropping:
            self._dropping = True
            self.oversized += 1

    def _past_skipped_line(self, chunk: bytes) -> bytes:
        """What follows the end of the line being skipped (``b""`` while it goes on)."""
        ends = [i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0]
        if not ends:
            return b""
        self._skipping_line = False
        self._skip_lf = chunk[min(ends) : min(ends) + 1] == b"\r"
        return chunk[min(ends) + 1 :]

    def close(self) -> None:
        """End of stream: an unterminated event is discarded, as the spec says."""
        self._pending = b""
        self._skip_lf = False
        self._skipping_line = False
        self._dropping = False
        self._event = ""
        self._data = []

    def _field(self, line: str) -> None:
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
