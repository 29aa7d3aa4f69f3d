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

Memory is bounded by time and size without per-entry expiry work: entries live in two
generations of plain dicts. Lookups see both and compare the time an entry was seen
with the window; every ``window`` seconds the older generation is dropped whole, and
so it is when the younger one reaches half of ``max_entries`` (the oldest go first).
An entry is therefore forgotten between one and two windows after it was seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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


class _Generations:
    """A dict kept as a young and an old generation (see the module docstring)."""

    __slots__ = ("half", "old", "young")

    def __init__(self, max_entries: int) -> None:
        self.young: dict[str, Any] = {}
        self.old: dict[str, Any] = {}
        self.half = max(1, max_entries // 2)

    def __len__(self) -> int:
        return len(self.young) + len(self.old)

    def get(self, key: str) -> Any:
        found = self.young.get(key)
        return self.old.get(key) if found is None else found

    def put(self, key: str, value: Any) -> None:
        young = self.young
        young[key] = value
        if len(young) >= self.half:
            self.rotate()

    def rotate(self) -> None:
        self.old, self.young = self.young, {}


class DuplicateFilter:
    """The duplicate window: :meth:`is_duplicate` checks an event and remembers it.

    ``clock`` is a monotonic clock in seconds (injectable for tests). Not locked: one
    thread (the runtime's dispatch thread) calls it.
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
        # base -> time last seen without a retry count (in any form then), or else
        # (last seen in any form, last seen without a retry count or None)
        self._bases = _Generations(max_entries)
        self._full = _Generations(max_entries)  # full key -> seen at (retry count events)
        self._rotated_at = clock()

    def __len__(self) -> int:
        """Entries held (expired ones too, until their generation is dropped)."""
        return len(self._bases) + len(self._full)

    def is_duplicate(self, event: Event, now: float | None = None) -> bool:
        """True if ``event`` repeats a transition seen within the window.

        ``now`` is when the event arrived, on the filter's clock (the dispatcher passes
        the monotonic time its batch was received); by default, the clock's time now.
        A non-duplicate is recorded; a duplicate is not (it does not extend the window).
        With ``window == 0`` nothing is ever a duplicate.
        """
        if event.type not in DEDUPED_TYPES or self.window == 0:
            return False
        if not isinstance(event.data.get("job_id"), str):
            return False
        base, key = event.identity()
        if now is None:
            now = self._clock()
        if now - self._rotated_at >= self.window:
            self._age(now)
        before = now - self.window
        bases = self._bases
        seen = bases.young.get(base)  # get() and put() inlined for the common case
        if seen is None:
            seen = bases.old.get(base)
        if seen is None:
            last_at = bare_at = None
        elif seen.__class__ is tuple:
            last_at, bare_at = seen
        else:
            last_at = bare_at = seen
        if key is base:  # no retry count (identity() returns base twice then)
            if last_at is not None and last_at > before:
                return True
            young = bases.young
            young[base] = now  # a bare float, not a pair: nothing for the collector
            if len(young) >= bases.half:
                bases.rotate()
            return False
        if bare_at is not None and bare_at > before:
            return True
        full_at = self._full.get(key)
        if full_at is not None and full_at > before:
            return True
        self._full.put(key, now)
        bases.put(base, (now, bare_at if last_at is not None and last_at > before else None))
        return False

    def clear(self) -> None:
        for table in (self._bases, self._full):
            table.young, table.old = {}, {}

    def _age(self, now: float) -> None:
        """Drop a generation per window passed: one for one window, both for two."""
        passed = 2 if now - self._rotated_at >= 2 * self.window else 1
        for _ in range(passed):
            self._bases.rotate()
            self._full.rotate()
        self._rotated_at = now
