"""Suppress a second delivery of the same job transition within a time window.

One transition can reach us twice: as a direct lifecycle event (``job.failed`` with a
retry count) and as the lifecycle event derived from a ``job.status`` change (no retry
count). :mod:`~spooled_integrations.runtime.coalesce` joins the two when they come
within its window; this filter suppresses a form that comes later than that (and
everything when joining is off). An SSE job stream also re-sends its current status
as a snapshot after every reconnect. Identity keys are ``<type>:<job_id>[:<retry_count>]`` (see
:attr:`spooled_integrations.protocol.Event.identity_key`); the *base* is the key
without the retry count.

- An event **with** a retry count is a duplicate if its full key was seen, or its base
  was seen in a form **without** a retry count.
- An event **without** a retry count is a duplicate if its base was seen in any form.

Only job lifecycle events and ``job.status`` are considered; everything else passes.

Memory is bounded by time and size without per-entry expiry work: each table is one
plain dict in the order entries were recorded (an update moves its key to the end), so
the oldest entries are always at the front. Lookups compare the time an entry was seen
with the window; once per ``window`` the expired front is dropped, and when a table
holds more than ``max_entries`` its older half is dropped. One dict, not two
generations: a new key costs one probe of a large table, not two (cache misses
show per event; see ``bench/README.md``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

from spooled_integrations.protocol import Event, EventType
from spooled_integrations.protocol.vocabulary import LIFECYCLE_TYPES

__all__ = ["DEDUPED_TYPES", "DuplicateFilter"]

DEDUPED_TYPES = LIFECYCLE_TYPES | {EventType.JOB_STATUS.value}
"""Event types subject to duplicate suppression."""
_JOB_STATUS = EventType.JOB_STATUS.value


class _Recent:
    """A dict kept in the order entries were recorded, trimmed from its oldest end."""

    __slots__ = ("entries", "limit")

    def __init__(self, max_entries: int) -> None:
        self.entries: dict[str, Any] = {}
        self.limit = max_entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> Any:
        return self.entries.get(key)

    def put(self, key: str, value: Any) -> None:
        entries = self.entries
        entries.pop(key, None)  # an update moves to the recent end
        entries[key] = value
        if len(entries) > self.limit:
            self.trim()

    def trim(self) -> None:
        """Keep the newer half."""
        entries = self.entries
        keep = max(1, self.limit // 2)
        self.entries = dict(islice(entries.items(), len(entries) - keep, None))

    def forget_before(self, cutoff: float) -> None:
        """Drop the entries last seen at or before ``cutoff`` (a prefix)."""
        expired = 0
        for value in self.entries.values():
            if (value[0] if value.__class__ is tuple else value) > cutoff:
                break
            expired += 1
        if expired:
            self.entries = dict(islice(self.entries.items(), expired, None))


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
        self._bases = _Recent(max_entries)
        self._full = _Recent(max_entries)  # full key -> seen at (retry count events)
        self._aged_at = clock()
        self._holds = 0  # while > 0, nothing expires (a stream gap is being swept)
        self._holds_lock = threading.Lock()

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
        kind = event.type
        if kind not in DEDUPED_TYPES or self.window == 0:
            return False
        data = event.data
        job_id = data.get("job_id")
        if not isinstance(job_id, str):
            return False
        if kind != _JOB_STATUS and "retry_count" not in data:
            base = key = f"{kind}:{job_id}"  # Event.identity() for the usual lifecycle event
        else:
            base, key = event.identity()
        if now is None:
            now = self._clock()
        before = now - self.window
        if now - self._aged_at >= self.window and not self._holds:
            self._bases.forget_before(before)
            self._full.forget_before(before)
            self._aged_at = now
        bases = self._bases
        entries = bases.entries
        seen = entries.get(base)  # get() and put() inlined for the common case
        if seen is None:
            last_at = bare_at = None
        elif seen.__class__ is tuple:
            last_at, bare_at = seen
        else:
            last_at = bare_at = seen
        if key is base:  # no retry count (identity() returns base twice then)
            if last_at is not None and last_at > before:
                return True
            if seen is not None:
                del entries[base]  # expired: recorded again at the recent end
            entries[base] = now  # a bare float, not a pair: nothing for the collector
            if len(entries) > bases.limit:
                bases.trim()
            return False
        if bare_at is not None and bare_at > before:
            return True
        full_at = self._full.get(key)
        if full_at is not None and full_at > before:
            return True
        self._full.put(key, now)
        bases.put(base, (now, bare_at if last_at is not None and last_at > before else None))
        return False

    def seen_ever(self, event: Event) -> bool:
        """True if ``event``'s transition is held in the table, however long ago.

        For recovered events: their live twin may have come long before the sweep that
        recovered them (a gap is swept when it ends), so the window does not apply;
        :meth:`hold` keeps what came before a gap until its sweep is dispatched.
        """
        if event.type not in DEDUPED_TYPES or not isinstance(event.data.get("job_id"), str):
            return False
        base, key = event.identity()
        return base in self._bases.entries or (key is not base and key in self._full.entries)

    def hold(self) -> None:
        """Stop expiring entries until a matching :meth:`release` (any thread)."""
        with self._holds_lock:
            self._holds += 1

    def release(self) -> None:
        with self._holds_lock:
            self._holds = max(0, self._holds - 1)

    def recent(self, since: float, limit: int) -> list[str]:
        """Bases of transitions recorded at or after ``since`` (clock time), newest
        first, at most ``limit``: what a checkpoint keeps so a restart does not repeat
        them. Call it on the thread that calls :meth:`is_duplicate`."""
        found: list[str] = []
        for base, value in reversed(self._bases.entries.items()):
            if (value[0] if value.__class__ is tuple else value) < since or len(found) >= limit:
                break
            found.append(base)
        return found

    def remember(self, bases: Iterable[str], now: float | None = None) -> None:
        """Record transitions as seen without a retry count (a restart's checkpoint)."""
        at = self._clock() if now is None else now
        for base in bases:
            self._bases.put(base, at)

    def clear(self) -> None:
        self._bases.entries.clear()
        self._full.entries.clear()
