"""How the runtime reaches targets: a small interface each framework module implements.

The runtime stays framework-neutral: it only knows that a :class:`Publisher` can check
subscriptions at boot and hand one payload to one subscription's target. A framework
module subclasses :class:`TargetPublisher`, which serves one registered target kind
(:mod:`~spooled_integrations.runtime.targets`): the Celery module with
``app.send_task``, the Dramatiq module with ``broker.enqueue``. Every publisher's
failures are retried the same way, by :func:`publish_with_retry` under a
:class:`RetryPolicy`. A publish returns the id of the message it sent (a Celery task
id, a Dramatiq message id) so operators can find the task of an event:
:class:`LastPublished` keeps the last one per rule for status.
:class:`RecordingPublisher` records instead, for this package's tests and for users'
tests of their subscription files.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from spooled_integrations._redact import redact
from spooled_integrations.client.backoff import BackoffPolicy
from spooled_integrations.errors import PublishError
from spooled_integrations.protocol import Event
from spooled_integrations.protocol.timestamps import format_optional
from spooled_integrations.runtime.subscriptions import Subscription, position
from spooled_integrations.runtime.targets import target_kind

__all__ = [
    "LastPublished",
    "PublishOutcome",
    "PublishedCall",
    "Publisher",
    "RecordingPublisher",
    "RetryPolicy",
    "TargetPublisher",
    "publish_with_retry",
]


@runtime_checkable
class Publisher(Protocol):
    """Hands routed events to a framework's tasks or actors.

    ``validate`` runs once at boot and returns every problem (unknown task or actor,
    a target kind this framework cannot serve, an undeclared queue in ``options``...)
    as text that starts with the rule's position
    (:func:`~spooled_integrations.runtime.subscriptions.position`). ``publish`` runs on the
    dispatch thread; it raises on failure (any exception) and the runtime retries
    with backoff inside its budget; it returns the id of the message it sent, or
    ``None`` when it has none. It must not block for long: a slow broker delays every
    later event.
    """

    name: str

    def validate(self, subscriptions: Sequence[Subscription]) -> list[str]: ...

    def publish(self, subscription: Subscription, payload: Any, event: Event) -> str | None: ...


class TargetPublisher(ABC):
    """The base of framework publishers: one target kind, checked and sent.

    A subclass sets :attr:`name` (``"celery"``) and :attr:`kind` (a registered target
    kind, ``"task"``) and supplies :meth:`check` (problems of one rule of its kind:
    unknown target, bad options) and :meth:`send`. The base reports rules naming
    another framework's kind, prefixes problems with the rule's position, and refuses
    to publish what is not its kind; retries are :func:`publish_with_retry`'s.
    """

    name: str
    kind: str

    def check(self, subscription: Subscription, name: str) -> list[str]:
        """Problems of a rule that targets ``name`` of this kind, ``"<field>: ..."``."""
        return []

    @abstractmethod
    def send(self, subscription: Subscription, name: str, payload: Any, event: Event) -> str | None:
        """Hand ``payload`` to target ``name`` and return the message id (``None``: no id);
        raise on failure (it is retried)."""

    def problems(self, subscription: Subscription) -> list[str]:
        """Problems of one rule, each ``"<field>: <message>"`` (none for signal-only)."""
        kind, name = subscription.target_kind, subscription.target_name
        if kind is None or name is None:
            return []
        if kind != self.kind:
            return [self._foreign(kind, name)]
        return self.check(subscription, name)

    def validate(self, subscriptions: Sequence[Subscription]) -> list[str]:
        return [
            f"{position(index, sub.name)}.{problem}"
            for index, sub in enumerate(subscriptions)
            for problem in self.problems(sub)
        ]

    def publish(self, subscription: Subscription, payload: Any, event: Event) -> str | None:
        name = subscription.target_name
        if subscription.target_kind != self.kind or name is None:
            raise PublishError(
                f"the {self.name} publisher sends to {self.kind} targets, not to "
                f"{subscription.target or 'signal receivers'}"
            )
        return self.send(subscription, name, payload, event)

    def _foreign(self, kind: str, name: str) -> str:
        mine, theirs = target_kind(self.kind), target_kind(kind)
        framework = mine.framework if mine is not None else self.name
        owner = f"a {theirs.framework} target" if theirs is not None else "an unknown target kind"
        return (
            f"{kind}: {name!r} is {owner}; a {framework} worker publishes to "
            f"{self.kind} targets (use {self.kind!r})"
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Publish retries: ``attempts`` in total, all within ``budget`` seconds.

    The delay before retry *n* is the package's :class:`BackoffPolicy`:
    ``initial_delay * 2**(n-1)``, capped at ``max_delay``, minus up to ``jitter`` (a
    fraction) so a fleet does not retry in lockstep.
    """

    attempts: int = 5
    budget: float = 30.0
    initial_delay: float = 0.2
    max_delay: float = 5.0
    jitter: float = 0.2
    backoff: BackoffPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.budget < 0 or self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("budget and delays must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        policy = BackoffPolicy(self.initial_delay, self.max_delay, self.jitter)
        object.__setattr__(self, "backoff", policy)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return self.backoff.delay(attempt)


@dataclass(frozen=True)
class PublishOutcome:
    """What :func:`publish_with_retry` did: ``error`` is ``None`` once published."""

    attempts: int
    spent: float
    error: str | None = None
    abandoned: bool = False
    """The ``wait`` between attempts returned true (the dispatcher is giving up)."""
    message_id: str | None = None
    """The id of the message sent (a Celery task id, a Dramatiq message id), if any."""

    @property
    def published(self) -> bool:
        return self.error is None


def publish_with_retry(
    publisher: Publisher,
    subscription: Subscription,
    payload: Any,
    event: Event,
    policy: RetryPolicy,
    *,
    wait: Callable[[float], bool],
    on_retry: Callable[[int, float, str], None] | None = None,
) -> PublishOutcome:
    """Publish, retrying failures with ``policy``'s backoff inside its attempts and budget.

    ``wait(seconds)`` sleeps between attempts and returns true to give up (a stop);
    ``on_retry(attempt, delay, error)`` runs before each wait. Errors are redacted text.
    """
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            sent = publisher.publish(subscription, payload, event)
        except Exception as exc:
            error = redact(f"{type(exc).__name__}: {exc}")
            delay = policy.delay(attempt)
            spent = time.monotonic() - started
            if attempt >= policy.attempts or spent + delay > policy.budget:
                return PublishOutcome(attempt, spent, error)
            if on_retry is not None:
                on_retry(attempt, delay, error)
            if wait(delay):
                return PublishOutcome(attempt, time.monotonic() - started, error, abandoned=True)
        else:
            message_id = sent if isinstance(sent, str) else None
            return PublishOutcome(attempt, time.monotonic() - started, message_id=message_id)


class LastPublished:
    """The last message published for each rule: where an operator finds the task (or
    actor message) that an event became. Keyed by rule name (its target when unnamed).
    Written on the dispatch thread, read by ``status()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_rule: dict[str, dict[str, Any]] = {}

    def record(self, subscription: Subscription, event: Event, message_id: str | None) -> None:
        entry = {
            "target": subscription.target,
            "message_id": message_id,
            "event": event.type,
            "job_id": event.job_id,
            "at": time.time(),
        }
        with self._lock:
            self._by_rule[subscription.name or subscription.target or "signals"] = entry

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Rule -> ``{target, message_id, event, job_id, at}`` (``at``: UTC, RFC 3339)."""
        with self._lock:
            entries = {rule: dict(entry) for rule, entry in self._by_rule.items()}
        for entry in entries.values():
            entry["at"] = format_optional(entry["at"])
        return entries


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

    def publish(self, subscription: Subscription, payload: Any, event: Event) -> str:
        """Record the call; its message id is ``recorded-<n>`` (n from 1)."""
        with self._cond:
            self.attempts += 1
            if self._fail_times > 0:
                self._fail_times -= 1
                self.failures += 1
                raise self._error()
            self.calls.append(PublishedCall(subscription, payload, event))
            self._cond.notify_all()
            return f"recorded-{len(self.calls)}"

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
