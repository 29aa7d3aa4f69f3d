"""A Dramatiq broker module traced with the OpenTelemetry SDK, for test_tracing.py.

Every process that imports it (the workers, the listener fork) gets a real
``TracerProvider`` with the SDK's in-memory exporter. Where the listener dispatches, an
``event_published`` receiver (it runs inside the event's span) appends that span's ids
and attributes to ``SPOOLED_TEST_OUTPUT`` + ``.spans``; the routed actor appends the
``trace_ctx`` option of the message it runs (read through ``CurrentMessage``) to
``SPOOLED_TEST_OUTPUT``. Redis broker at ``SPOOLED_TEST_BROKER_URL``, actor queue
``SPOOLED_TEST_QUEUE``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spooled_integrations import event_published
from spooled_integrations.dramatiq import SpooledMiddleware

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

broker = RedisBroker(url=os.environ["SPOOLED_TEST_BROKER_URL"])
broker.add_middleware(CurrentMessage())
broker.add_middleware(SpooledMiddleware())
dramatiq.set_broker(broker)

OUTPUT = os.environ["SPOOLED_TEST_OUTPUT"]


def _append(path: str, record: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


@dramatiq.actor(
    queue_name=os.environ["SPOOLED_TEST_QUEUE"],
    spooled_events=["job.completed"],
    spooled_queue="emails",
    max_retries=0,
)
def record_completed(event: dict[str, Any]) -> None:
    message = CurrentMessage.get_current_message()
    assert message is not None
    _append(
        OUTPUT,
        {
            "job_id": event["data"]["job_id"],
            "message_id": message.message_id,
            "trace_ctx": message.options.get("trace_ctx"),
        },
    )


@event_published.connect
def _note_span(sender: Any, event: Any, message_id: Any, **kwargs: Any) -> None:
    span = trace.get_current_span()
    context = span.get_span_context()
    _append(
        OUTPUT + ".spans",
        {
            "pid": os.getpid(),
            "message_id": message_id,
            "name": getattr(span, "name", None),
            "trace_id": format(context.trace_id, "032x"),
            "span_id": format(context.span_id, "016x"),
            "attributes": dict(getattr(span, "attributes", None) or {}),
        },
    )
