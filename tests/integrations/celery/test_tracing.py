"""OpenTelemetry with a real Celery worker: the routed task receives the event span's
``traceparent`` in its message headers (no Celery instrumentation installed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations.testing import Emulator

pytest.importorskip("opentelemetry.sdk")

EVENTS = 5


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.mark.redis
def test_routed_task_carries_the_dispatch_span_traceparent(
    redis_url: str, emulator: Emulator, start_worker: Callable[..., Any]
) -> None:
    worker = start_worker(
        redis_url, emulator, app="spooled_tracingapp", pool="prefork", concurrency=1
    )
    assert emulator.wait_for_connections(1, transport="ws", timeout=20), worker.output()
    for i in range(EVENTS):
        emulator.publish("job.completed", job_id=f"j{i}", queue_name="emails", duration_ms=i)
    runs = worker.wait_records(EVENTS)
    worker.terminate()  # warm shutdown: the main process writes its finished spans

    spans = {
        span["attributes"]["spooled.job.id"]: span
        for span in _lines(Path(f"{worker.out}.spans"))
        if span["name"] == "spooled.dispatch job.completed"
    }
    assert sorted(spans) == [f"j{i}" for i in range(EVENTS)], worker.output()
    for run in runs:
        span = spans[run["job_id"]]
        assert run["traceparent"] is not None, run
        version, trace_id, parent_id, flags = run["traceparent"].split("-")
        assert version == "00" and int(flags, 16) & 1  # sampled
        assert trace_id == span["trace_id"]
        assert parent_id == span["span_id"]
        # The span names the message it routed: the task's own id.
        assert span["attributes"]["spooled.message_id"] == [run["id"]]
        assert span["attributes"]["spooled.route"] == ["emails-done"]
        assert span["attributes"]["spooled.target"] == ["task:spooled_tracingapp.record"]
        assert span["attributes"]["spooled.queue.name"] == "emails"
    assert len({span["trace_id"] for span in spans.values()}) == EVENTS
