"""Prometheus metrics of a plain runtime: a real runtime on the emulator, scraped."""

from __future__ import annotations

import socket
import sys
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from spooled_integrations.protocol import normalize
from spooled_integrations.runtime import Dispatcher, RecordingPublisher, Router, SubscriptionSet
from spooled_integrations.runtime.prometheus import AgeHistogram, register, serve
from spooled_integrations.testing import Emulator

from ..conftest import wait_until

OLD = "2020-01-01T00:00:00Z"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of an exposition text."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return samples(generate_latest(registry).decode())


def test_a_registered_runtime_exports_its_counters_health_and_event_age(
    spooled_emulator: Emulator, make_runtime: Any
) -> None:
    runtime = make_runtime(spooled_emulator, max_age=600.0, coalesce_window=0)
    registry = CollectorRegistry()
    register(runtime, registry)
    assert scrape(registry)[("spooled_health", (("health", "stopped"),))] == 1.0
    runtime.start()
    assert wait_until(lambda: runtime.health == "connected")
    for i in range(3):
        spooled_emulator.publish("job.completed", job_id=f"j-{i}", queue_name="q")
    spooled_emulator.publish("job.completed", job_id="j-old", queue_name="q", timestamp=OLD)
    spooled_emulator.publish_raw("{not json")
    assert wait_until(lambda: runtime.metrics.get("dispatched") == 3, timeout=10)
    assert wait_until(lambda: runtime.metrics.get("protocol_errors") == 1, timeout=10)

    values = scrape(registry)
    assert values[("spooled_events_received_total", ())] == 4.0
    assert values[("spooled_events_dispatched_total", ())] == 3.0
    assert values[("spooled_events_dropped_total", (("reason", "stale"),))] == 1.0
    (reason,) = runtime.metrics.snapshot()["protocol_errors"]
    assert values[("spooled_protocol_errors_total", (("reason", reason),))] == 1.0
    assert values[("spooled_health", (("health", "connected"),))] == 1.0
    assert values[("spooled_health", (("health", "refused"),))] == 0.0
    assert values[("spooled_connection_state", (("state", "connected"),))] == 1.0
    assert values[("spooled_running", ())] == 1.0
    assert values[("spooled_queue_size", ())] == float(runtime.config.queue_size)
    assert values[("spooled_reconnects_total", ())] == 0.0
    assert ("spooled_lease_leader", ()) not in values  # no lease coordination here
    # The stale event was dropped before dispatch: three ages, each seconds at most.
    assert values[("spooled_event_age_seconds_count", ())] == 3.0
    assert values[("spooled_event_age_seconds_bucket", (("le", "+Inf"),))] == 3.0
    assert values[("spooled_event_age_seconds_bucket", (("le", "60.0"),))] == 3.0
    assert values[("spooled_last_event_timestamp_seconds", ())] > 1.7e9

    spooled_emulator.drop_connections()
    assert wait_until(lambda: runtime.metrics.get("reconnects") == 1, timeout=10)
    assert wait_until(lambda: runtime.health == "connected", timeout=10)
    values = scrape(registry)
    assert values[("spooled_reconnects_total", ())] == 1.0
    runtime.stop(timeout=2)
    values = scrape(registry)
    assert values[("spooled_health", (("health", "stopped"),))] == 1.0
    assert values[("spooled_running", ())] == 0.0


def test_served_metrics_are_scraped_over_http_and_the_port_is_freed(
    spooled_emulator: Emulator, make_runtime: Any
) -> None:
    runtime = make_runtime(spooled_emulator)
    server = serve(runtime, 0, addr="127.0.0.1")
    try:
        runtime.start()
        assert wait_until(lambda: runtime.health == "connected")
        spooled_emulator.publish("job.started", job_id="j-1", queue_name="q")
        assert wait_until(lambda: runtime.metrics.get("dispatched") >= 1, timeout=10)
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        values = samples(text)
        assert values[("spooled_events_dispatched_total", ())] >= 1.0
        assert values[("spooled_health", (("health", "connected"),))] == 1.0
        assert ("process_resident_memory_bytes", ()) in values  # the worker process's own
        assert spooled_emulator.api_key not in text
    finally:
        server.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass


def test_without_prometheus_client_the_error_names_the_extra(
    spooled_emulator: Emulator, make_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = make_runtime(spooled_emulator)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with pytest.raises(ImportError, match=r"spooled-integrations\[prometheus\]"):
        register(runtime, None)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-01-01T00:00:00Z", 10.0),
        ("2026-01-01T00:00:00.5Z", 9.5),
        ("2026-01-01T00:00:00.250000Z", 9.75),
        ("2026-01-01T00:00:00.125000000Z", 9.875),
        ("2026-01-01T02:00:00+02:00", 10.0),  # not the backend's form: the general parser
        ("2026-01-01T00:00:20Z", 0.0),  # a server clock ahead of ours: never below 0
    ],
)
def test_the_age_observed_is_the_wall_clock_minus_the_server_timestamp(
    timestamp: str, expected: float
) -> None:
    now = datetime(2026, 1, 1, 0, 0, 10, tzinfo=timezone.utc).timestamp()
    dispatcher = Dispatcher(Router(SubscriptionSet()), wall_clock=lambda: now)
    ages: list[float] = []
    dispatcher.age_observers = (ages.append,)
    dispatcher.start()
    frame = f'{{"type": "JobCompleted", "data": {{"job_id": "j", "timestamp": "{timestamp}"}}}}'
    dispatcher.submit_many(normalize(frame.encode()))
    dispatcher.submit_many(normalize(b'{"type": "JobCompleted", "data": {"job_id": "k"}}'))
    dispatcher.stop(timeout=5)
    assert dispatcher.metrics.get("dispatched") == 2
    assert ages == [pytest.approx(expected)]  # the event without a timestamp has no age


def test_the_histogram_counts_each_age_in_its_bucket() -> None:
    ages = AgeHistogram((0.1, 1.0))
    for age in (0.05, 0.1, 0.5, 1.0, 7.0):
        ages.observe(age)
    family = ages.family()
    values = {(s.name, tuple(s.labels.items())): s.value for s in family.samples}
    assert values[("spooled_event_age_seconds_bucket", (("le", "0.1"),))] == 2  # le: inclusive
    assert values[("spooled_event_age_seconds_bucket", (("le", "1.0"),))] == 4
    assert values[("spooled_event_age_seconds_bucket", (("le", "+Inf"),))] == 5
    assert values[("spooled_event_age_seconds_count", ())] == 5
    assert values[("spooled_event_age_seconds_sum", ())] == pytest.approx(8.65)


def test_every_metric_is_in_the_operations_table(
    spooled_emulator: Emulator, make_runtime: Any
) -> None:
    page = (Path(__file__).parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    section = page.split("## Prometheus", 1)[1].split("\n## ", 1)[0]
    collector = register(make_runtime(spooled_emulator), CollectorRegistry())
    names = [
        family.name + ("_total" if family.type == "counter" else "")
        for family in collector.describe()
    ]
    assert len(names) > 20
    missing = [name for name in names if f"`{name}" not in section]
    assert not missing, f"metrics missing from the Prometheus table of operations.md: {missing}"


@pytest.mark.redis
def test_lease_leadership_is_a_gauge_per_node(
    spooled_emulator: Emulator, make_runtime: Any, redis_url: str
) -> None:
    coordination = {
        "strategy": "lease",
        "redis_url": redis_url,
        "namespace": f"t{uuid.uuid4().hex[:10]}",
    }
    once = [{"events": ["job.completed"], "queue": "q", "task": "t", "delivery": "once"}]
    nodes = []
    for transport in ("ws", "sse"):
        runtime = make_runtime(
            spooled_emulator,
            RecordingPublisher(),
            subscriptions=once,
            coordination=coordination,
            transport=transport,
        )
        registry = CollectorRegistry()
        register(runtime, registry)
        runtime.start()
        nodes.append((runtime, registry))
    leader, standby = nodes
    assert wait_until(lambda: leader[0].status()["coordination"]["role"] == "leader", 10)
    assert wait_until(lambda: standby[0].status()["coordination"]["available"] is True, 10)
    assert scrape(leader[1])[("spooled_lease_leader", ())] == 1.0
    assert scrape(standby[1])[("spooled_lease_leader", ())] == 0.0
    assert scrape(standby[1])[("spooled_coordination_available", ())] == 1.0
