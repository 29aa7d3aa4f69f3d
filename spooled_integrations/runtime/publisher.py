"""How the runtime reaches targets: a small interface each framework module implements.

The runtime stays framework-neutral: it only knows that a :class:`Publisher` can check
subscriptions at boot and hand one payload to one subscription's target. The Celery
module implements it with ``app.send_task``, the Dramatiq module with
``actor.send_with_options``. :class:`RecordingPublisher` records instead, for this
package's tests and for users' tests of their subscription files.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from spooled_integrations.errors import PublishError
from spooled_integrations.protocol import Event
from spooled_integrations.runtime.subscriptions import Subscription, position

__all__ = ["PublishedCall", "Publisher", "RecordingPublisher"]


@runtime_checkable
class Publisher(Protocol):
    """Hands routed events to a framework's tasks or actors.

    ``validate`` runs once at boot and returns every problem (unknown task or actor,
    a target kind this framework cannot serve, an undeclared queue in ``options``...)
    as text that starts with the rule's position
    (:func:`~spooled_integrations.runtime.subscriptions.position`). ``publish`` runs on the
    dispatch thread; it raises on failure (any exception) and the runtime retries
    with backoff inside its budget. It must not block for long: a slow broker delays
    every later event.
    """

    name: str

    def validate(self, subscriptions: Sequence[Subscription]) -> list[str]: ...

    def publish(self, subscription: Subscription, payload: Any, event: Event) -> None: ...


@dataclass(frozen=True, slots=True)
class PublishedCall:
    """One successful :meth:`RecordingPublisher.publish` call."""

    subscription: Subscription
    payload: Any
    event: Event

    @property
    def target(self) -> str | None:
        return self.subscription.target


class RecordingPublisher:
    """A :class:`Publisher` that records calls; can be told to fail.

    ``fail_times`` makes the next N publishes raise ``error`` (a :class:`PublishError`
    by default); ``known_targets`` (``task:<name>`` / ``actor:<name>`` or bare names)
    makes :meth:`validate` report every other target. Thread-safe.
    """

    def __init__(
        self,
        *,
        name: str = "recording",
        fail_times: int = 0,
        error: Callable[[], Exception] | None = None,
        known_targets: Iterable[str] | None = None,
    ) -> None:
        self.name = name
        self._fail_times = fail_times
        self._error = error or (lambda: PublishError("RecordingPublisher told to fail"))
        self._known = None if known_targets is None else frozenset(known_targets)
        self._cond = threading.Condition()
        self.calls: list[PublishedCall] = []
        self.attempts = 0
        self.failures = 0

    def fail_next(self, times: int) -> None:
        """Make the next ``times`` publishes raise."""
        with self._cond:
            self._fail_times = times

    def validate(self, subscriptions: Sequence[Subscription]) -> list[str]:
        if self._known is None:
            return []
        problems = []
        for index, sub in enumerate(subscriptions):
            target = sub.target
            if target is None:
                continue
            bare = target.split(":", 1)[1]
            if target not in self._known and bare not in self._known:
                problems.append(f"{position(index, sub.name)}: unknown target {target!r}")
        return problems

    def publish(self, subscription: Subscription, payload: Any, event: Event) -> None:
        with self._cond:
            self.attempts += 1
            if self._fail_times > 0:
                self._fail_times -= 1
                self.failures += 1
                raise self._error()
            self.calls.append(PublishedCall(subscription, payload, event))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` calls were recorded; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.calls) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def targets(self) -> list[str | None]:
        """The target of every recorded call, in order."""
        with self._cond:
            return [call.target for call in self.calls]
