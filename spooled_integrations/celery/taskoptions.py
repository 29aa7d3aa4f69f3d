"""Subscriptions declared on tasks: ``@app.task(spooled_events=["job.completed"], ...)``.

Celery turns unknown keyword arguments of ``@app.task`` (and ``@shared_task``) into
attributes of the generated task class, so nothing needs registering at decoration
time: the bootstep collects them from ``app.tasks`` at worker boot, after every task
module is imported.

Each option maps to a :class:`~spooled_integrations.runtime.Subscription` field:
``spooled_events`` (required), ``spooled_queue``, ``spooled_job_id``,
``spooled_worker_id``, ``spooled_where``, ``spooled_delivery``, ``spooled_payload``,
``spooled_options``, ``spooled_max_age`` and ``spooled_name`` (default
``task:<task name>``). The target is the task itself.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from spooled_integrations.celery.publisher import TASK
from spooled_integrations.runtime import Subscription
from spooled_integrations.runtime.declared import DECLARATION_OPTIONS, declared_subscription

__all__ = ["TASK_OPTIONS", "task_subscriptions"]

TASK_OPTIONS = DECLARATION_OPTIONS
"""Task option -> subscription field (shared with the Dramatiq actor options)."""


def _spooled_attributes(task: Any) -> dict[str, Any]:
    names = {name for name in dir(type(task)) if name.startswith("spooled_")}
    names.update(name for name in vars(task) if name.startswith("spooled_"))
    return {name: getattr(task, name) for name in sorted(names)}


def task_subscriptions(
    app: Celery, *, partial: bool = False
) -> tuple[list[Subscription], list[str]]:
    """The subscriptions declared by task options, and every problem found in them.

    Problems read ``task 'billing.on_done': spooled_events: unknown event 'job.done'``.
    With ``partial``, the faulty rules are included as far as they could be read, so
    their targets and options are checked too; build nothing from them then.
    """
    subscriptions: list[Subscription] = []
    problems: list[str] = []
    for name in sorted(app.tasks):
        subscription, found = declared_subscription(
            _spooled_attributes(app.tasks[name]), kind=TASK.name, target=name, partial=partial
        )
        problems.extend(found)
        if subscription is not None:
            subscriptions.append(subscription)
    return subscriptions, problems
