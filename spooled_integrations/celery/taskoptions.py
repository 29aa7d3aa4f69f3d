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

import difflib
from typing import Any

from celery import Celery

from spooled_integrations.errors import SubscriptionError
from spooled_integrations.runtime import Subscription

__all__ = ["TASK_OPTIONS", "as_task_option", "task_subscriptions"]

TASK_OPTIONS: dict[str, str] = {
    "spooled_events": "events",
    "spooled_queue": "queue",
    "spooled_job_id": "job_id",
    "spooled_worker_id": "worker_id",
    "spooled_where": "where",
    "spooled_delivery": "delivery",
    "spooled_payload": "payload",
    "spooled_options": "options",
    "spooled_max_age": "max_age",
    "spooled_name": "name",
}
"""Task option -> subscription field."""

_FIELD_TO_OPTION = {field: option for option, field in TASK_OPTIONS.items()}


def _spooled_attributes(task: Any) -> dict[str, Any]:
    names = {name for name in dir(type(task)) if name.startswith("spooled_")}
    names.update(name for name in vars(task) if name.startswith("spooled_"))
    return {name: getattr(task, name) for name in sorted(names)}


def as_task_option(problem: str) -> str:
    """``where.status: ...`` -> ``spooled_where.status: ...`` (the name the user wrote)."""
    head, sep, rest = problem.partition(":")
    field = head.split(".", 1)[0].split("[", 1)[0]
    option = _FIELD_TO_OPTION.get(field)
    if option is None or not sep:
        return problem
    return option + head[len(field) :] + sep + rest


def task_subscriptions(app: Celery) -> tuple[list[Subscription], list[str]]:
    """The subscriptions declared by task options, and every problem found in them.

    Problems read ``task 'billing.on_done': spooled_events: unknown event 'job.done'``.
    """
    subscriptions: list[Subscription] = []
    problems: list[str] = []
    for name in sorted(app.tasks):
        attributes = _spooled_attributes(app.tasks[name])
        if not attributes:
            continue
        prefix = f"task {name!r}"
        for option in attributes:
            if option not in TASK_OPTIONS:
                close = difflib.get_close_matches(option, list(TASK_OPTIONS), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{prefix}: {option}: unknown task option{hint}")
        data = {
            TASK_OPTIONS[option]: value
            for option, value in attributes.items()
            if option in TASK_OPTIONS and value is not None
        }
        if "events" not in data:
            if data:
                problems.append(
                    f"{prefix}: spooled_events: missing; the other spooled_* options only narrow it"
                )
            continue
        data["task"] = name
        data.setdefault("name", f"task:{name}")
        try:
            subscriptions.append(Subscription(**data))
        except SubscriptionError as exc:
            problems.extend(f"{prefix}: {as_task_option(p)}" for p in exc.problems)
    return subscriptions, problems
