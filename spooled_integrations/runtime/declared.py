"""Subscriptions declared on a task or an actor through ``spooled_*`` options.

Celery (``@app.task(spooled_events=[...])``), Dramatiq
(``@dramatiq.actor(spooled_events=[...])``) and any framework with a registered
target kind share the option names and their meaning; problems are reported with the option the user wrote (``spooled_where.x``),
not the subscription field behind it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from spooled_integrations._suggest import did_you_mean
from spooled_integrations.errors import SubscriptionError
from spooled_integrations.runtime.subscriptions import (
    Subscription,
    parse_subscriptions,
    position,
)

__all__ = ["DECLARATION_OPTIONS", "as_option", "declared_subscription"]

DECLARATION_OPTIONS: dict[str, str] = {
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
"""Option -> subscription field."""

_OPTION_OF_FIELD = {field: option for option, field in DECLARATION_OPTIONS.items()}
_LEADING_FIELD = re.compile(r"^([a-z_]+)")


def as_option(problem: str) -> str:
    """``where.status: ...`` -> ``spooled_where.status: ...`` (the name the user wrote)."""
    return _LEADING_FIELD.sub(lambda m: _OPTION_OF_FIELD.get(m.group(1), m.group(1)), problem, 1)


def declared_subscription(
    options: Mapping[str, Any], *, kind: str, target: str, partial: bool = False
) -> tuple[Subscription | None, list[str]]:
    """The subscription ``options`` declare for ``target`` of a registered ``kind``
    (``"task"``, ``"actor"``...), and its problems.

    ``(None, [])`` when no ``spooled_*`` option is set. Problems read
    ``task 'billing.on_done': spooled_events[0]: unknown event 'job.done' ...``. With
    ``partial``, a rule with problems is still returned as far as it could be read, so
    its target and ``spooled_options`` are checked in the same boot (never dispatch it).
    """
    owner = f"{kind} {target!r}"
    problems: list[str] = []
    for option in options:
        if option.startswith("spooled_") and option not in DECLARATION_OPTIONS:
            hint = did_you_mean(option, DECLARATION_OPTIONS.keys())
            problems.append(f"{owner}: {option}: unknown {kind} option{hint}")
    data = {
        DECLARATION_OPTIONS[option]: value
        for option, value in options.items()
        if option in DECLARATION_OPTIONS and value is not None
    }
    if not data:
        return None, problems
    if "events" not in data:
        problems.append(
            f"{owner}: spooled_events: missing; the other spooled_* options only narrow it"
        )
        return None, problems
    data["target_kind"], data["target_name"] = kind, target
    data.setdefault("name", f"{kind}:{target}")
    try:
        return Subscription(**data), problems
    except SubscriptionError:
        pass
    # The loader's view lists the type and the meaning problems together (the model
    # stops at the first kind) and keeps what could be read.
    readable, found = parse_subscriptions([data])
    name = data["name"] if isinstance(data["name"], str) else None
    prefix = f"{position(0, name)}."
    problems += [f"{owner}: {as_option(p.removeprefix(prefix))}" for p in found]
    return (readable[0][1] if partial and readable else None), problems
