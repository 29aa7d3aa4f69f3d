"""The Celery app of bench/fleet.py: one routed task that counts its runs in Redis."""

from __future__ import annotations

import json
import os
from typing import Any

from _record import connect_drops, count, seq_of
from celery import Celery
from celery.signals import after_task_publish

from spooled_integrations.celery import install

QUEUE = os.environ.get("BENCH_QUEUE", "bench")
TASK = "bench.on_completed"

app = Celery("fleet", broker=os.environ["BENCH_REDIS"])
app.conf.update(
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    spooled_enabled=True,
    spooled_subscriptions=[{"name": "bench", "events": ["job.completed"], "task": TASK}],
    spooled_coordination=json.loads(os.environ["BENCH_COORDINATION"]),
    spooled_reconnect_delay=0.1,
    spooled_max_reconnect_delay=0.5,
)
install(app)


@app.task(name=TASK, ignore_result=True)
def on_completed(event: dict[str, Any]) -> None:
    count("exec", seq_of(event))


@after_task_publish.connect
def _published(sender: str | None = None, body: Any = None, **kw: Any) -> None:
    if sender == TASK and isinstance(body, (list, tuple)) and body and body[0]:
        count("pub", seq_of(body[0][0]))


connect_drops()
