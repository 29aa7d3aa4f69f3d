"""A broker module for the metrics tests: Dramatiq's ``Prometheus`` middleware beside ours.

``SPOOLED_TEST_BROKER_URL`` (Redis), ``SPOOLED_TEST_QUEUE`` (the actor's queue) and
``SPOOLED_TEST_OUTPUT`` (a file the actor appends one JSON line per run to); the
middleware reads its settings from ``SPOOLED_*``. The Prometheus middleware reads
``dramatiq_prom_db`` and ``dramatiq_prom_port``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware.prometheus import Prometheus

from spooled_integrations.dramatiq import SpooledMiddleware

broker = RedisBroker(url=os.environ["SPOOLED_TEST_BROKER_URL"])
if not any(isinstance(m, Prometheus) for m in broker.middleware):  # Dramatiq 1.x: a default
    broker.add_middleware(Prometheus())
broker.add_middleware(SpooledMiddleware())
dramatiq.set_broker(broker)

OUTPUT = os.environ.get("SPOOLED_TEST_OUTPUT", os.devnull)


@dramatiq.actor(
    queue_name=os.environ.get("SPOOLED_TEST_QUEUE", "spooled-test"),
    spooled_events=["job.failed"],
    max_retries=0,
)
def record_failure(event: dict[str, Any]) -> None:
    line = json.dumps({"pid": os.getpid(), "event": event}) + "\n"
    fd = os.open(OUTPUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
