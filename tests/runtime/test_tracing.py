"""OpenTelemetry: one span per dispatched event, publishes inside it, errors marked.

Spans go to the SDK's in-memory exporter through a real ``TracerProvider`` set as the
global one for the test and unset afterwards (as OpenTelemetry's own test utilities do),
so no other test runs with a provider configured.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

from spooled_integrations.protocol import Event
from spooled_integrations.protocol.models import CATCH_UP
from spooled_integrations.runtime import (
    Dispatcher,
    RecordingPublisher,
    RetryPolicy,
    Router,
    tracing,
)
from spooled_integrations.runtime.subscriptions import Subscription
from spooled_integrations.runtime.tracing import inject
from spooled_integrations.testing import Emulator

from ..conftest import wait_until
from .test_runtime import RuntimeFactory, start_connected

FAST = RetryPolicy(attempts=2, budget=5.0, initial_delay=0.01, max_delay=0.02, jitter=0)

SUBS = [
    {
        "name": "emails",
        "events": ["job.completed"],
        "queue": "emails",
        "task": "t.emails",
        "delivery": "every_node",
    },
    {"events": ["job.completed"], "actor": "a.audit"},
]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """A real SDK provider, global for this test only; its finished spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    saved = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace.set_tracer_provider(provider)
    tracing.recheck()  # used from the next event on, not up to a second later
    yield exporter
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved
    tracing.recheck()
    provider.shutdown()


class ContextRecordingPublisher(RecordingPublisher):
    """Records, with each publish, the trace context a publisher would inject."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.contexts: list[dict[str, str] | None] = []

    def publish(self, subscription: Subscription, payload: Any, event: Event) -> str:
        self.contexts.append(inject())
        return super().publish(subscription, payload, event)


def _trace_id(context: dict[str, str] | None) -> int:
    assert context is not None
    return int(context["traceparent"].split("-")[1], 16)


def test_one_span_per_dispatched_event_with_its_attributes_and_publishes_inside(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, spans: InMemorySpanExporter
) -> None:
    publisher = ContextRecordingPublisher()
    runtime = make_runtime(spooled_emulator, publisher, subscriptions=SUBS)
    start_connected(runtime, spooled_emulator)

    spooled_emulator.publish("job.completed", job_id="j1", queue_name="emails", duration_ms=5)
    spooled_emulator.publish("job.started", job_id="j2", queue_name="sms")  # signals only
    assert publisher.wait_for(2)
    assert wait_until(
        lambda: any(s.attributes.get("spooled.job.id") == "j2" for s in spans.get_finished_spans())
    )

    ours = {
        s.attributes["spooled.job.id"]: s
        for s in spans.get_finished_spans()
        if s.attributes is not None and "spooled.job.id" in s.attributes
    }
    assert set(ours) == {"j1", "j2"}
    routed, signals_only = ours["j1"], ours["j2"]

    assert routed.name == "spooled.dispatch job.completed"
    assert routed.kind is SpanKind.CONSUMER
    assert routed.status.status_code is StatusCode.UNSET
    assert dict(routed.attributes or {}) == {
        "messaging.system": "spooled",
        "messaging.operation.type": "process",
        "messaging.operation.name": "dispatch",
        "messaging.destination.name": "emails",
        "spooled.event.type": "job.completed",
        "spooled.event.replayed": False,
        "spooled.job.id": "j1",
        "spooled.queue.name": "emails",
        "spooled.route": ("emails", "actor:a.audit"),
        "spooled.target": ("task:t.emails", "actor:a.audit"),
        "spooled.delivery": ("every_node", "once"),
        "spooled.message_id": ("recorded-1", "recorded-2"),
    }
    # Both publishes ran inside the event's span: the context they inject is its own.
    assert [_trace_id(c) for c in publisher.contexts] == [routed.context.trace_id] * 2
    assert {c["traceparent"].split("-")[2] for c in publisher.contexts if c} == {
        format(routed.context.span_id, "016x")
    }

    assert signals_only.name == "spooled.dispatch job.started"
    assert signals_only.attributes is not None
    assert signals_only.attributes["spooled.queue.name"] == "sms"
    assert "spooled.route" not in signals_only.attributes
    assert signals_only.context.trace_id != routed.context.trace_id  # one trace per event


@pytest.fixture
def dispatchers() -> Iterator[list[Dispatcher]]:
    made: list[Dispatcher] = []
    yield made
    for dispatcher in made:
        dispatcher.stop(timeout=2.0)


def test_a_publish_that_fails_for_good_marks_the_span_error(
    dispatchers: list[Dispatcher], make_event: Any, spans: InMemorySpanExporter
) -> None:
    publisher = RecordingPublisher(fail_times=FAST.attempts)
    dispatcher = Dispatcher(Router(SUBS[:1]), publisher=publisher, retry=FAST)
    dispatchers.append(dispatcher)
    dispatcher.start()
    dispatcher.submit(make_event("JobCompleted", job_id="bad", queue_name="emails"))
    dispatcher.stop(5)

    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is not None
    assert "publishing to emails failed" in span.status.description
    assert "RecordingPublisher told to fail" in span.status.description
    assert [e.name for e in span.events] == ["publish_failed"]
    assert dispatcher.metrics.dropped("publish_failed") == 1


def test_a_recovered_event_says_so(
    dispatchers: list[Dispatcher], spans: InMemorySpanExporter
) -> None:
    dispatcher = Dispatcher(Router(SUBS[:1]), publisher=RecordingPublisher(), retry=FAST)
    dispatchers.append(dispatcher)
    dispatcher.start()
    event = Event(
        "job.completed",
        {"job_id": "r1", "queue_name": "emails"},
        "JobCompleted",
        derived_from=CATCH_UP,
    )
    done: list[int] = []
    dispatcher.submit_recovered([event], lambda new, dups: done.append(new))
    assert wait_until(lambda: done == [1])

    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["spooled.event.replayed"] is True
    assert span.attributes["spooled.event.derived_from"] == CATCH_UP


def test_no_provider_configured_means_no_span_and_nothing_injected(
    dispatchers: list[Dispatcher], make_event: Any
) -> None:
    # The API is installed, the global provider is the default proxy: tracing is off.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    publisher = ContextRecordingPublisher()
    dispatcher = Dispatcher(Router(SUBS[:1]), publisher=publisher, retry=FAST)
    dispatchers.append(dispatcher)
    dispatcher.start()
    dispatcher.submit(make_event("JobCompleted", job_id="j1", queue_name="emails"))
    assert publisher.wait_for(1)
    assert publisher.contexts == [None]


def test_a_provider_configured_after_the_start_is_used_within_a_second(
    dispatchers: list[Dispatcher], make_event: Any
) -> None:
    publisher = ContextRecordingPublisher()
    dispatcher = Dispatcher(Router(SUBS[:1]), publisher=publisher, retry=FAST)
    dispatchers.append(dispatcher)
    dispatcher.start()
    dispatcher.submit(make_event("JobCompleted", job_id="before", queue_name="emails"))
    assert publisher.wait_for(1)

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    saved = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace.set_tracer_provider(provider)  # as worker_process_init would, after the start
    try:
        time.sleep(1.1)  # the next look for a provider
        dispatcher.submit(make_event("JobCompleted", job_id="after", queue_name="emails"))
        assert publisher.wait_for(2)
        assert wait_until(lambda: len(exporter.get_finished_spans()) == 1)
    finally:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved
        tracing.recheck()
        provider.shutdown()
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["spooled.job.id"] == "after"
    assert publisher.contexts[0] is None and publisher.contexts[1] is not None


_WITHOUT_OTEL = textwrap.dedent(
    """
    import json, sys, time
    sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
    from spooled_integrations.protocol import Event
    from spooled_integrations.runtime import Dispatcher, RecordingPublisher, Router
    from spooled_integrations.runtime.tracing import inject

    publisher = RecordingPublisher()
    rules = [{"name": "emails", "events": ["job.completed"], "task": "t.emails"}]
    dispatcher = Dispatcher(Router(rules), publisher=publisher)
    dispatcher.start()
    dispatcher.submit(Event("job.completed", {"job_id": "j1"}, "JobCompleted"))
    ok = publisher.wait_for(1)
    report = dispatcher.stop(5)
    print(json.dumps({
        "published": ok,
        "targets": publisher.targets(),
        "dispatched": dispatcher.metrics.snapshot()["dispatched"],
        "inject": inject(),
        "left": report.left,
        "imported": sorted(m for m in sys.modules if m.startswith("opentelemetry.")),
    }))
    """
)


def test_without_opentelemetry_dispatch_is_unchanged() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", _WITHOUT_OTEL],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "published": True,
        "targets": ["task:t.emails"],
        "dispatched": 1,
        "inject": None,
        "left": 0,
        "imported": [],
    }
