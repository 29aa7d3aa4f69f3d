"""A Celery app for the fresh-install test: Spooled enabled by configuration only.

Run by ``<fresh venv>/bin/celery -A fresh_celery worker``. ``FRESH_BROKER_URL`` is the
broker, ``FRESH_QUEUE`` the Celery queue, ``FRESH_SPOOLED_QUEUE`` the Spooled queue
whose ``job.completed`` events run :func:`on_completed`, which appends the event's data
as one JSON line to ``FRESH_OUT``. Credentials come from ``SPOOLED_*``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery

app = Celery("fresh_celery", broker=os.environ["FRESH_BROKER_URL"])
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_default_queue=os.environ["FRESH_QUEUE"],
    imports=["spooled_integrations.celery"],
    spooled_enabled=True,
    spooled_subscriptions=[
        {
            "events": ["job.completed"],
            "queue": os.environ["FRESH_SPOOLED_QUEUE"],
            "task": "fresh_celery.on_completed",
            "payload": "data",
            "delivery": "every_node",  # one node, no fleet coordination
        }
    ],
)


@app.task(name="fresh_celery.on_completed")
def on_completed(data: dict[str, Any]) -> None:
    with open(os.environ["FRESH_OUT"], "a") as out:
        out.write(json.dumps(data) + "\n")
