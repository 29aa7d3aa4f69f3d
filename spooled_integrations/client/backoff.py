"""Capped exponential backoff with jitter, reset only after a healthy connection."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """``delay(n) = min(base * 2**(n-1), cap)``, minus up to 25 % jitter (never above the cap).

    ``failures`` counts attempts since the last :meth:`reset`; the client resets only
    after a connection proved healthy (an event arrived, or it stayed up long enough).
    """

    def __init__(self, base: float, cap: float, *, jitter: float = 0.25) -> None:
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.failures = 0

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before the next attempt."""
        self.failures += 1
        delay: float = min(self.base * float(2 ** min(self.failures - 1, 30)), self.cap)
        return delay * (1.0 - self.jitter * random.random())

    def reset(self) -> None:
        self.failures = 0
