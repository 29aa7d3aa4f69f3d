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


def _expire_bases(bases: OrderedDict[str, tuple[float, float | None]], before: float) -> float:
    """:meth:`_ExpiringSet.expire` for the table of bases (ordered by first time)."""
    while bases:
        base, (seen_at, _) = next(iter(bases.items()))
        if seen_at > before:
            return seen_at
        del bases[base]
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
        # base -> (last seen in any form, last seen without a retry count or None),
        # ordered by the first time: one table where two would cost two updates per event
        self._bases: OrderedDict[str, tuple[float, float | None]] = OrderedDict()
        self._max = max_entries
        # No entry is older than this, so nothing expires before now - window reaches it.
        self._oldest = math.inf

    def __len__(self) -> int:
        with self._lock:
            return len(self._bases)

    def is_duplicate(self, event: Event) -> bool:
        """True if ``event`` repeats a transition seen within the window.

        A non-duplicate is recorded; a duplicate is not (it does not extend the window).
        With ``window == 0`` nothing is ever a duplicate.
        """
        if event.type not in DEDUPED_TYPES or self.window == 0:
            return False
        if not isinstance(event.data.get("job_id"), str):
            return False
        base, key = event.identity()
        now = self._clock()
        before = now - self.window
        with self._lock:
            if self._oldest <= before:
                self._expire(before)
            bases = self._bases
            seen = bases.get(base)  # present means seen within the window (expired above)
            if key is not base:  # the event carries a retry count (identity() shares base)
                bare_at = seen[1] if seen is not None else None
                if key in self._full or (bare_at is not None and bare_at > before):
                    return True
                self._full.add(key, now)
            elif seen is not None:
                return True
            else:
                bare_at = now
            if seen is not None:
                bases.move_to_end(base)
            bases[base] = (now, bare_at)
            if len(bases) > self._max:
                bases.popitem(last=False)
            if self._oldest == math.inf:
                self._oldest = now
        return False

    def clear(self) -> None:
        with self._lock:
            self._full.expire(math.inf)
            self._bases.clear()
            self._oldest = math.inf

    def _expire(self, before: float) -> None:
        self._oldest = min(self._full.expire(before), _expire_bases(self._bases, before))
