"""What the emulator puts on the wire: envelopes, timestamps, SSE framing, filters."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from spooled_integrations.protocol import _json
from spooled_integrations.protocol.timestamps import format_timestamp
from spooled_integrations.protocol.vocabulary import (
    EventType,
    resolve,
    wire_dotted_name,
    wire_variant,
)

__all__ = [
    "QUEUE_FILTERED_VARIANTS",
    "Envelope",
    "StreamFilter",
    "make_envelope",
    "now_timestamp",
    "sse_comment",
    "sse_event",
]

# `data` fields of each backend variant, in declaration order (protocol §3.1); the
# queue events are emulator extensions in the same style.
_FIELD_ORDER: dict[str, tuple[str, ...]] = {
    "JobStatusChange": ("job_id", "queue_name", "old_status", "new_status"),
    "JobCreated": ("job_id", "queue_name", "priority"),
    "JobCompleted": ("job_id", "queue_name", "duration_ms"),
    "JobFailed": ("job_id", "queue_name", "error", "retry_count"),
    "QueueStats": ("queue_name", "pending", "processing", "completed", "failed"),
    "WorkerHeartbeat": ("worker_id", "status", "current_job_id"),
    "WorkerRegistered": ("worker_id", "queue_name"),
    "WorkerDeregistered": ("worker_id",),
    "SystemHealth": ("database", "redis"),
    "QueuePaused": ("queue_name",),
    "QueueResumed": ("queue_name",),
    "Error": ("message",),
    "Ping": (),
}

QUEUE_FILTERED_VARIANTS = frozenset(
    {"JobCreated", "JobCompleted", "JobFailed", "JobStatusChange", "QueueStats"}
)
"""The variants the backend's WS ``queue`` filter applies to (every other one passes)."""


def now_timestamp(*, nanos: bool) -> str:
    """``Utc::now()`` as chrono prints it: 9 digits when ``nanos``, else microseconds."""
    if not nanos:
        return format_timestamp(datetime.now(timezone.utc))
    seconds, fraction = divmod(time.time_ns(), 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fraction == 0:
        return base + "Z"
    if fraction % 1_000_000 == 0:
        return f"{base}.{fraction // 1_000_000:03d}Z"
    if fraction % 1000 == 0:
        return f"{base}.{fraction // 1000:06d}Z"
    return f"{base}.{fraction:09d}Z"


@dataclass(frozen=True)
class Envelope:
    """One event ready to send: the PascalCase ``variant``, the dotted SSE name, the dict."""

    variant: str
    dotted: str
    body: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.body["data"]
        return data

    def json(self) -> bytes:
        return _json.dumps(self.body)


def wire_names(name: str) -> tuple[str, str]:
    """(variant, dotted name) for any spelling; unknown names are used as given."""
    found = resolve(name)
    if found is None:
        return name, name
    return wire_variant(found), wire_dotted_name(found)


def make_envelope(name: str, fields: Mapping[str, Any], *, timestamp: str) -> Envelope:
    """``{"type":Variant,"data":{declared fields…, extra fields…, "timestamp"}}``."""
    variant, dotted = wire_names(name)
    data: dict[str, Any] = {}
    for key in _FIELD_ORDER.get(variant, ()):
        if key in fields:
            data[key] = fields[key]
    for key, value in fields.items():
        if key not in data and key != "timestamp":
            data[key] = value
    data["timestamp"] = fields.get("timestamp", timestamp)
    return Envelope(variant, dotted, {"type": variant, "data": data})


def sse_event(dotted: str, payload: bytes) -> bytes:
    """One SSE event as axum writes it: ``event: name``, one ``data:`` line, blank line."""
    return b"event: " + dotted.encode() + b"\ndata: " + payload + b"\n\n"


def sse_comment(text: str) -> bytes:
    return b": " + text.encode() + b"\n\n"


@dataclass(frozen=True)
class StreamFilter:
    """Connect-time ``queue`` and ``events`` filters (protocol §2.2).

    Strict: ``queue`` applies only to :data:`QUEUE_FILTERED_VARIANTS` and ``events``
    entries must be the backend's dotted names. Lenient (default mode): ``queue``
    applies to every event with a ``queue_name``, and ``events`` entries may be any
    spelling :func:`~spooled_integrations.protocol.vocabulary.resolve` knows.
    """

    queue: str | None = None
    events: frozenset[str] | None = None
    lenient: bool = False

    @classmethod
    def parse(cls, queue: str | None, events: str | None, *, lenient: bool) -> StreamFilter:
        names = None
        if events is not None:
            names = frozenset(part.strip().lower() for part in events.split(","))
        return cls(queue=queue, events=names, lenient=lenient)

    def _wants(self, dotted: str) -> bool:
        if self.events is None or "*" in self.events:
            return True
        if dotted.lower() in self.events:
            return True
        if not self.lenient:
            return False
        wanted: EventType | None = resolve(dotted)
        return wanted is not None and any(resolve(entry) is wanted for entry in self.events)

    def wants_health(self) -> bool:
        return self._wants("system.health")

    def accepts(self, envelope: Envelope) -> bool:
        if self.queue is not None:
            queue_name = envelope.data.get("queue_name")
            applies = (
                "queue_name" in envelope.data
                if self.lenient
                else envelope.variant in QUEUE_FILTERED_VARIANTS
            )
            if applies and queue_name != self.queue:
                return False
        return self._wants(envelope.dotted)
