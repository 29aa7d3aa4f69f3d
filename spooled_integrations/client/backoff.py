"""The package's one backoff policy: capped exponential delays with jitter.

:class:`BackoffPolicy` says how long to wait before attempt *n*; every retry in the
package uses it: the streams' reconnects (through :class:`Backoff`, which counts
failures and is reset only after a healthy connection), the runtime's publish retries
(:class:`~spooled_integrations.runtime.dispatcher.RetryPolicy`) and the catch-up's
request retries and failed sweeps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "BackoffPolicy"]

_MAX_DOUBLINGS = 30  # 2**30 times any sensible base is past any cap; keeps floats finite


@dataclass(frozen=True)
class BackoffPolicy:
    """``delay(n) = min(base * 2**(n-1), cap)``, minus up to ``jitter`` (a fraction) of it.

    Jitter only shortens a delay (never above the cap), so a fleet that failed together
    does not retry in lockstep. Immutable; share one instance across threads.
    """

    base: float
    cap: float
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("backoff delays must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        doublings = min(max(attempt, 1) - 1, _MAX_DOUBLINGS)
        delay: float = min(self.base * float(2**doublings), self.cap)
        if self.jitter:
            delay *= 1.0 - self.jitter * random.random()
        return delay


class Backoff:
    """A failure counter over a :class:`BackoffPolicy` (reconnects, catch-up sweeps).

    ``failures`` counts attempts since the last :meth:`reset`; the client resets only
    after a connection proved healthy (an event arrived, or it stayed up long enough).
    """

    def __init__(self, base: float, cap: float, *, jitter: float = 0.25) -> None:
        self.policy = BackoffPolicy(base, cap, jitter)
        self.failures = 0

    @property
    def base(self) -> float:
        return self.policy.base

    @property
    def cap(self) -> float:
        return self.policy.cap

    @property
    def jitter(self) -> float:
        return self.policy.jitter

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before the next attempt."""
        self.failures += 1
        return self.policy.delay(self.failures)

    def reset(self) -> None:
        self.failures = 0
