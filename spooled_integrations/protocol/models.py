"""Events: one light :class:`Event` per frame, typed pydantic views built on demand.

Building a pydantic model for every frame would cost more than reading the frame, so
:class:`Event` is a slotted record over the raw data; :meth:`Event.job`,
:meth:`Event.queue` and :meth:`Event.worker` give the typed views (Go field names plus
the backend's extra fields) when a handler asks for them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from spooled_integrations.protocol import _json
from spooled_integrations.protocol.timestamps import parse_timestamp
from spooled_integrations.protocol.vocabulary import LIFECYCLE_TYPES, EventType, resolve

__all__ = ["CATCH_UP", "Event", "JobEvent", "QueueEvent", "WorkerEvent"]

CATCH_UP = "catch_up"
"""``Event.derived_from`` of an event recovered from the job list after a stream gap."""

_JOB_STATUS = EventType.JOB_STATUS.value


@dataclass(frozen=True, slots=True, init=False)
class Event:
    """One realtime event.

    ``type`` is the canonical name (``job.completed``) or, for a type we do not know,
    the name as sent. ``wire_type`` and ``data`` are exactly what the server sent;
    ``derived_from`` is ``"job.status"`` for a lifecycle event derived from a status
    change, and ``"catch_up"`` for one recovered from the job list after a stream gap
    (:attr:`replayed`).
    """

    type: str
    data: Mapping[str, Any]
    wire_type: str
    raw_timestamp: str | None = None
    derived_from: str | None = None

    def __init__(
        self,
        type: str,
        data: Mapping[str, Any],
        wire_type: str,
        raw_timestamp: str | None = None,
        derived_from: str | None = None,
    ) -> None:
        # One Event per frame: the slot setters cost half of the object.__setattr__
        # calls a generated frozen __init__ makes.
        _set_type(self, type)
        _set_data(self, data)
        _set_wire_type(self, wire_type)
        _set_raw_timestamp(self, raw_timestamp)
        _set_derived_from(self, derived_from)

    @property
    def event_type(self) -> EventType | None:
        """The canonical :class:`EventType`, or ``None`` when the type is unknown."""
        return resolve(self.type)

    @property
    def replayed(self) -> bool:
        """True for an event recovered from the job list, not received on the stream."""
        return self.derived_from == CATCH_UP

    @property
    def known(self) -> bool:
        return self.event_type is not None

    @property
    def category(self) -> str:
        """``job``, ``queue``, ``worker``, ``system``, or ``unknown``."""
        found = self.event_type
        return found.category if found is not None else "unknown"

    @property
    def timestamp(self) -> datetime | None:
        """Server time of the event; ``None`` when absent or unparsable."""
        if self.raw_timestamp is None:
            return None
        try:
            return parse_timestamp(self.raw_timestamp)
        except ValueError:
            return None

    @property
    def job_id(self) -> str | None:
        value = self.data.get("job_id")
        return value if isinstance(value, str) else None

    @property
    def queue_name(self) -> str | None:
        value = self.data.get("queue_name")
        return value if isinstance(value, str) else None

    @property
    def worker_id(self) -> str | None:
        value = self.data.get("worker_id")
        return value if isinstance(value, str) else None

    @property
    def retry_count(self) -> int | None:
        value = self.data.get("retry_count")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def identity_base(self) -> str:
        """The identity without the retry count (see :attr:`identity_key`)."""
        return self.identity()[0]

    @property
    def identity_key(self) -> str:
        """The same string on every node for the same server event.

        Lifecycle events: ``<type>:<job id>[:<retry count>]``, so the status-change form
        and the direct form of one transition share a key. Other events: type plus a
        digest of their data (which carries the server timestamp).
        """
        return self.identity()[1]

    def identity(self) -> tuple[str, str]:
        """``(identity_base, identity_key)``, computed together (once per event)."""
        data = self.data
        job_id = data.get("job_id")
        if isinstance(job_id, str):
            if self.type in LIFECYCLE_TYPES:
                base = f"{self.type}:{job_id}"
                retry = data.get("retry_count")
                if isinstance(retry, int) and not isinstance(retry, bool):
                    return base, f"{base}:{retry}"
                return base, base
            if self.type == _JOB_STATUS:
                base = f"{_JOB_STATUS}:{job_id}:{data.get('new_status')}"
                return base, base
        digest = hashlib.sha1(_json.dumps_sorted(data), usedforsecurity=False)
        base = f"{self.type}:{digest.hexdigest()}"
        return base, base

    def job(self) -> JobEvent:
        """The typed job view (Go ``JobEvent`` fields plus backend extras)."""
        return JobEvent.model_validate(
            {**self.data, "type": self.type, "timestamp": self.raw_timestamp}
        )

    def queue(self) -> QueueEvent:
        """The typed queue view (Go ``QueueEvent`` fields plus queue counts)."""
        return QueueEvent.model_validate(
            {**self.data, "type": self.type, "timestamp": self.raw_timestamp}
        )

    def worker(self) -> WorkerEvent:
        """The typed worker view (Go ``WorkerEvent`` fields plus heartbeat fields)."""
        return WorkerEvent.model_validate(
            {**self.data, "type": self.type, "timestamp": self.raw_timestamp}
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (the shape tasks and actors receive)."""
        return {
            "type": self.type,
            "wire_type": self.wire_type,
            "timestamp": self.raw_timestamp,
            "derived_from": self.derived_from,
            "data": dict(self.data),
        }


_set_type, _set_data, _set_wire_type, _set_raw_timestamp, _set_derived_from = (
    vars(Event)[name].__set__
    for name in ("type", "data", "wire_type", "raw_timestamp", "derived_from")
)


def _to_datetime(value: Any) -> Any:
    if isinstance(value, str):
        return parse_timestamp(value)
    return value


Timestamp = Annotated[datetime | None, BeforeValidator(_to_datetime)]


class _View(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    timestamp: Timestamp = None


class JobEvent(_View):
    """Job event fields: the Go SDK's ``JobEvent`` plus the backend's extras."""

    job_id: str
    queue_name: str = ""
    status: str = ""
    priority: int | None = None
    retry_count: int | None = None
    error: str | None = None
    progress: float | None = None
    result: dict[str, Any] | None = None
    worker_id: str | None = None
    scheduled_at: Timestamp = None
    started_at: Timestamp = None
    completed_at: Timestamp = None
    failed_at: Timestamp = None
    metadata: dict[str, str] | None = None
    duration_ms: int | None = None
    old_status: str | None = None
    new_status: str | None = None


class QueueEvent(_View):
    """Queue event fields: the Go SDK's ``QueueEvent`` plus ``queue.stats`` counts."""

    queue_name: str
    reason: str | None = None
    pending: int | None = None
    processing: int | None = None
    completed: int | None = None
    failed: int | None = None


class WorkerEvent(_View):
    """Worker event fields: the Go SDK's ``WorkerEvent`` plus heartbeat fields."""

    worker_id: str
    queue_name: str = ""
    hostname: str | None = None
    version: str | None = None
    last_seen_at: Timestamp = None
    status: str | None = None
    current_job_id: str | None = None
