"""A broker module for the tests that run the real ``dramatiq`` command.

Configured through the environment so one module serves every test:
``SPOOLED_TEST_BROKER`` (``redis``, ``rabbitmq`` or ``stub``) and
``SPOOLED_TEST_BROKER_URL``, ``SPOOLED_TEST_QUEUE`` (the actor's queue), and
``SPOOLED_TEST_OUTPUT`` (a file the actor appends one JSON line per run to). The
middleware reads its own settings from ``SPOOLED_*`` like a deployment would.
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
broker.add_middleware(SpooledMiddleware())
dramatiq.set_broker(broker)

QUEUE = os.environ.get("SPOOLED_TEST_QUEUE", "spooled-test")
OUTPUT = os.environ.get("SPOOLED_TEST_OUTPUT", os.devnull)


@dramatiq.actor(queue_name=QUEUE, spooled_events=["job.failed"], max_retries=0)
def record_failure(event: dict[str, Any]) -> None:
    """Append the event and this pid as one line; O_APPEND keeps lines whole across processes."""
    line = json.dumps({"pid": os.getpid(), "event": event}) + "\n"
    fd = os.open(OUTPUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
