"""A Celery app with a Redis result backend, for the tests of routed tasks' results.

Like ``spooled_testapp`` it is configured from the ``SPTEST_*`` environment; the result
backend is the broker's Redis with the key prefix ``SPTEST_RESULT_PREFIX``, so a test
counts only its own ``celery-task-meta-*`` keys. Rules:

- ``emails-quiet``: ``job.completed`` on ``emails`` -> ``record`` (no options: no result);
- ``reports-kept``: ``job.completed`` on ``reports`` -> ``record`` with
  ``options={"ignore_result": False}`` (results stored);
- ``record_failed`` declares ``job.failed`` on ``emails`` with
  ``spooled_options={"ignore_result": False}`` (results stored);
- ``record_own_setting`` is declared with Celery's own ``ignore_result=False`` and no
  option: the message's ``ignore_result=True`` wins, as with ``apply_async``.

Every task appends ``{"task", "id", "payload"}`` (``id``: ``self.request.id``) to
``SPTEST_OUT``; an ``event_published`` receiver appends ``{"rule", "message_id",
"job_id"}`` to ``SPTEST_OUT`` + ``.published``, in the worker's main process.
"""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery, Task

from spooled_integrations import event_published
from spooled_integrations.celery import install

QUEUE = os.environ["SPTEST_QUEUE"]
OUT = os.environ["SPTEST_OUT"]
BROKER = os.environ["SPTEST_BROKER"]

app = Celery("spooled_resultsapp")
app.conf.update(
    broker_url=BROKER,
    broker_connection_retry_on_startup=True,
    result_backend=BROKER,
    result_backend_transport_options={"global_keyprefix": os.environ["SPTEST_RESULT_PREFIX"]},
    task_default_queue=QUEUE,
    worker_hijack_root_logger=True,
    spooled_subscriptions=[
        {
            "name": "emails-quiet",
            "events": ["job.completed"],
            "queue": "emails",
            "task": "spooled_resultsapp.record",
            "delivery": "every_node",
        },
        {
            "name": "reports-kept",
            "events": ["job.completed"],
            "queue": "reports",
            "task": "spooled_resultsapp.record",
            "delivery": "every_node",
            "options": {"ignore_result": False},
        },
        {
            "name": "own-setting",
            "events": ["job.started"],
            "queue": "emails",
            "task": "spooled_resultsapp.record_own_setting",
            "delivery": "every_node",
        },
    ],
    spooled_shutdown_timeout=5.0,
)


def _append(path: str, record: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


@app.task(bind=True, name="spooled_resultsapp.record")
def record(self: Task[Any, Any], payload: Any) -> str:
    _append(OUT, {"task": "record", "id": self.request.id, "payload": payload})
    return "done"


@app.task(
    bind=True,
    name="spooled_resultsapp.record_failed",
    spooled_events=["job.failed"],
    spooled_queue="emails",
    spooled_delivery="every_node",
    spooled_options={"ignore_result": False},
)
def record_failed(self: Task[Any, Any], payload: Any) -> str:
    _append(OUT, {"task": "record_failed", "id": self.request.id, "payload": payload})
    return "done"


@app.task(bind=True, name="spooled_resultsapp.record_own_setting", ignore_result=False)
def record_own_setting(self: Task[Any, Any], payload: Any) -> str:
    _append(OUT, {"task": "record_own_setting", "id": self.request.id, "payload": payload})
    return "done"


@event_published.connect
def _note_published(sender: Any, event: Any, subscription: Any, message_id: Any, **kw: Any) -> None:
    rule = subscription.name or subscription.target
    _append(OUT + ".published", {"rule": rule, "message_id": message_id, "job_id": event.job_id})


install(app)
