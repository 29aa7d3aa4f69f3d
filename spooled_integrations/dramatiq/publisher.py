# mypy: allow-untyped-calls
# (Dramatiq 1.x ships py.typed but leaves most broker methods unannotated.)
"""Hands routed events to Dramatiq actors: one message per event and subscription.

``options`` of a subscription use Dramatiq's names and units:

* ``queue_name`` (or ``queue``): send to this queue instead of the actor's own. It
  must be declared on the broker: a worker never consumes an undeclared queue, and on
  RabbitMQ a message published to a queue that does not exist is lost.
* ``delay``: milliseconds, as in ``send_with_options``.
* ``priority``: RabbitMQ message priority (``broker_priority``); needs
  ``RabbitmqBroker(max_priority=...)``, other brokers ignore it (a warning at boot).
* any other message option a middleware on the broker reads (``max_retries``,
  ``time_limit``, ``max_age``, ``on_failure``...), passed as is.

A subscription's ``max_age`` (seconds) becomes the message's ``max_age`` (milliseconds,
read by Dramatiq's ``AgeLimit``): what is left of it once the event's age is taken off,
so a worker skips a message whose event became stale in the queue.

With OpenTelemetry (the ``otel`` extra), the message carries the event's span context
in ``options["trace_ctx"]`` (W3C ``traceparent``), the carrier Dramatiq's OpenTelemetry
middlewares extract the parent of the actor's span from.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.common import q_name

from spooled_integrations._suggest import did_you_mean
from spooled_integrations.protocol import Event
from spooled_integrations.runtime.publisher import TargetPublisher
from spooled_integrations.runtime.subscriptions import Subscription
from spooled_integrations.runtime.targets import register_target_kind
from spooled_integrations.runtime.tracing import inject

__all__ = ["DramatiqPublisher"]

logger = logging.getLogger(__name__)

ACTOR = register_target_kind("actor", description="Dramatiq actor name", framework="Dramatiq")

_QUEUE_KEYS = ("queue_name", "queue")
_OWN_KEYS = frozenset({*_QUEUE_KEYS, "delay", "priority"})
# Read from message.options by a broker itself rather than by a middleware.
_BROKER_OPTIONS = frozenset({"broker_priority"})
_MAX_PRIORITY = 255
_ACTOR_ONLY = frozenset({"retry_when", "throws"})
"""Actor options a message cannot carry (callables and exception classes)."""


class DramatiqPublisher(TargetPublisher):
    """A :class:`~spooled_integrations.runtime.publisher.TargetPublisher` that enqueues
    on ``broker``.

    Thread-safe as far as the broker is (all of Dramatiq's are); the runtime calls
    :meth:`publish` from its dispatch thread.
    """

    name = "dramatiq"
    kind = ACTOR.name

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker
        self._warned: set[str] = set()  # validate() runs more than once per boot

    def check(self, subscription: Subscription, name: str) -> list[str]:
        """Every problem that would lose or misroute a message, one line each."""
        actors = self.broker.get_declared_actors()
        problems: list[str] = []
        if name not in actors:
            problems.append(
                f"actor: no actor {name!r} is declared on this broker"
                f"{_suggest(name, actors)}; declare it, and make sure its module is "
                "imported before the worker boots"
            )
        problems.extend(f"options{p}" for p in self._option_problems(subscription, actors))
        if subscription.max_age is not None and "max_age" not in self.broker.actor_options:
            where = f"subscription {subscription.name!r}" if subscription.name else "a rule"
            self._warn(
                f"{where} ({subscription.target}) has max_age but the broker has no AgeLimit "
                "middleware: stale events are dropped before sending, but a message that "
                "waits in the queue is not"
            )
        return problems

    def send(self, subscription: Subscription, name: str, payload: Any, event: Event) -> str:
        """Enqueue ``payload`` as the one argument of actor ``name``; returns the message id."""
        options = dict(subscription.options)
        queue_name = None
        for key in _QUEUE_KEYS:
            queue_name = options.pop(key, None) or queue_name
        if queue_name is None:
            queue_name = self.broker.get_actor(name).queue_name
        delay = options.pop("delay", None)
        priority = options.pop("priority", None)
        if priority is not None:
            options["broker_priority"] = priority
        if subscription.max_age is not None and "max_age" not in options:
            options["max_age"] = _remaining_ms(subscription.max_age, event)
        trace_context = inject()
        if trace_context is not None:
            options["trace_ctx"] = trace_context
        message: Message[Any] = Message(
            queue_name=queue_name,
            actor_name=name,
            args=(payload,),
            kwargs={},
            options=options,
        )
        self.broker.enqueue(message, delay=None if delay is None else int(delay))
        logger.debug(
            "enqueued %s for actor %s on queue %s (message %s)",
            event.type,
            name,
            queue_name,
            message.message_id,
        )
        return message.message_id

    # -- validation helpers ----------------------------------------------------------

    def _option_problems(self, sub: Subscription, actors: set[str]) -> list[str]:
        options = sub.options
        problems: list[str] = []
        queue_keys = [key for key in _QUEUE_KEYS if key in options]
        if len(queue_keys) > 1:
            problems.append(": give queue_name or queue, not both")
        for key in queue_keys:
            problems.extend(self._queue_problems(key, options[key]))
        if "delay" in options:
            delay = options["delay"]
            if not _is_number(delay) or delay < 0:
                problems.append(f".delay: must be a number of milliseconds >= 0, got {delay!r}")
        if "priority" in options:
            problems.extend(self._priority_problems(options))
        known = set(self.broker.actor_options) | _BROKER_OPTIONS
        for key in sorted(set(options) - _OWN_KEYS - known):
            usable = {
                name
                for name in (known | _OWN_KEYS) - _ACTOR_ONLY
                if not name.startswith("spooled_")  # ours declare rules, not messages
            }
            hint = did_you_mean(key, usable) or f" (message options: {', '.join(sorted(usable))})"
            problems.append(f".{key}: no middleware on this broker reads this message option{hint}")
        for key in ("on_success", "on_failure"):
            name = options.get(key)
            if isinstance(name, str) and name not in actors:
                problems.append(f".{key}: no actor {name!r} is declared on this broker")
        return problems

    def _queue_problems(self, key: str, queue: Any) -> list[str]:
        if not isinstance(queue, str) or not queue:
            return [f".{key}: must be a queue name, got {queue!r}"]
        if q_name(queue) != queue:
            return [f".{key}: {queue!r} is a delay or dead-letter queue; name {q_name(queue)!r}"]
        declared = {name for name in self.broker.get_declared_queues() if q_name(name) == name}
        if queue in declared:
            return []
        listed = ", ".join(sorted(declared)) or "none"
        return [
            f".{key}: queue {queue!r} is not declared on this broker (declared: {listed}); "
            "no worker consumes an undeclared queue and RabbitMQ can drop such messages. "
            f"Declare it (broker.declare_queue({queue!r}) or an actor on it) or use another"
        ]

    def _priority_problems(self, options: dict[str, Any]) -> list[str]:
        priority = options["priority"]
        if "broker_priority" in options:
            return [": give priority or broker_priority, not both"]
        if not isinstance(priority, int) or isinstance(priority, bool):
            return [f".priority: must be an integer, got {priority!r}"]
        max_priority = getattr(self.broker, "max_priority", None)
        limit = max_priority or _MAX_PRIORITY
        if not 0 <= priority <= limit:
            return [f".priority: must be between 0 and {limit}, got {priority}"]
        if not max_priority:
            self._warn(
                f"options.priority={priority} has no effect on {type(self.broker).__name__}: "
                "only RabbitmqBroker(max_priority=N) honours message priorities"
            )
        return []

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning("%s", message)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _remaining_ms(max_age: float, event: Event) -> int:
    """``max_age`` minus the event's age, in ms (at least 1: AgeLimit treats 0 as unset)."""
    age = 0.0
    if event.timestamp is not None:
        age = max(0.0, time.time() - event.timestamp.timestamp())
    return max(1, int((max_age - age) * 1000))


def _suggest(name: str, known: set[str]) -> str:
    return did_you_mean(name, known)
