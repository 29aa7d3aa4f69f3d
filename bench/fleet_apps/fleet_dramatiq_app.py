"""The Dramatiq broker module of bench/fleet.py: one routed actor that counts its runs.

The Spooled listener runs in the middleware's fork process (one per ``dramatiq`` run),
with fleet coordination from ``BENCH_COORDINATION``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import dramatiq
from _record import connect_drops, count, seq_of
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from spooled_integrations.dramatiq import SpooledMiddleware

QUEUE = os.environ.get("BENCH_QUEUE", "bench")


class PublishRecorder(Middleware):  # type: ignore[misc]
    """Counts each message to the bench actor once it is enqueued."""

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        if message.actor_name == "on_completed" and message.args:
            count("pub", seq_of(message.args[0]))


broker = RedisBroker(url=os.environ["BENCH_REDIS"])
broker.add_middleware(PublishRecorder())
broker.add_middleware(
    SpooledMiddleware(
        mode=os.environ.get("BENCH_DRAMATIQ_MODE", "fork"),
        coordination=json.loads(os.environ["BENCH_COORDINATION"]),
        runtime={"publish_attempts": 5},
    )
)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0, spooled_events=["job.completed"])
def on_completed(event: dict[str, Any]) -> None:
    count("exec", seq_of(event))


connect_drops()
