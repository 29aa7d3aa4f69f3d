"""Incremental Server-Sent Events decoder (WHATWG HTML §9.2.6), bytes in, messages out.

Ours rather than httpx-sse's: httpx-sse decodes ``str`` lines, so it needs a text
decoder in front and keeps its decoder in a private module; this one splits raw bytes
(line ends are ASCII, so a chunk that ends inside a UTF-8 character or between CR and
LF is simply carried over) and was faster in ``bench/sse_decoder.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEMessage"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched event: ``event`` defaults to ``"message"`` as in the spec."""

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed byte chunks; get complete messages. Comments are ignored (counted)."""

    __slots__ = (
        "_data",
        "_event",
        "_first",
        "_last_id",
        "_pending",
        "_retry",
        "_skip_lf",
        "comments",
    )

    def __init__(self) -> None:
        self._pending = b""
        self._skip_lf = False
        self._first = True
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None
        self.comments = 0

    @property
    def last_event_id(self) -> str | None:
        return self._last_id

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Decode ``chunk`` and return the messages it completed."""
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
        lines = buffer.split(b"\n")
        self._pending = lines.pop()
        out: list[SSEMessage] = []
        for line in lines:
            message = self._line(line)
            if message is not None:
                out.append(message)
        return out

    def close(self) -> None:
        """End of stream: an unterminated event is discarded, as the spec says."""
        self._pending = b""
        self._skip_lf = False
        self._event = ""
        self._data = []

    def _line(self, raw: bytes) -> SSEMessage | None:
        if self._first:
            self._first = False
            if raw.startswith(_BOM):
                raw = raw[3:]
        if not raw:
            return self._dispatch()
        if raw[0] == 0x3A:  # ':'
            self.comments += 1
            return None
        line = raw.decode("utf-8", "replace")
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
        return None

    def _dispatch(self) -> SSEMessage | None:
        if not self._data:
            self._event = ""
            return None
        message = SSEMessage(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self._last_id,
            retry=self._retry,
        )
        self._event = ""
        self._data = []
        return message
