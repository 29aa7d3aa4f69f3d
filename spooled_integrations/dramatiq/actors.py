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

import dramatiq

from spooled_integrations.dramatiq.publisher import ACTOR
from spooled_integrations.runtime import Subscription
from spooled_integrations.runtime.declared import DECLARATION_OPTIONS, declared_subscription

__all__ = ["ACTOR_OPTIONS", "actor_subscriptions"]

ACTOR_OPTIONS = frozenset(DECLARATION_OPTIONS)
"""The actor options the middleware declares (shared with the Celery task options)."""


def actor_subscriptions(
    broker: dramatiq.Broker, *, partial: bool = False
) -> tuple[list[Subscription], list[str]]:
    """The subscriptions the broker's actors declare, and every problem with them.

    Rules are named ``actor:<actor name>`` so logs and problems point at the actor.
    With ``partial``, the faulty rules are included as far as they could be read, so
    their targets and options are checked too; build nothing from them then.
    """
    subscriptions: list[Subscription] = []
    problems: list[str] = []
    for actor_name in sorted(broker.get_declared_actors()):
        actor = broker.get_actor(actor_name)
        subscription, found = declared_subscription(
            actor.options, kind=ACTOR.name, target=actor_name, partial=partial
        )
        problems.extend(found)
        if subscription is not None:
            subscriptions.append(subscription)
    return subscriptions, problems
