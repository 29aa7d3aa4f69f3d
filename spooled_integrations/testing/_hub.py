"""Open streams, the broadcast that stands in for Redis ``org:{org}:events``, counters
and armed faults.

Streams and faults are touched only on the emulator's loop thread; counters are also
read from test threads, so they live behind a lock (a condition, for waiters).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from spooled_integrations.testing._wire import Envelope, StreamFilter, sse_event

__all__ = ["COUNTER_NAMES", "Hub", "Item", "Rejection", "Stream"]

Transport = Literal["ws", "sse"]

COUNTER_NAMES = (
    "ws_accepted",  # WS upgrades (101), including accept_then_close ones
    "sse_accepted",  # SSE responses (200)
    "frames_sent",  # WS data frames and SSE data events (not pings, not comments)
    "pings_sent",  # WS Ping envelopes
    "comments_sent",  # SSE ': keepalive' / ': ping'
    "stalled_drops",  # events discarded while stalled
    "undelivered",  # events published while no open stream accepted them
    "logins",  # POST /auth/login past body validation
    "commands",  # WS commands understood
    "ignored_messages",  # WS text frames that are not a known command
    "rejected_by_fault",  # answers from reject_next()
    "accept_then_close",  # connections closed by accept_then_close()
    "rest_list",  # GET /jobs answered by the route (any status)
    "rest_get",  # GET /jobs/{id} answered by the route
    "rest_status",  # GET /jobs/status answered by the route
    "rest_rejected",  # GET /jobs* answers from reject_rest()
)


@dataclass(frozen=True)
class Item:
    """One thing a stream's writer should do.

    ``data``: a pre-rendered WS text frame (str) or SSE chunk (bytes); ``binary``: a WS
    binary frame; ``ping``: a WS ``Ping`` envelope; ``close``: WS Close ``code`` or SSE
    end of body; ``end``: stop writing.
    """

    kind: Literal["data", "binary", "ping", "close", "end"]
    payload: str | bytes = b""
    code: int = 0


@dataclass(eq=False)
class Stream:
    """One open WS connection or SSE response."""

    kind: Transport
    transport: asyncio.Transport | None
    filter: StreamFilter | None = None  # None: published events never reach it
    raw: bool = False  # receives publish_raw()
    queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)

    def put(self, item: Item) -> None:
        self.queue.put_nowait(item)

    def abort(self) -> None:
        """Drop the TCP connection: no Close frame, no chunked terminator."""
        if self.transport is not None:
            self.transport.abort()


@dataclass(frozen=True)
class Rejection:
    status: int
    body: str | bytes | dict[str, Any] | list[Any] | None
    retry_after: float | str | None


class Hub:
    """Registry of open streams, broadcast, counters, and one-shot faults."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._counters: Counter[str] = Counter()
        self._current: Counter[str] = Counter()
        self.streams: set[Stream] = set()
        self.stalled = False
        self.rejections: deque[Rejection] = deque()
        self.rest_rejections: deque[Rejection] = deque()
        self.rest_delay = 0.0
        self.accept_then_close = 0
        self._commands: deque[dict[str, Any]] = deque(maxlen=1000)

    # -- counters (any thread) ------------------------------------------------

    def count(self, name: str, amount: int = 1) -> None:
        with self._cond:
            self._counters[name] += amount

    def counters(self) -> dict[str, int]:
        with self._cond:
            snapshot = dict.fromkeys(COUNTER_NAMES, 0)
            snapshot.update(self._counters)
            for kind in ("ws", "sse"):
                snapshot[f"{kind}_current"] = self._current[kind]
            return snapshot

    def record_command(self, command: dict[str, Any]) -> None:
        with self._cond:
            self._commands.append(command)

    def commands(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._commands)

    def value(self, name: str) -> int:
        with self._cond:
            return self._counters[name]

    def current(self, kind: Transport) -> int:
        with self._cond:
            return self._current[kind]

    def reset_counters(self) -> None:
        with self._cond:
            self._counters.clear()

    def wait_for(self, kind: Transport, at_least: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._current[kind] >= at_least, timeout)

    # -- streams (loop thread) ------------------------------------------------

    def add(self, stream: Stream) -> None:
        self.streams.add(stream)
        with self._cond:
            self._current[stream.kind] += 1
            self._counters[f"{stream.kind}_accepted"] += 1
            self._cond.notify_all()

    def remove(self, stream: Stream) -> None:
        if stream not in self.streams:
            return
        self.streams.discard(stream)
        with self._cond:
            self._current[stream.kind] -= 1
            self._cond.notify_all()

    def broadcast(self, envelope: Envelope) -> None:
        """Queue ``envelope`` on every stream whose filter accepts it."""
        if self.stalled:
            self.count("stalled_drops")
            return
        rendered: dict[Transport, str | bytes] = {}
        heard = False
        for stream in list(self.streams):
            if stream.filter is None or not stream.filter.accepts(envelope):
                continue
            heard = True
            if stream.kind not in rendered:
                payload = envelope.json()
                rendered[stream.kind] = (
                    payload.decode() if stream.kind == "ws" else sse_event(envelope.dotted, payload)
                )
            stream.put(Item("data", rendered[stream.kind]))
        if not heard:
            self.count("undelivered")

    def broadcast_raw(self, ws_item: Item, sse_chunk: bytes) -> None:
        if self.stalled:
            self.count("stalled_drops")
            return
        for stream in list(self.streams):
            if stream.raw:
                stream.put(ws_item if stream.kind == "ws" else Item("data", sse_chunk))

    def abort_all(self, kind: Transport | None = None) -> None:
        for stream in list(self.streams):
            if kind is None or stream.kind == kind:
                stream.abort()

    def close_all(self, code: int, reason: str) -> None:
        for stream in list(self.streams):
            stream.put(Item("close", reason, code))

    def take_rejection(self) -> Rejection | None:
        return self.rejections.popleft() if self.rejections else None

    def take_rest_rejection(self) -> Rejection | None:
        return self.rest_rejections.popleft() if self.rest_rejections else None

    def take_accept_then_close(self) -> bool:
        if self.accept_then_close <= 0:
            return False
        self.accept_then_close -= 1
        return True
