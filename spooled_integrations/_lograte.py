"""One log line per interval for a message that can repeat thousands of times a second.

A broken proxy or server can send 5,000 bad frames in three seconds; a WARNING for each
buries everything else in the log. :class:`LogRate` writes the first line, counts what
it skips for ``every`` seconds, and says how many it skipped (by reason) with the next
line or when :meth:`flush` is called.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["LogRate"]


class LogRate:
    """At most one WARNING per ``every`` seconds; the rest are counted by reason."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._what = what
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._quiet_until = 0.0
        self._since = 0.0
        self._skipped: Counter[str] = Counter()
        self.pending = 0
        """Lines skipped and not yet reported (read without the lock: a hint)."""

    def warning(self, reason: str, message: str, *args: object) -> None:
        """Log ``message % args`` now, or count it under ``reason`` if a line went out
        less than ``every`` seconds ago."""
        now = self._clock()
        with self._lock:
            if now < self._quiet_until:
                self._skipped[reason] += 1
                self.pending += 1
                return
            summary = self._take_summary(now)
            self._quiet_until = now + self._every
            self._since = now
        self._logger.warning(message + summary, *args)

    def flush(self, *, force: bool = False) -> None:
        """Report what was skipped, once the interval is over (or now, with ``force``)."""
        now = self._clock()
        with self._lock:
            if not self._skipped or (now < self._quiet_until and not force):
                return
            summary = self._take_summary(now)
        self._logger.warning("%s", summary.strip(" ;"))

    def _take_summary(self, now: float) -> str:
        if not self._skipped:
            return ""
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in self._skipped.most_common())
        total = sum(self._skipped.values())
        self._skipped.clear()
        self.pending = 0
        return (
            f"; skipped {total:,} more {self._what} in the last {now - self._since:.0f} s "
            f"({reasons})"
        )
