"""SpooledRuntime end to end: the emulator over real sockets, real threads."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from spooled_integrations.client import ConnectionOptions, ConnectionState
from spooled_integrations.errors import ConfigurationError, SubscriptionError
from spooled_integrations.runtime import RecordingPublisher, RuntimeConfig, SpooledRuntime
from spooled_integrations.runtime.signals import (
    connection_state_changed,
    event_dropped,
    receiver_failed,
    spooled_signal,
    stream_gap,
)
from spooled_integrations.testing import Emulator

from ..conftest import wait_until

RuntimeFactory = Callable[..., SpooledRuntime]


def start_connected(runtime: SpooledRuntime, emu: Emulator) -> None:
    runtime.start()
    assert wait_until(lambda: runtime.state == ConnectionState.CONNECTED)
    assert emu.wait_for_connections(1, runtime.config.transport)


def of_category(recorder: Any, *categories: str) -> list[Any]:
    return [e for e in recorder.kwarg("event") if e is not None and e.category in categories]


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_events_become_signals_with_the_right_sender(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, record: Any, transport: str
) -> None:
    everything = record(spooled_signal)
    completed_only = record(spooled_signal, sender="JobCompleted")
    runtime = make_runtime(spooled_emulator, transport=transport)
    start_connected(runtime, spooled_emulator)

    spooled_emulator.publish("job.completed", job_id="j1", queue_name="emails", duration_ms=5)
    spooled_emulator.publish(
        "JobFailed", job_id="j2", queue_name="emails", error="x", retry_count=0
    )
    spooled_emulator.publish("worker.registered", worker_id="w1", queue_name="emails")
    spooled_emulator.publish("brand.new", anything=1)

    assert everything.wait_for(lambda calls: any(s == "brand.new" for s, _ in calls))
    interesting = [
        (sender, kw["event"].job_id or kw["event"].worker_id)
        for sender, kw in everything.calls
        if sender not in ("system.health", "ping")
    ]
    assert interesting == [
        ("job.completed", "j1"),
        ("job.failed", "j2"),
        ("worker.joined", "w1"),
        ("brand.new", None),
    ]
    assert completed_only.senders == ["job.completed"]
    assert "ping" not in everything.senders  # skip_ping
    counters = runtime.status()["counters"]
    assert counters["signals_sent"] >= 4 and counters["dispatched"] >= 4


def test_routing_publishing_and_failure_isolation_over_the_wire(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    failures = record(receiver_failed)
    publisher = RecordingPublisher()
    runtime = make_runtime(
        spooled_emulator,
        publisher,
        subscriptions=[
            {"name": "emails", "events": ["job.completed"], "queue": "emails", "task": "t.e"},
            {"name": "slow", "events": ["job.*"], "where": {"duration_ms": 900}, "actor": "a.s"},
        ],
    )

    def bad(sender: Any, **kw: Any) -> None:
        raise RuntimeError("receiver bug")

    with spooled_signal.connected_to(bad, sender="job.completed"):
        start_connected(runtime, spooled_emulator)
        spooled_emulator.publish("job.completed", job_id="a", queue_name="emails", duration_ms=900)
        spooled_emulator.publish("job.completed", job_id="b", queue_name="sms", duration_ms=1)
        spooled_emulator.publish("job.completed", job_id="c", queue_name="emails", duration_ms=1)
        assert publisher.wait_for(3)
        assert wait_until(lambda: runtime.status()["counters"]["receiver_failures"] == 3)

    assert [(c.event.job_id, c.target) for c in publisher.calls] == [
        ("a", "task:t.e"),
        ("a", "actor:a.s"),
        ("c", "task:t.e"),
    ]
    assert publisher.calls[0].payload["data"]["job_id"] == "a"
    assert len(failures.calls) == 3


def test_both_forms_of_one_transition_dispatch_once(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    seen = record(spooled_signal, sender="job.failed")
    publisher = RecordingPublisher()
    runtime = make_runtime(
        spooled_emulator,
        publisher,
        subscriptions=[{"events": ["job.failed"], "task": "t.f"}],
        coalesce_window=0,  # the duplicate window alone (joined forms: test_coalesce.py)
    )
    start_connected(runtime, spooled_emulator)
    spooled_emulator.publish("JobFailed", job_id="j", queue_name="q", error="e", retry_count=2)
    spooled_emulator.publish(
        "JobStatusChange", job_id="j", queue_name="q", old_status="processing", new_status="failed"
    )
    spooled_emulator.publish("JobFailed", job_id="j", queue_name="q", error="e", retry_count=3)
    assert publisher.wait_for(2)
    assert wait_until(lambda: runtime.status()["counters"]["duplicates_suppressed"] == 1)
    assert [e.retry_count for e in seen.kwarg("event")] == [2, 3]
    assert len(publisher.calls) == 2


def test_stream_gap_and_reconnects_are_reported(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    gaps = record(stream_gap)
    states = record(connection_state_changed)
    runtime = make_runtime(
        spooled_emulator, connection={"reconnect_delay": 0.6, "max_reconnect_delay": 0.6}
    )
    start_connected(runtime, spooled_emulator)
    before = time.time()
    spooled_emulator.drop_connections()
    assert gaps.wait_count(1)
    sender, gap = gaps.calls[0]
    assert sender is runtime
    lost, back = gap["disconnected_at"].timestamp(), gap["reconnected_at"].timestamp()
    # the gap starts when the socket died, not when the backoff (>= 0.45 s) ended
    assert before <= lost < before + 0.3
    assert back - lost >= 0.4
    assert runtime.status()["counters"]["reconnects"] == 1
    assert states.kwarg("state")[:2] == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
    assert ConnectionState.RECONNECTING in states.kwarg("state")
    assert all(s is runtime for s in states.senders)
    assert states.kwarg("previous")[0] == ConnectionState.DISCONNECTED


def test_status_is_json_and_complete(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(spooled_emulator, subscriptions=[{"events": ["job.*"]}])
    assert runtime.status()["state"] == "disconnected"
    start_connected(runtime, spooled_emulator)
    spooled_emulator.publish("job.created", job_id="j", queue_name="q", priority=1)
    spooled_emulator.publish_raw("this is not json")
    assert wait_until(lambda: runtime.status()["last_event_at"] is not None)
    assert wait_until(lambda: runtime.status()["counters"]["protocol_errors"] == {"not_json": 1})
    assert wait_until(lambda: runtime.status()["counters"]["dispatched"] >= 1)
    status = json.loads(json.dumps(runtime.status()))
    assert status["state"] == "connected" and status["connected"] is True
    assert status["transport"] == "ws" and status["running"] is True
    assert status["connected_since"].endswith("Z")
    assert status["subscriptions"] == 1 and status["coordination"] is None
    assert status["queue_size"] == 10_000 and status["queue_depth"] == 0
    assert set(status["counters"]) >= {
        "received",
        "dispatched",
        "signals_sent",
        "dropped",
        "duplicates_suppressed",
        "receiver_failures",
        "publish_retries",
        "reconnects",
        "protocol_errors",
    }


def test_overflow_over_the_wire_never_stalls_the_reader(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    dropped = record(event_dropped)
    entered, release = threading.Event(), threading.Event()

    def slow(sender: Any, **kw: Any) -> None:
        entered.set()
        release.wait(10)

    runtime = make_runtime(spooled_emulator, queue_size=2)
    with spooled_signal.connected_to(slow, sender="job.created"):
        start_connected(runtime, spooled_emulator)
        spooled_emulator.publish("job.created", job_id="j0", queue_name="q", priority=0)
        assert entered.wait(5)  # the dispatch thread holds j0: 2 fit, 7 overflow
        for i in range(1, 10):
            spooled_emulator.publish("job.created", job_id=f"j{i}", queue_name="q", priority=0)
        assert wait_until(lambda: runtime.metrics.dropped("overflow") == 7)
        # the reader is still reading: a later frame overflows too
        spooled_emulator.publish("queue.paused", queue_name="q")
        assert wait_until(lambda: runtime.metrics.dropped("overflow") == 8)
        assert runtime.metrics.get("received") == 9  # queued frames count once decoded
        release.set()
        assert wait_until(lambda: runtime.metrics.get("dispatched") == 3)
    assert runtime.metrics.get("received") == 11
    assert {kw["reason"] for _, kw in dropped.calls} == {"overflow"}


def test_stop_during_reconnect_backoff_returns_within_timeout(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(
        spooled_emulator, connection={"reconnect_delay": 20, "max_reconnect_delay": 30}
    )
    start_connected(runtime, spooled_emulator)
    client = runtime.client
    assert client is not None
    spooled_emulator.reject_next(100, 503)
    spooled_emulator.drop_connections()
    # The session ended; the client now sleeps in its 20 s backoff.
    assert wait_until(lambda: client.stats.connected_since is None)
    time.sleep(0.2)
    started = time.monotonic()
    report = runtime.stop(timeout=2.0)
    assert time.monotonic() - started < 2.0
    assert not report.timed_out
    assert runtime.state == ConnectionState.DISCONNECTED
    assert client.stats.connects == 1


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_stop_during_a_stall_returns_within_timeout(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, transport: str
) -> None:
    runtime = make_runtime(spooled_emulator, transport=transport)
    start_connected(runtime, spooled_emulator)
    spooled_emulator.stall(True)
    time.sleep(0.3)
    started = time.monotonic()
    runtime.stop(timeout=1.5)
    assert time.monotonic() - started < 1.5
    assert wait_until(lambda: spooled_emulator.connections_current(transport) == 0, 2.0)


def test_stop_drains_then_is_idempotent(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    publisher = RecordingPublisher()
    runtime = make_runtime(
        spooled_emulator, publisher, subscriptions=[{"events": ["queue.*"], "task": "t"}]
    )
    gate = threading.Event()
    with spooled_signal.connected_to(lambda s, **kw: gate.wait(0.05), sender="queue.paused"):
        start_connected(runtime, spooled_emulator)
        for _ in range(20):
            spooled_emulator.publish("queue.paused", queue_name="q")
        assert wait_until(lambda: runtime.metrics.get("received") == 20)
        report = runtime.stop(timeout=5)
    assert report.left == 0 and not report.timed_out
    assert len(publisher.calls) == 20
    assert runtime.stop() is report
    assert runtime.status()["running"] is False
    with pytest.raises(RuntimeError):
        runtime.start()


def test_start_is_idempotent_and_does_no_io_on_the_caller(make_runtime: RuntimeFactory) -> None:
    class Nowhere:
        base_url = "http://127.0.0.1:9"  # discard port: nothing listens
        api_key = "sk_test_nothing"

    runtime = make_runtime(Nowhere(), connection={"reconnect_delay": 5, "max_reconnect_delay": 5})
    started = time.monotonic()
    runtime.start()
    runtime.start()
    assert time.monotonic() - started < 0.5
    client = runtime.client
    runtime.start()
    assert runtime.client is client
    assert runtime.stop(timeout=1).left == 0


def test_config_errors_surface_at_boot() -> None:
    options = ConnectionOptions(base_url="http://127.0.0.1:9", api_key="k")
    with pytest.raises(SubscriptionError) as info:
        RuntimeConfig(connection=options, subscriptions=[{"events": ["job.complete"]}, {}])
    assert len(info.value.problems) == 2
    with pytest.raises(ConfigurationError, match="queue_size"):
        RuntimeConfig(connection=options, queue_size=0)
    targeted = RuntimeConfig(connection=options, subscriptions=[{"events": ["*"], "task": "t"}])
    with pytest.raises(ConfigurationError, match="no publisher"):
        SpooledRuntime(targeted)
    with pytest.raises(SubscriptionError, match="unknown target 'task:t'"):
        SpooledRuntime(targeted, RecordingPublisher(known_targets={"other"}))
    via_model = RuntimeConfig.model_validate(
        {"connection": options, "subscriptions": [{"events": "job.completed"}]}
    )
    assert len(via_model.subscriptions) == 1


def test_once_delivery_without_coordination_warns_loudly(
    make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    class Nowhere:
        base_url = "http://127.0.0.1:9"
        api_key = "sk_test_nothing"

    runtime = make_runtime(
        Nowhere(),
        RecordingPublisher(),
        subscriptions=[
            {"name": "a", "events": ["job.completed"], "task": "t"},
            {"name": "b", "events": ["job.failed"], "task": "t", "delivery": "every_node"},
        ],
    )
    runtime.start()
    warning = next(r for r in caplog.records if "delivery='once'" in r.getMessage())
    assert "subscriptions[0] (name='a')" in warning.getMessage()
    assert "name='b'" not in warning.getMessage()
