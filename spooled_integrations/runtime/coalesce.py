"""Join the two forms of one job transition into one event.

A server may report a transition twice: as a status change (``JobStatusChange``, from
which the protocol derives ``job.completed``/``job.failed``, marked
``derived_from="job.status"``) and directly (``JobCompleted`` with ``duration_ms``,
``JobFailed`` with ``error`` and ``retry_count``). Delivered as they come, the first
wins the duplicate window and the second is suppressed, so the direct form's fields
were lost whenever the status change came first. A :class:`Coalescer` lets the first
form wait up to ``window`` seconds after it was received; when the other form of the
same job arrives meanwhile, one event carrying both goes on in the first form's place:
the direct form (its ``type``, ``wire_type``, timestamp, ``derived_from=None``) with
``data`` the union of both, the direct form's values winning where both have a field.

Order is kept: events behind a waiting one wait in line behind it, so what leaves is
what arrived, in arrival order, minus the second forms. The line is empty except while
a twin is awaited, which on a stream that sends both forms back to back is the time
between them.

It adapts to the stream: a form of a type waits only while its twin may come. Once a
wait ends without the twin, that form of that type passes at once until an event of
the other form arrives again; so a stream that carries one form only (the backend
source's per-job SSE stream: status changes; a server sending only ``JobCompleted``)
pays one wait per type and form, once. Recovered events (``derived_from="catch_up"``)
never wait.

Not locked: the dispatch thread alone calls it (:attr:`oldest` may be read anywhere).
"""

from __future__ import annotations

import logging
from collections import deque

from spooled_integrations.protocol import Event, EventType
from spooled_integrations.protocol.models import CATCH_UP
from spooled_integrations.runtime.metrics import Metrics

__all__ = ["TWIN_TYPES", "Coalescer", "Ready", "join"]

logger = logging.getLogger(__name__)

TWIN_TYPES = frozenset({EventType.JOB_COMPLETED.value, EventType.JOB_FAILED.value})
"""Types a server can send in both forms: a direct variant exists and a status change
derives them (``job.started``/``job.cancelled``/``job.retrying`` have no direct variant,
``job.created`` no status-change form)."""

_STATUS = EventType.JOB_STATUS.value

Ready = list[tuple[Event, float]]
"""Events to dispatch now, in order, each with the monotonic time it was received."""


class _Entry:
    """One event in line; ``deadline`` is set while it waits for its twin."""

    __slots__ = ("deadline", "event", "received_at")

    def __init__(self, event: Event, received_at: float, deadline: float | None) -> None:
        self.event = event
        self.received_at = received_at
        self.deadline = deadline


class Coalescer:
    """A line of events that moves whenever its head is not waiting for a twin.

    :meth:`offer` takes every event in arrival order and returns what may go now;
    :meth:`due` ends the waits that ran out by a given time; :meth:`flush` and
    :meth:`pop_oldest` empty the line (before a catch-up sweep's events, at stop).
    ``metrics`` counts each join as ``coalesced``.
    """

    def __init__(self, window: float, metrics: Metrics) -> None:
        if window <= 0:
            raise ValueError("window must be > 0 seconds")
        self.window = window
        self._metrics = metrics
        self._counts: dict[str, int] | None = None  # the dispatch thread's counter table
        self._line: deque[_Entry] = deque()
        self._waiting: dict[str, _Entry] = {}  # job id -> its entry awaiting a twin
        # (type, derived_from) of a form whose wait ended without the twin, while no
        # event of the other form has come since (None: direct, "job.status")
        self._lonely: set[tuple[str, str | None]] = set()
        self.oldest: float | None = None
        """When the first event in line was received (``None``: the line is empty)."""

    def __len__(self) -> int:
        """Events in line."""
        return len(self._line)

    def offer(self, event: Event, received_at: float) -> Ready | None:
        """What may be dispatched now that ``event`` arrived, in order (maybe nothing);
        ``None``: ``event`` itself, at once (the usual case, without a list)."""
        kind = event.type
        if kind in TWIN_TYPES:
            form = (kind, event.derived_from)
            if not self._line and form in self._lonely:
                # Nothing waits, so neither does its twin; and the other form is not
                # lonely (its arrival would have ended this form's loneliness first).
                return None
            job_id = event.data.get("job_id")
            if form[1] != CATCH_UP and isinstance(job_id, str):
                return self._offer_form(event, received_at, job_id, form)
        if not self._line:
            return None
        self._line.append(_Entry(event, received_at, None))
        return []  # the head still waits: nothing behind it moves

    def _offer_form(
        self, event: Event, received_at: float, job_id: str, form: tuple[str, str | None]
    ) -> Ready | None:
        lonely = self._lonely
        if lonely:  # that form does come: the other one waits again
            lonely.discard((form[0], None if form[1] == _STATUS else _STATUS))
        waiting = self._waiting.pop(job_id, None)
        if waiting is not None:
            if _twins(waiting.event, event):
                waiting.event = join(waiting.event, event)
                waiting.deadline = None
                counts = self._counts
                if counts is None:  # first join: on the one thread that calls this
                    counts = self._counts = self._metrics.thread_counts()
                counts["coalesced"] += 1
                return self._release()
            waiting.deadline = None  # another transition of that job: its twin is late
        line = self._line
        if form in lonely:
            line.append(_Entry(event, received_at, None))  # (the line is not empty)
        else:
            entry = _Entry(event, received_at, received_at + self.window)
            if not line:  # the usual case: a first form on its own
                line.append(entry)
                self._waiting[job_id] = entry
                self.oldest = received_at
                return []
            line.append(entry)
            self._waiting[job_id] = entry
        return self._release()

    def next_deadline(self) -> float | None:
        """When the wait at the head of the line ends (monotonic), or ``None``."""
        for entry in self._waiting.values():  # oldest first, as in the line
            return entry.deadline
        return None

    def due(self, until: float) -> Ready:
        """End the waits that ran out by ``until`` (no twin came); what may go now."""
        ended = []
        for job_id, entry in self._waiting.items():
            if entry.deadline is None or entry.deadline > until:
                break
            ended.append(job_id)
        for job_id in ended:
            entry = self._waiting.pop(job_id)
            entry.deadline = None
            self._learn_lonely(entry.event)
        return self._release()

    def flush(self) -> Ready:
        """Everything in line, at once (a catch-up sweep's events come next)."""
        ready = [(entry.event, entry.received_at) for entry in self._line]
        self._line.clear()
        self._waiting.clear()
        self.oldest = None
        return ready

    def pop_oldest(self) -> tuple[Event, float] | None:
        """The first event in line, waiting or not (at stop), or ``None``."""
        if not self._line:
            return None
        entry = self._line.popleft()
        job_id = entry.event.data.get("job_id")
        if entry.deadline is not None and isinstance(job_id, str):
            self._waiting.pop(job_id, None)
        self.oldest = self._line[0].received_at if self._line else None
        return entry.event, entry.received_at

    def _release(self) -> Ready:
        """Take every entry from the head up to the first that waits."""
        line = self._line
        ready: Ready = []
        while line and line[0].deadline is None:
            entry = line.popleft()
            ready.append((entry.event, entry.received_at))
        self.oldest = line[0].received_at if line else None
        return ready

    def _learn_lonely(self, event: Event) -> None:
        form = (event.type, event.derived_from)
        if form not in self._lonely:
            self._lonely.add(form)
            logger.debug(
                "%s (%s form) came without its twin; that form goes on at once until "
                "an event of the other form arrives",
                form[0],
                "status-change" if form[1] == _STATUS else "direct",
            )


def _twins(waiting: Event, event: Event) -> bool:
    """The two forms of one transition: same type, one of each form, and equal retry
    counts where both know one (the job was matched by the caller)."""
    if waiting.type != event.type:
        return False
    if (waiting.derived_from == _STATUS) == (event.derived_from == _STATUS):
        return False
    a = waiting.data.get("retry_count")
    b = event.data.get("retry_count")
    return a is None or b is None or a == b


def join(first: Event, second: Event) -> Event:
    """One event from both forms: the direct one, with the status change's data added
    (the direct form's value wins for a field both carry)."""
    direct, status = (second, first) if first.derived_from == _STATUS else (first, second)
    return Event(
        type=direct.type,
        data={**status.data, **direct.data},
        wire_type=direct.wire_type,
        raw_timestamp=direct.raw_timestamp or status.raw_timestamp,
        derived_from=direct.derived_from,
    )
