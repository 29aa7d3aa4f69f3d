"""JSON frame → :class:`Event`, for both wire shapes, plus lifecycle derivation.

Accepted shapes::

    {"type":"JobCompleted","data":{"job_id":…,"timestamp":"…Z"}}        backend envelope
    {"type":"job.completed","timestamp":"…Z","data":{"job_id":…}}        Go SDK shape

Anything else raises :class:`~spooled_integrations.errors.ProtocolError` with a short
``reason`` that the client counts; the stream goes on.
"""

from __future__ import annotations

from typing import Any

from spooled_integrations.errors import ProtocolError
from spooled_integrations.protocol import _json
from spooled_integrations.protocol.models import Event
from spooled_integrations.protocol.vocabulary import (
    LIFECYCLE_BY_STATUS,
    EventType,
    resolve,
    wire_dotted_name,
    wire_variant,
)

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "decode_frame", "derive_lifecycle", "normalize"]

DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
"""Frames larger than this are refused (``reason="too_large"``)."""

_STR, _INT, _BOOL = str, int, bool

# Fields whose JSON type we check when present (the backend's declared types).
_FIELD_TYPES: dict[str, type] = {
    "job_id": _STR,
    "queue_name": _STR,
    "worker_id": _STR,
    "old_status": _STR,
    "new_status": _STR,
    "status": _STR,
    "error": _STR,
    "message": _STR,
    "priority": _INT,
    "retry_count": _INT,
    "duration_ms": _INT,
    "pending": _INT,
    "processing": _INT,
    "completed": _INT,
    "failed": _INT,
    "database": _BOOL,
    "redis": _BOOL,
}

_REQUIRED_BY_CATEGORY = {"job": "job_id", "queue": "queue_name", "worker": "worker_id"}

_JOB_STATUS = EventType.JOB_STATUS.value

_RETRY_AFTER = frozenset({"processing", "running", "failed"})
_WAITING = frozenset({"pending", "scheduled"})


def _resolve(name: str) -> tuple[str, str | None] | None:
    found = resolve(name)
    if found is None:
        return None
    return found.value, _REQUIRED_BY_CATEGORY.get(found.category)


# Canonical name and required field of every exact spelling the wire uses, so the hot
# path does one dict lookup and touches no enum (other aliases go through resolve()).
_KNOWN: dict[str, tuple[str, str | None]] = {
    spelling: (member.value, _REQUIRED_BY_CATEGORY.get(member.category))
    for member in EventType
    for spelling in (member.value, wire_variant(member), wire_dotted_name(member))
}


def derive_lifecycle(event: Event) -> Event | None:
    """The lifecycle event a ``job.status`` change means, or ``None``.

    ``processing`` → ``job.started``; ``completed`` → ``job.completed``;
    ``failed``/``deadletter`` → ``job.failed``; ``cancelled`` → ``job.cancelled``;
    ``pending``/``scheduled`` after ``processing``/``failed`` → ``job.retrying``.
    """
    if event.type != _JOB_STATUS:
        return None
    new_status = event.data.get("new_status")
    if not isinstance(new_status, str):
        return None
    lifecycle = LIFECYCLE_BY_STATUS.get(new_status)
    if (
        lifecycle is None
        and new_status in _WAITING
        and event.data.get("old_status") in _RETRY_AFTER
    ):
        lifecycle = EventType.JOB_RETRYING
    if lifecycle is None:
        return None
    return Event(
        type=lifecycle.value,
        data=event.data,
        wire_type=event.wire_type,
        raw_timestamp=event.raw_timestamp,
        derived_from=_JOB_STATUS,
    )


def normalize(
    payload: bytes | str,
    *,
    event_name: str | None = None,
    max_size: int = DEFAULT_MAX_FRAME_BYTES,
) -> list[Event]:
    """Decode one JSON frame into its :class:`Event`, followed by the lifecycle event a
    ``job.status`` change implies, if any.

    ``event_name`` is the SSE ``event:`` line, used when the payload has no ``type``.
    One function, not :func:`decode_frame` plus a step: it runs for every frame.
    """
    if len(payload) > max_size:
        raise ProtocolError(
            f"frame of {len(payload)} bytes exceeds the {max_size}-byte limit", reason="too_large"
        )
    try:
        frame = _json.loads(payload)
    except _json.JSONDecodeError:
        raise ProtocolError(f"frame is not JSON: {_preview(payload)}", reason="not_json") from None
    if not isinstance(frame, dict):
        raise ProtocolError(f"frame is not a JSON object: {_preview(payload)}", reason="wrong_type")

    data: Any
    wire_type = frame.get("type")
    if wire_type is None and event_name:
        # A bare data object under an SSE ``event:`` name.
        wire_type, data, timestamp = event_name, frame, frame.get("timestamp")
    else:
        if not isinstance(wire_type, str) or not wire_type:
            raise ProtocolError("frame has no string 'type'", reason="missing_field")
        data = frame.get("data")
        if data is None:
            data = {}
        elif not isinstance(data, dict):
            raise ProtocolError(f"{wire_type[:64]}: 'data' is not an object", reason="wrong_type")
        timestamp = frame.get("timestamp")
        if timestamp is None:
            timestamp = data.get("timestamp")
    if timestamp is not None and not isinstance(timestamp, str):
        raise ProtocolError(f"{wire_type[:64]}: 'timestamp' is not a string", reason="wrong_type")
    expected_type = _FIELD_TYPES.get
    for key, value in data.items():
        expected = expected_type(key)
        if expected is not None and value is not None and type(value) is not expected:
            raise ProtocolError(
                f"{wire_type[:64]}: field {key!r} should be {expected.__name__}",
                reason="wrong_type",
            )
    known = _KNOWN.get(wire_type) or _resolve(wire_type)
    if known is None:
        return [Event(wire_type, data, wire_type, timestamp)]
    canonical, required = known
    if required is not None and data.get(required) is None:
        raise ProtocolError(f"{wire_type[:64]}: missing field {required!r}", reason="missing_field")
    event = Event(canonical, data, wire_type, timestamp)
    if canonical != _JOB_STATUS:
        return [event]
    derived = derive_lifecycle(event)
    return [event] if derived is None else [event, derived]


def decode_frame(
    payload: bytes | str,
    *,
    event_name: str | None = None,
    max_size: int = DEFAULT_MAX_FRAME_BYTES,
) -> Event:
    """Decode one JSON frame into an :class:`Event` (see :func:`normalize`)."""
    return normalize(payload, event_name=event_name, max_size=max_size)[0]


def _preview(payload: bytes | str) -> str:
    text = payload[:60]
    return repr(text) + ("…" if len(payload) > 60 else "")
