"""A Celery app traced with the OpenTelemetry SDK, for tests/integrations/celery/test_tracing.py.

Configured from the ``SPTEST_*`` environment like ``spooled_testapp``. As operations.md shows,
a real ``TracerProvider`` (here with the SDK's in-memory exporter) is configured on
``worker_init``, in the main process where the listener dispatches; at shutdown its finished spans are written to ``SPTEST_OUT`` +
``.spans``. The routed task appends the ``traceparent`` header it received, with the
job id of its event, to ``SPTEST_OUT``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery, Task
from celery.signals import worker_init, worker_shutdown
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spooled_integrations.celery import install

QUEUE = os.environ["SPTEST_QUEUE"]
OUT = os.environ["SPTEST_OUT"]

exporter = InMemorySpanExporter()


@worker_init.connect
def _tracing(**kwargs: Any) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


app = Celery("spooled_tracingapp")
app.conf.update(
    broker_url=os.environ["SPTEST_BROKER"],
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=True,
    spooled_subscriptions=[
        {
            "name": "emails-done",
            "events": ["job.completed"],
            "queue": "emails",
            "task": "spooled_tracingapp.record",
            "delivery": "every_node",
        }
    ],
    spooled_shutdown_timeout=5.0,
)


def _append(path: str, record: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


@app.task(bind=True, name="spooled_tracingapp.record")
def record(self: Task[Any, Any], payload: Any) -> None:
    _append(
        OUT,
        {
            "job_id": payload["data"]["job_id"],
            "id": self.request.id,
            "traceparent": self.request.get("traceparent"),
        },
    )


@worker_shutdown.connect
def _write_spans(**kwargs: Any) -> None:
    for span in exporter.get_finished_spans():
        context = span.get_span_context()
        _append(
            OUT + ".spans",
            {
                "name": span.name,
                "trace_id": format(context.trace_id, "032x"),
                "span_id": format(context.span_id, "016x"),
                "attributes": {k: v for k, v in (span.attributes or {}).items()},
            },
        )


install(app)
