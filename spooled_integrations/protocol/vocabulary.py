"""The event vocabulary: canonical names, their aliases, and their wire spellings.

The backend sends PascalCase variant names (``JobCompleted``) in frames and dotted
names (``job.status``) on SSE ``event:`` lines and in ``events=`` filters; the Go SDK
uses its own dotted constants (``worker.joined``). Every spelling resolves to one
canonical :class:`EventType`; names we do not know stay as they are and are still
delivered to catch-all handlers.
"""

from __future__ import annotations

import enum

__all__ = [
    "EVENT_SYNONYMS",
    "LIFECYCLE_BY_STATUS",
    "LIFECYCLE_TYPES",
    "TERMINAL_STATUSES",
    "EventType",
    "canonical_name",
    "resolve",
    "wire_dotted_name",
    "wire_variant",
]


class EventType(str, enum.Enum):
    """Canonical event names: the Go SDK's constants plus the backend's own events."""

    # Go SDK constants
    JOB_CREATED = "job.created"
    JOB_STARTED = "job.started"
    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_RETRYING = "job.retrying"
    JOB_PROGRESS = "job.progress"
    QUEUE_PAUSED = "queue.paused"
    QUEUE_RESUMED = "queue.resumed"
    WORKER_JOINED = "worker.joined"
    WORKER_LEFT = "worker.left"
    WORKER_ACTIVE = "worker.active"
    WORKER_INACTIVE = "worker.inactive"
    # backend events with no Go constant
    JOB_STATUS = "job.status"
    JOB_CANCELLED = "job.cancelled"
    QUEUE_STATS = "queue.stats"
    WORKER_HEARTBEAT = "worker.heartbeat"
    SYSTEM_HEALTH = "system.health"
    ERROR = "error"
    PING = "ping"

    def __str__(self) -> str:
        return self.value

    @property
    def category(self) -> str:
        """``job``, ``queue``, ``worker`` or ``system``."""
        head = self.value.split(".", 1)[0]
        return head if head in ("job", "queue", "worker") else "system"


# Backend variant name (and dotted name) for canonical names whose spelling differs.
_WIRE: dict[EventType, tuple[str, str]] = {
    EventType.JOB_STATUS: ("JobStatusChange", "job.status"),
    EventType.WORKER_JOINED: ("WorkerRegistered", "worker.registered"),
    EventType.WORKER_LEFT: ("WorkerDeregistered", "worker.deregistered"),
    EventType.SYSTEM_HEALTH: ("SystemHealth", "system.health"),
}

_EXTRA_ALIASES: dict[str, EventType] = {
    "job.status_changed": EventType.JOB_STATUS,
    "job.statuschanged": EventType.JOB_STATUS,
    "jobstatuschanged": EventType.JOB_STATUS,
    "job.canceled": EventType.JOB_CANCELLED,
    "worker.registered": EventType.WORKER_JOINED,
    "worker.deregistered": EventType.WORKER_LEFT,
}


def wire_variant(event_type: EventType) -> str:
    """The backend's PascalCase variant name, e.g. ``JobStatusChange``."""
    if event_type in _WIRE:
        return _WIRE[event_type][0]
    return "".join(part.capitalize() for part in event_type.value.split("."))


def wire_dotted_name(event_type: EventType) -> str:
    """The backend's dotted name (SSE ``event:`` line and ``events=`` filter)."""
    if event_type in _WIRE:
        return _WIRE[event_type][1]
    return event_type.value


def _build_aliases() -> dict[str, EventType]:
    table: dict[str, EventType] = {}
    for member in EventType:
        for spelling in (member.value, wire_variant(member), wire_dotted_name(member)):
            table[spelling] = member
            table[spelling.lower()] = member
    table.update(_EXTRA_ALIASES)
    return table


_ALIASES = _build_aliases()


def resolve(name: str) -> EventType | None:
    """The canonical type for any known spelling, or ``None`` for an unknown name."""
    found = _ALIASES.get(name)
    if found is None:
        found = _ALIASES.get(name.strip().lower())
    return found


_CANONICAL = {spelling: member.value for spelling, member in _ALIASES.items()}


def canonical_name(name: str) -> str:
    """The canonical string for ``name``; unknown names come back unchanged."""
    canonical = _CANONICAL.get(name)  # signals look this up for every event
    if canonical is not None:
        return canonical
    found = resolve(name)
    return found.value if found is not None else name


LIFECYCLE_TYPES = frozenset(
    member.value
    for member in (
        EventType.JOB_CREATED,
        EventType.JOB_STARTED,
        EventType.JOB_COMPLETED,
        EventType.JOB_FAILED,
        EventType.JOB_RETRYING,
        EventType.JOB_CANCELLED,
    )
)
"""The job lifecycle event types: one per job transition, each with an identity key."""

# Job statuses (backend ``models/job.rs``) and what a change to them means.
TERMINAL_STATUSES = frozenset({"completed", "failed", "deadletter", "cancelled"})

LIFECYCLE_BY_STATUS: dict[str, EventType] = {
    "processing": EventType.JOB_STARTED,
    "running": EventType.JOB_STARTED,
    "completed": EventType.JOB_COMPLETED,
    "failed": EventType.JOB_FAILED,
    "deadletter": EventType.JOB_FAILED,
    "cancelled": EventType.JOB_CANCELLED,
}
"""``new_status`` → lifecycle event. ``pending``/``scheduled`` mean ``job.retrying`` only
after ``processing`` or ``failed`` (see :func:`spooled_integrations.protocol.derive_lifecycle`)."""


def _synonyms() -> dict[str, str]:
    words = {
        "job.completed": "done finished finish complete success succeeded successful ok end "
        "ended succeed completion",
        "job.failed": "fail failure errored error crashed crash broken",
        "job.started": "start begin began begun running run processing",
        "job.retrying": "retry retried retrying",
        "job.cancelled": "cancel canceled cancelled abort aborted",
        "job.created": "create new queued enqueued submitted added",
    }
    return {word: name for name, text in words.items() for word in text.split()}


EVENT_SYNONYMS: dict[str, str] = _synonyms()
"""Words people write for a job event, by meaning (``job.done`` means ``job.completed``),
for "did you mean" hints."""
