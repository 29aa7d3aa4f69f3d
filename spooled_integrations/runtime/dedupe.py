"""Suppress a second delivery of the same job transition within a time window.

One transition can reach us twice: as a direct lifecycle event (``job.failed`` with a
retry count) and as the lifecycle event derived from a ``job.status`` change (no retry
count); an SSE job stream also re-sends its current status as a snapshot after every
reconnect. Identity keys are ``<type>:<job_id>[:<retry_count>]`` (see
:attr:`spooled_integrations.protocol.Event.identity_key`); the *base* is the key
without the retry count.

- An event **with** a retry count is a duplicate if its full key was seen, or its base
  was seen in a form **without** a retry count.
- An event **without** a retry count is a duplicate if its base was seen in any form.

Only job lifecycle events and ``job.status`` are considered; everything else passes.
Memory is bounded: entries expire after ``window`` seconds and each table is capped at
``max_entries`` (the oldest go first).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from spooled_integrations.protocol import Event, EventType

__all__ = ["DEDUPED_TYPES", "DuplicateFilter"]

DEDUPED_TYPES = frozenset(
    {
        EventType.JOB_CREATED.value,
        EventType.JOB_STARTED.value,
        EventType.JOB_COMPLETED.value,
        EventType.JOB_FAILED.value,
        EventType.JOB_RETRYING.value,
        EventType.JOB_CANCELLED.value,
        EventType.JOB_STATUS.value,
    }
)
"""Event types subject to duplicate suppression."""


class _ExpiringSet:
    """Keys with an insertion time; oldest first, so expiry pops from the front."""

    __slots__ = ("_items", "_max")

    def __init__(self, max_entries: int) -> None:
        self._items: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, key: str, now: float) -> None:
        items = self._items
        if key in items:
            del items[key]  # re-added: it moves to the back
        items[key] = now
        if len(items) > self._max:
            items.popitem(last=False)

    def expire(self, before: float) -> float:
        """Drop keys seen at or before ``before``; the time of the oldest one left."""
        items = self._items
        while items:
            key, seen_at = next(iter(items.items()))
            if seen_at > before:
                return seen_at
            del items[key]
        return math.inf


class DuplicateFilter:
    """The duplicate window: :meth:`is_duplicate` checks an event and remembers it.

    ``clock`` is a monotonic clock in seconds (injectable for tests). Thread-safe.
    """

    def __init__(
        self,
        window: float = 60.0,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window < 0:
            raise ValueError("window must be >= 0 seconds")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._full = _ExpiringSet(max_entries)  # full keys of events with a retry count
        self._any = _ExpiringSet(max_entries)  # bases seen in any form
        self._bare = _ExpiringSet(max_entries)  # bases seen without a retry count
        # No entry is older than this, so nothing expires before now - window reaches it.
        self._oldest = math.inf

    def __len__(self) -> int:
        with self._lock:
            return len(self._any)

    def is_duplicate(self, event: Event) -> bool:
        """True if ``event`` repeats a transition seen within the window.

        A non-duplicate is recorded; a duplicate is not (it does not extend the window).
        With ``window == 0`` nothing is ever a duplicate.
        """
        if (
            self.window == 0
            or event.type not in DEDUPED_TYPES
            or not isinstance(event.data.get("job_id"), str)
        ):
            return False
        base, key = event.identity()
        with self._lock:
            now = self._clock()
            if self._oldest <= now - self.window:
                self._expire(now)
            if key != base:  # the event carries a retry count
                if key in self._full or base in self._bare:
                    return True
                self._full.add(key, now)
                self._any.add(base, now)
            else:
                if base in self._any:
                    return True
                self._any.add(base, now)
                self._bare.add(base, now)
            if self._oldest == math.inf:
                self._oldest = now
        return False

    def clear(self) -> None:
        with self._lock:
            for table in (self._full, self._any, self._bare):
                table.expire(math.inf)
            self._oldest = math.inf

    def _expire(self, now: float) -> None:
        before = now - self.window
        self._oldest = min(
            self._full.expire(before), self._any.expire(before), self._bare.expire(before)
        )
