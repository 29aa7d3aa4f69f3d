# mypy: allow-untyped-calls
# (Dramatiq 1.x ships py.typed but leaves most broker methods unannotated.)
"""Subscriptions declared on actors: ``@dramatiq.actor(spooled_events=[...], ...)``.

Each ``spooled_<field>`` actor option is a :class:`~spooled_integrations.runtime.Subscription`
field (``spooled_queue`` filters on the *Spooled* queue of the event; the Dramatiq
queue is the actor's own, or ``spooled_options={"queue_name": ...}``). The middleware
declares these names in ``actor_options``, which is why it must be added to the broker
before the actors are declared.
"""

from __future__ import annotations

import re
from typing import Any

import dramatiq

from spooled_integrations.errors import SubscriptionError
from spooled_integrations.runtime import Subscription

__all__ = ["ACTOR_OPTIONS", "actor_subscriptions"]

_FIELD_OF_OPTION = {
    "spooled_events": "events",
    "spooled_queue": "queue",
    "spooled_job_id": "job_id",
    "spooled_worker_id": "worker_id",
    "spooled_where": "where",
    "spooled_delivery": "delivery",
    "spooled_payload": "payload",
    "spooled_options": "options",
    "spooled_max_age": "max_age",
}
_OPTION_OF_FIELD = {field: option for option, field in _FIELD_OF_OPTION.items()}
_LEADING_FIELD = re.compile(r"^([a-z_]+)")

ACTOR_OPTIONS = frozenset(_FIELD_OF_OPTION)
"""The actor options the middleware declares."""


def actor_subscriptions(broker: dramatiq.Broker) -> tuple[list[Subscription], list[str]]:
    """The subscriptions the broker's actors declare, and every problem with them.

    Rules are named ``actor:<actor name>`` so logs and problems point at the actor.
    """
    subscriptions: list[Subscription] = []
    problems: list[str] = []
    for actor_name in sorted(broker.get_declared_actors()):
        actor = broker.get_actor(actor_name)
        given = {k: v for k, v in actor.options.items() if k in _FIELD_OF_OPTION}
        if not given:
            continue
        where = f"actor {actor_name!r}"
        if "spooled_events" not in given:
            listed = ", ".join(sorted(given))
            problems.append(f"{where}: {listed} given without spooled_events (which events?)")
            continue
        data: dict[str, Any] = {_FIELD_OF_OPTION[k]: v for k, v in given.items()}
        try:
            subscriptions.append(Subscription(name=f"actor:{actor_name}", actor=actor_name, **data))
        except SubscriptionError as exc:
            problems.extend(f"{where}: {_as_option(p)}" for p in exc.problems)
    return subscriptions, problems


def _as_option(problem: str) -> str:
    """``events[0]: unknown...`` -> ``spooled_events[0]: unknown...`` (what the user wrote)."""
    return _LEADING_FIELD.sub(lambda m: _OPTION_OF_FIELD.get(m.group(1), m.group(1)), problem, 1)
