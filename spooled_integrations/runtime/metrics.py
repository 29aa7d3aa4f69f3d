"""Every runtime counter in one thread-safe place, read as a JSON-ready snapshot.

The reader thread, the dispatch thread and the caller of ``status()`` all touch these.
Plain counters are kept per thread (each thread only ever writes its own table, so an
increment needs no lock: several per event, half the cost of a locked one) and summed
when read; the by-reason tables are rare and share one lock.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["COUNTERS", "Metrics"]

COUNTERS = (
    "received",
    "dispatched",
    "published",
    "signals_sent",
    "duplicates_suppressed",
    "coalesced",
    "receiver_failures",
    "publish_retries",
    "reconnects",
    "caught_up",
    "catch_up_requests",
)
"""Plain counters; ``dropped`` and ``protocol_errors`` are counted by reason."""

_BY_REASON = ("dropped", "protocol_errors")


class Metrics:
    """Counters of the runtime.

    - ``received``: events handed to the dispatcher, counted as their frames are
      decoded (on the dispatch thread, or at once when the queue refuses them; pings
      excluded when skipped);
    - ``dispatched``: events that reached the signal and routing stage;
    - ``published``: successful hand-offs to a task or actor;
    - ``signals_sent``: events sent on ``spooled_signal``;
    - ``dropped[reason]``: ``overflow``, ``stale``, ``publish_failed``, ``stopped``, and
      with fleet coordination ``coordination_unavailable`` (a ``once`` event that could
      not be kept while Redis was unreachable), ``takeover_window`` (received while
      a lease leader failed: it may not have run) and ``claim_holder_lost`` (claimed
      by a node that died before it could publish it);
    - ``coalesced``: second forms of a transition joined into the first (one event
      dispatched for both; :mod:`~spooled_integrations.runtime.coalesce`);
    - ``duplicates_suppressed``, ``receiver_failures``, ``publish_retries``,
      ``reconnects``, ``protocol_errors[reason]``;
    - ``caught_up``: events recovered from the job list after a gap and dispatched
      (their live twin never came); ``catch_up_requests``: job-list requests made.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._tables: list[dict[str, int]] = []  # one per thread that counted; never shrinks
        self._by_reason: dict[str, dict[str, int]] = {name: {} for name in _BY_REASON}

    def incr(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to a plain counter (unknown names raise ``KeyError``)."""
        self.thread_counts()[name] += amount

    def thread_counts(self) -> dict[str, int]:
        """This thread's table of plain counters: ``table[name] += n`` counts without a
        call, for one thread's per-event loop. Use it on the thread that asked for it."""
        try:
            counts: dict[str, int] = self._local.counts
        except AttributeError:
            counts = self._own_table()
        return counts

    def _own_table(self) -> dict[str, int]:
        # Every key exists from the start: summing never meets a table changing size.
        counts = self._local.counts = dict.fromkeys(COUNTERS, 0)
        with self._lock:
            self._tables.append(counts)
        return counts

    def _total(self, name: str) -> int:
        return sum(table[name] for table in self._tables)

    def drop(self, reason: str, amount: int = 1) -> None:
        """Count ``amount`` events dropped for ``reason``."""
        self._incr_reason("dropped", reason, amount)

    def protocol_error(self, reason: str, amount: int = 1) -> None:
        """Count a skipped frame by its protocol-error reason."""
        self._incr_reason("protocol_errors", reason, amount)

    def _incr_reason(self, table: str, reason: str, amount: int) -> None:
        with self._lock:
            counts = self._by_reason[table]
            counts[reason] = counts.get(reason, 0) + amount

    def get(self, name: str) -> int:
        """One plain counter, or the total of a by-reason one."""
        with self._lock:
            if name in self._by_reason:
                return sum(self._by_reason[name].values())
            if name not in COUNTERS:
                raise KeyError(name)
            return self._total(name)

    def dropped(self, reason: str) -> int:
        with self._lock:
            return self._by_reason["dropped"].get(reason, 0)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy: plain counters as ints, by-reason ones as dicts."""
        with self._lock:
            result: dict[str, Any] = {name: self._total(name) for name in COUNTERS}
            for table, counts in self._by_reason.items():
                result[table] = dict(counts)
            return result
