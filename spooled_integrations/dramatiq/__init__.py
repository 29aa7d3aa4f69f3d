"""Dramatiq integration: one Spooled listener per ``dramatiq`` run, events routed to actors.

Add the middleware before declaring actors, then name events on the actors::

    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from spooled_integrations.dramatiq import SpooledMiddleware

    broker = RedisBroker(url="redis://localhost:6379/0")
    broker.add_middleware(SpooledMiddleware())  # SPOOLED_API_KEY etc. from the environment
    dramatiq.set_broker(broker)

    @dramatiq.actor(spooled_events=["job.failed"], spooled_queue="emails")
    def on_email_failed(event):
        ...

The actor receives one argument: the event as plain JSON (``{"type", "wire_type",
"timestamp", "derived_from", "data"}``, or only ``data`` with ``payload="data"``).
django-dramatiq users name ``"spooled_integrations.dramatiq.SpooledMiddleware"`` in
``DRAMATIQ_BROKER["MIDDLEWARE"]``; it then reads its settings from ``SPOOLED_*``
variables.

Where the listener runs (``mode``):

``"fork"`` (default)
    One listener per ``dramatiq`` run, in a process of its own that the ``dramatiq``
    command forks through the middleware's ``forks`` (as Dramatiq's Prometheus
    middleware runs its exposition server). ``dramatiq app -p 8`` holds one Spooled
    connection, not eight, and a worker process that crashes or is recycled does not
    take the connection with it. Right for one ``dramatiq`` run; with several runs
    (several nodes) each run has its own listener, so ``delivery="once"`` rules are
    dispatched once per run until fleet coordination is configured. When no
    ``dramatiq`` command started the worker (``dramatiq.Worker`` in your own process,
    in tests), there is no fork, so the listener runs in that process.
``"every_process"``
    A listener in every worker process (started in ``after_worker_boot``): ``-p 8``
    means eight connections. Pick it for ``delivery="every_node"`` rules that must
    reach every process (local caches), or together with fleet coordination, where
    the extra listeners are hot standbys. Without coordination every listening process
    dispatches every ``once`` rule, so an actor runs once per process.

Either way, ``before_worker_shutdown`` (or SIGTERM in the fork) stops the listener
within ``stop_timeout`` seconds, even while the connection is stalled or backing off.
A subscription naming an unknown actor, an undeclared queue or an option no middleware
reads stops the worker at boot with :class:`SpooledBootError` listing every problem.
"""

from __future__ import annotations

try:
    import dramatiq as _dramatiq  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without Dramatiq
    raise ImportError(
        "spooled_integrations.dramatiq needs Dramatiq; install it with "
        'pip install "spooled-integrations[dramatiq]"'
    ) from exc

from spooled_integrations.dramatiq.actors import ACTOR_OPTIONS, actor_subscriptions
from spooled_integrations.dramatiq.fork import spooled_listener
from spooled_integrations.dramatiq.middleware import SpooledBootError, SpooledMiddleware
from spooled_integrations.dramatiq.publisher import DramatiqPublisher
from spooled_integrations.dramatiq.settings import DramatiqSettings, resolve_settings

__all__ = [
    "ACTOR_OPTIONS",
    "DramatiqPublisher",
    "DramatiqSettings",
    "SpooledBootError",
    "SpooledMiddleware",
    "actor_subscriptions",
    "resolve_settings",
    "spooled_listener",
]
