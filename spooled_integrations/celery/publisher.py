"""The runtime's Celery publisher: ``app.send_task(name, args=[payload], **options)``.

``send_task`` (not ``task.apply_async``) so the user's ``task_routes`` apply and a
target may live on other workers. The payload is plain JSON (the event as a dict, or
its data), so any serializer, any language and any later version of this package can
read it. A subscription's ``max_age`` becomes the message's ``expires``: a task that
waited in the broker longer than the event is worth is discarded by Celery itself.

Results are not stored: every message goes out with ``ignore_result=True`` unless the
rule's ``options`` say ``ignore_result: false``. Nobody holds the id of a routed task
to read its result, so stored results would only pile up in the result backend (one
``celery-task-meta-*`` key per event, kept for ``result_expires``). The message option
overrides the task's own ``ignore_result`` on the worker, as ``apply_async``'s does;
the task's setting cannot be honoured instead, because Celery copies
``task_ignore_result`` into every task that does not set it, so an explicit
``ignore_result=False`` looks like the default. The task id is returned to the runtime
(the ``event_published`` signal, ``last_published`` in status).

With OpenTelemetry (the ``otel`` extra), the task is sent inside the event's span and
its W3C ``traceparent`` goes into the message headers (``self.request.get("traceparent")``
on the worker), so the task's span joins the event's trace even without
``opentelemetry-instrumentation-celery``; with it, its producer span replaces the header.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery

from spooled_integrations._suggest import closest, did_you_mean
from spooled_integrations.celery.forksafety import fork_gate
from spooled_integrations.protocol import Event
from spooled_integrations.runtime.publisher import TargetPublisher
from spooled_integrations.runtime.subscriptions import Subscription
from spooled_integrations.runtime.targets import register_target_kind
from spooled_integrations.runtime.tracing import inject

__all__ = ["SEND_TASK_OPTIONS", "CeleryPublisher"]

logger = logging.getLogger(__name__)

TASK = register_target_kind(
    "task",
    description="Celery task name, sent with app.send_task, so task_routes apply",
    framework="Celery",
)

SEND_TASK_OPTIONS = frozenset(
    {
        "queue",
        "exchange",
        "routing_key",
        "priority",
        "countdown",
        "expires",
        "headers",
        "serializer",
        "compression",
        "time_limit",
        "soft_time_limit",
        "ignore_result",
        "retry",
        "retry_policy",
        "shadow",
    }
)
"""Subscription ``options`` passed through to ``send_task``; anything else is a problem."""

_HINTS = {
    "delay": "Celery delays with 'countdown' (seconds), not 'delay'",
    "eta": "an absolute 'eta' cannot be configured; use 'countdown' (seconds)",
    "max_age": "set max_age on the subscription itself (it becomes 'expires')",
    "args": "the payload is the task's only argument",
    "kwargs": "the payload is the task's only argument",
}

_STRING_OPTIONS = ("queue", "exchange", "routing_key", "serializer", "compression", "shadow")
_SECONDS_OPTIONS = ("countdown", "expires", "time_limit", "soft_time_limit")


def _option_problems(options: dict[str, Any]) -> list[str]:
    problems = []
    for key, value in options.items():
        if key not in SEND_TASK_OPTIONS:
            hint = _HINTS.get(key)
            if hint is None:
                close = closest(key, SEND_TASK_OPTIONS)
                hint = f"did you mean {close!r}?" if close else "not a send_task option"
            problems.append(f"options.{key}: unknown Celery option ({hint})")
        elif key in _STRING_OPTIONS and not (isinstance(value, str) and value):
            problems.append(f"options.{key}: must be a non-empty string")
        elif key in _SECONDS_OPTIONS and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
        ):
            problems.append(f"options.{key}: must be a number of seconds >= 0")
        elif key == "priority" and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255
        ):
            problems.append("options.priority: must be an integer between 0 and 255")
        elif key in ("headers", "retry_policy") and not isinstance(value, dict):
            problems.append(f"options.{key}: must be a mapping")
        elif key in ("ignore_result", "retry") and not isinstance(value, bool):
            problems.append(f"options.{key}: must be true or false")
    return problems


class CeleryPublisher(TargetPublisher):
    """Publishes routed events to Celery tasks by name (see the module docstring).

    ``external_tasks`` are task names accepted without being registered in ``app``
    (tasks that only other workers run); every other unknown name is a boot error,
    because a typo would otherwise send messages no worker ever consumes.
    """

    name = "celery"
    kind = TASK.name

    def __init__(self, app: Celery, *, external_tasks: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.external_tasks = external_tasks

    def check(self, subscription: Subscription, name: str) -> list[str]:
        problems: list[str] = []
        if name not in self.external_tasks and name not in self.app.tasks:
            hint = did_you_mean(name, self.app.tasks.keys())
            problems.append(
                f"task: no task named {name!r} is registered in this app{hint}; "
                "if only other workers run it, list it in spooled_external_tasks"
            )
        problems.extend(_option_problems(subscription.options))
        queue = subscription.options.get("queue")
        if (
            isinstance(queue, str)
            and not self.app.conf.task_create_missing_queues
            and queue not in self.app.amqp.queues
        ):
            problems.append(
                f"options.queue: {queue!r} is not declared in task_queues and "
                "task_create_missing_queues is off"
            )
        return problems

    def send_options(self, subscription: Subscription, event: Event) -> dict[str, Any]:
        """The ``send_task`` keyword arguments for one routed event."""
        options = {"ignore_result": True, **subscription.options}
        if subscription.max_age is not None and "expires" not in options:
            options["expires"] = _remaining(subscription.max_age, event)
        return options

    def send(self, subscription: Subscription, name: str, payload: Any, event: Event) -> str:
        """Send the task; returns its id (the task's ``self.request.id``)."""
        options = self.send_options(subscription, event)
        trace_context = inject()
        if trace_context is not None:
            options["headers"] = {**options.get("headers", {}), **trace_context}
        with fork_gate.publishing():  # a prefork child never inherits a half-done publish
            result = self.app.send_task(name, args=[payload], **options)
        task_id: str = result.id
        logger.debug(
            "sent task %s[%s] for %s of job %s (subscription %r)",
            name,
            task_id,
            event.type,
            event.job_id,
            subscription.name,
        )
        return task_id


def _remaining(max_age: float, event: Event) -> float:
    """Seconds the event is still worth: ``max_age`` minus its age (server timestamp)."""
    stamp = event.timestamp
    if stamp is None:
        return max_age
    age = time.time() - stamp.timestamp()
    # Never 0: a message that expires on arrival only adds noise to the worker log.
    return max(0.001, max_age - max(0.0, age))
