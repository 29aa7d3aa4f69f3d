"""OpenTelemetry with the real ``dramatiq`` command (fork mode, Redis): the routed
actor's message carries the event span's ``traceparent`` in ``options["trace_ctx"]``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations.testing import Emulator

from .conftest import DramatiqRun

pytest.importorskip("opentelemetry.sdk")

pytestmark = [pytest.mark.slow, pytest.mark.redis]

EVENTS = 5


@pytest.fixture
def queue(redis_url: str, unique_name: str) -> Iterator[str]:
    import redis

    yield unique_name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"dramatiq:{unique_name}*"))
    if keys:
        client.delete(*keys)
    client.close()


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_routed_actor_message_carries_the_dispatch_span_context(
    emulator: Emulator,
    redis_url: str,
    queue: str,
    run_dramatiq: Callable[..., DramatiqRun],
) -> None:
    env = {
        "SPOOLED_BASE_URL": emulator.base_url,
        "SPOOLED_API_KEY": emulator.api_key,
        "SPOOLED_TEST_BROKER_URL": redis_url,
        "SPOOLED_TEST_QUEUE": queue,
    }
    run = run_dramatiq("tracing_app", env)
    assert emulator.wait_for_connections(1, timeout=30), run.log_text()
    for i in range(EVENTS):
        emulator.publish("job.completed", job_id=f"j{i}", queue_name="emails", duration_ms=i)
    records = run.wait_records(EVENTS, timeout=30)
    assert len(records) == EVENTS, run.log_text()

    spans = {span["message_id"]: span for span in _lines(Path(f"{run.output}.spans"))}
    assert len(spans) == EVENTS, run.log_text()
    for record in records:
        span = spans[record["message_id"]]
        assert span["name"] == "spooled.dispatch job.completed"
        assert span["attributes"]["spooled.job.id"] == record["job_id"]
        assert span["attributes"]["spooled.queue.name"] == "emails"
        assert span["pid"] != run.pid  # dispatched in the listener fork
        context = record["trace_ctx"]
        assert context is not None, record
        version, trace_id, parent_id, flags = context["traceparent"].split("-")
        assert version == "00" and int(flags, 16) & 1  # sampled
        assert (trace_id, parent_id) == (span["trace_id"], span["span_id"])
    assert len({span["trace_id"] for span in spans.values()}) == EVENTS
