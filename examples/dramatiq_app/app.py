"""A Dramatiq app that reacts to Spooled events: run it with ``dramatiq app -p 4``.

The middleware reads SPOOLED_API_KEY (and SPOOLED_BASE_URL, ...) from the environment
and holds one Spooled connection for the whole ``dramatiq`` run, in a process of its
own. Two ways to route events to actors are shown: an actor option, and a rules file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from spooled_integrations.dramatiq import SpooledMiddleware

logger = logging.getLogger("dramatiq_app")

QUEUE = os.environ.get("EXAMPLE_QUEUE", "spooled-events")

broker = RedisBroker(url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
# Add the middleware before declaring actors: it defines their spooled_* options.
broker.add_middleware(
    SpooledMiddleware(subscriptions=Path(__file__).with_name("subscriptions.toml"))
)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, spooled_events=["job.failed"])
def on_job_failed(event: dict[str, Any]) -> None:
    """Every failed Spooled job, on any queue; ``event`` is the whole event as JSON."""
    data = event["data"]
    logger.warning(
        "Spooled job %s failed on queue %s: %s",
        data.get("job_id"),
        data.get("queue_name"),
        data.get("error"),
    )


@dramatiq.actor(queue_name=QUEUE)
def on_email_sent(data: dict[str, Any]) -> None:
    """Routed by subscriptions.toml with payload = "data": only the event's data."""
    logger.info("Spooled email job %s completed", data.get("job_id"))
