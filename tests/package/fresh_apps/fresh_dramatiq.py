"""A Dramatiq broker module for the fresh-install test: one actor on ``job.completed``.

Run by ``<fresh venv>/bin/dramatiq fresh_dramatiq``. ``FRESH_BROKER_URL`` picks the
broker (``amqp://`` RabbitMQ, else Redis), ``FRESH_QUEUE`` is the actor's queue,
``FRESH_SPOOLED_QUEUE`` the Spooled queue whose ``job.completed`` events run
:func:`on_completed`, which appends the event's data as one JSON line to ``FRESH_OUT``.
The middleware reads its connection from ``SPOOLED_*``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import dramatiq

from spooled_integrations.dramatiq import SpooledMiddleware

URL = os.environ["FRESH_BROKER_URL"]


def _broker() -> dramatiq.Broker:
    if URL.startswith("amqp://"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=URL)
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=URL)


broker = _broker()
broker.add_middleware(SpooledMiddleware())  # before the actors: it defines spooled_* options
dramatiq.set_broker(broker)


@dramatiq.actor(
    queue_name=os.environ["FRESH_QUEUE"],
    spooled_events=["job.completed"],
    spooled_queue=os.environ["FRESH_SPOOLED_QUEUE"],
    spooled_delivery="every_node",  # one listener, no fleet coordination
    spooled_payload="data",
    max_retries=0,
)
def on_completed(data: dict[str, Any]) -> None:
    # O_APPEND keeps a line whole whichever worker process writes it.
    fd = os.open(os.environ["FRESH_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(data) + "\n").encode())
    finally:
        os.close(fd)
