"""A broker module for the tests that run the real ``dramatiq`` command.

Configured through the environment so one module serves every test:
``SPOOLED_TEST_BROKER`` (``redis``, ``rabbitmq`` or ``stub``) and
``SPOOLED_TEST_BROKER_URL``, ``SPOOLED_TEST_QUEUE`` (the actor's queue), and
``SPOOLED_TEST_OUTPUT`` (a file the actors append one JSON line per run to). The
middleware reads its own settings from ``SPOOLED_*`` like a deployment would, plus
``SPOOLED_TEST_RUNTIME`` (a JSON object passed as ``runtime=``). With
``SPOOLED_TEST_COMPLETED_QUEUE`` set, a second actor runs for ``job.completed`` on that
Spooled queue (``SPOOLED_TEST_DELIVERY``: its delivery, default ``once``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import dramatiq

from spooled_integrations.dramatiq import SpooledMiddleware


def _broker() -> dramatiq.Broker:
    kind = os.environ.get("SPOOLED_TEST_BROKER", "stub")
    url = os.environ.get("SPOOLED_TEST_BROKER_URL")
    if kind == "redis":
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url)
    if kind == "rabbitmq":
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url)
    from dramatiq.brokers.stub import StubBroker

    return StubBroker()


broker = _broker()
_runtime = os.environ.get("SPOOLED_TEST_RUNTIME")
middleware = SpooledMiddleware(runtime=json.loads(_runtime) if _runtime else None)
broker.add_middleware(middleware)
dramatiq.set_broker(broker)

QUEUE = os.environ.get("SPOOLED_TEST_QUEUE", "spooled-test")
OUTPUT = os.environ.get("SPOOLED_TEST_OUTPUT", os.devnull)
COMPLETED_QUEUE = os.environ.get("SPOOLED_TEST_COMPLETED_QUEUE")


def _append(event: dict[str, Any]) -> None:
    """Append the event, this pid and the listener status this process sees as one line;
    O_APPEND keeps lines whole across processes."""
    record = {"pid": os.getpid(), "event": event, "spooled": middleware.status()}
    line = json.dumps(record, default=str) + "\n"
    fd = os.open(OUTPUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@dramatiq.actor(queue_name=QUEUE, spooled_events=["job.failed"], max_retries=0)
def record_failure(event: dict[str, Any]) -> None:
    _append(event)


if COMPLETED_QUEUE:

    @dramatiq.actor(
        queue_name=QUEUE,
        spooled_events=["job.completed"],
        spooled_queue=COMPLETED_QUEUE,
        spooled_delivery=os.environ.get("SPOOLED_TEST_DELIVERY", "once"),
        max_retries=0,
    )
    def record_completed(event: dict[str, Any]) -> None:
        _append(event)
