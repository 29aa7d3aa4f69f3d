"""Both transports against the emulator over real sockets."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spooled_integrations import (
    AuthError,
    ConnectionState,
    Event,
    EventType,
    JobEvent,
    NotSupportedError,
    ProtocolError,
    SSEClient,
    SubscriptionFilter,
    WebSocketClient,
)
from spooled_integrations.client import BaseClient, ConnectionOptions, auth, create_client
from spooled_integrations.client.backoff import BackoffPolicy
from spooled_integrations.testing import Collector, Emulator

from ..conftest import wait_until
from .conftest import RawServer

ClientFactory = Callable[..., BaseClient]


def listening(
    make_client: ClientFactory, emu: Emulator, transport: str, *args: Any, **options: Any
) -> tuple[BaseClient, Collector[Event]]:
    """A connected client whose events are collected, once the emulator has seen it."""
    client = make_client(emu, transport, *args, **options)
    seen: Collector[Event] = Collector()
    client.on_event(seen)
    client.connect()
    emu.wait_for_connections(1, transport=transport)
    return client, seen


OptionsFactory = Callable[..., ConnectionOptions]

# Data that satisfies each canonical type (the emulator fills in the timestamp).
SAMPLE: dict[EventType, dict[str, Any]] = {
    EventType.JOB_CREATED: {"job_id": "j-created", "queue_name": "emails", "priority": 3},
    EventType.JOB_STARTED: {"job_id": "j-started", "queue_name": "emails"},
    EventType.JOB_COMPLETED: {"job_id": "j-completed", "queue_name": "emails", "duration_ms": 9},
    EventType.JOB_FAILED: {
        "job_id": "j-failed",
        "queue_name": "emails",
        "error": "boom",
        "retry_count": 1,
    },
    EventType.JOB_RETRYING: {"job_id": "j-retrying", "queue_name": "emails", "retry_count": 2},
    EventType.JOB_PROGRESS: {"job_id": "j-progress", "queue_name": "emails", "progress": 0.5},
    EventType.JOB_CANCELLED: {"job_id": "j-cancelled", "queue_name": "emails"},
    EventType.JOB_STATUS: {
        "job_id": "j-status",
        "queue_name": "emails",
        "old_status": "",
        "new_status": "pending",
    },
    EventType.QUEUE_PAUSED: {"queue_name": "emails", "reason": "maintenance"},
    EventType.QUEUE_RESUMED: {"queue_name": "emails"},
    EventType.QUEUE_STATS: {
        "queue_name": "emails",
        "pending": 1,
        "processing": 2,
        "completed": 3,
        "failed": 4,
    },
    EventType.WORKER_JOINED: {"worker_id": "w1", "queue_name": "emails"},
    EventType.WORKER_LEFT: {"worker_id": "w1"},
    EventType.WORKER_ACTIVE: {"worker_id": "w1", "queue_name": "emails"},
    EventType.WORKER_INACTIVE: {"worker_id": "w1", "queue_name": "emails"},
    EventType.WORKER_HEARTBEAT: {"worker_id": "w1", "status": "busy", "current_job_id": None},
    EventType.SYSTEM_HEALTH: {"database": True, "redis": True},
    EventType.ERROR: {"message": "something odd"},
}


def not_ping(items: list[Event]) -> list[Event]:
    return [e for e in items if e.type not in ("ping", "system.health")]


def test_every_event_type_round_trips(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    client = make_client(spooled_emulator, transport)
    seen: Collector[Event] = Collector()
    client.on_event(seen)
    client.connect()
    assert client.state is ConnectionState.CONNECTED
    assert spooled_emulator.wait_for_connections(1, transport=transport)
    for event_type, data in SAMPLE.items():
        spooled_emulator.publish(event_type.value, **data)
    wanted = {t.value for t in SAMPLE}
    assert seen.wait_for(lambda items: wanted <= {e.type for e in items}), {
        e.type for e in seen.items
    }
    by_type = {e.type: e for e in seen.items}
    assert by_type["job.completed"].job().duration_ms == 9
    assert by_type["job.failed"].job().retry_count == 1
    assert by_type["queue.stats"].queue().failed == 4
    assert by_type["worker.joined"].wire_type == "WorkerRegistered"
    assert by_type["worker.heartbeat"].worker().status == "busy"
    assert by_type["error"].data["message"] == "something odd"
    for event in by_type.values():
        assert event.timestamp is not None, event


def test_typed_handlers_get_typed_views_and_aliases_work(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    client = make_client(spooled_emulator, transport)
    jobs: Collector[JobEvent] = Collector()
    workers: Collector[Any] = Collector()
    client.on_job_event("JobCompleted")(jobs)
    client.on_worker_event(EventType.WORKER_JOINED, workers)
    with pytest.raises(ValueError, match="not a queue event"):
        client.on_queue_event("job.completed", print)
    client.connect()
    spooled_emulator.wait_for_connections(1, transport=transport)
    spooled_emulator.publish("job.completed", job_id="j1", queue_name="q", duration_ms=1)
    spooled_emulator.publish("worker.registered", worker_id="w9", queue_name="q")
    assert jobs.wait_count(1) and workers.wait_count(1)
    assert isinstance(jobs.items[0], JobEvent)
    assert jobs.items[0].job_id == "j1"
    assert workers.items[0].worker_id == "w9"


def test_unknown_types_reach_catch_all_handlers(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    _, seen = listening(make_client, spooled_emulator, transport)
    spooled_emulator.publish("JobTeleported", job_id="j1", destination="mars")
    assert seen.wait_for(lambda items: any(e.type == "JobTeleported" for e in items))
    [event] = [e for e in seen.items if e.type == "JobTeleported"]
    assert not event.known
    assert event.data["destination"] == "mars"


def test_connect_time_filter_and_client_side_job_filter(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    filter = SubscriptionFilter(queue_name="emails", events=["job.completed", "JobFailed"])
    _, seen = listening(make_client, spooled_emulator, transport, filter)
    spooled_emulator.publish("job.completed", job_id="other-queue", queue_name="sms", duration_ms=1)
    spooled_emulator.publish("job.created", job_id="wrong-type", queue_name="emails", priority=0)
    spooled_emulator.publish(
        "job.failed", job_id="f1", queue_name="emails", error="x", retry_count=0
    )
    spooled_emulator.publish("job.completed", job_id="c1", queue_name="emails", duration_ms=1)
    assert seen.wait_for(lambda items: any(e.job_id == "c1" for e in items))
    assert [e.job_id for e in not_ping(seen.items)] == ["f1", "c1"]


def test_job_id_filter_is_applied_client_side_on_websocket(
    spooled_emulator: Emulator, make_client: ClientFactory
) -> None:
    client, seen = listening(make_client, spooled_emulator, "ws", SubscriptionFilter(job_id="mine"))
    spooled_emulator.publish("job.completed", job_id="theirs", queue_name="q", duration_ms=1)
    spooled_emulator.publish("job.completed", job_id="mine", queue_name="q", duration_ms=1)
    assert seen.wait_for(lambda items: any(e.job_id == "mine" for e in items))
    assert {e.job_id for e in not_ping(seen.items)} == {"mine"}
    assert client.stats.filtered_out >= 1


def test_per_job_stream_follows_a_job_to_its_end(
    spooled_emulator: Emulator, make_client: ClientFactory
) -> None:
    job_id = spooled_emulator.create_job("emails", {"to": "a@example.com"})
    client = make_client(spooled_emulator, "sse")
    assert isinstance(client, SSEClient)
    seen: Collector[Event] = Collector()
    states: Collector[ConnectionState] = Collector()
    client.on_event(seen)
    client.on_state_change(states)
    client.connect_job(job_id)
    assert seen.wait_for(lambda items: any(e.type == "job.status" for e in items))
    spooled_emulator.set_job_status(job_id, "processing")
    assert seen.wait_for(lambda items: any(e.type == "job.started" for e in items))
    spooled_emulator.set_job_status(job_id, "completed")
    assert states.wait_for(lambda items: items[-1:] == [ConnectionState.DISCONNECTED])
    types = [e.type for e in seen.items]
    assert types[0] == "job.status" and seen.items[0].data["old_status"] == ""
    assert "job.completed" in types
    time.sleep(0.3)  # a finished stream is not reopened
    assert spooled_emulator.connections_accepted("sse") == 1


def test_per_job_stream_of_unknown_job_ends_with_error(
    spooled_emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(spooled_emulator, "sse")
    assert isinstance(client, SSEClient)
    seen: Collector[Event] = Collector()
    states: Collector[ConnectionState] = Collector()
    client.on_event(seen)
    client.on_state_change(states)
    client.connect_job("no-such-job")
    assert seen.wait_for(lambda items: any(e.type == "error" for e in items))
    assert seen.items[-1].data["message"] == "Job not found"
    assert states.wait_for(lambda items: items[-1:] == [ConnectionState.DISCONNECTED])


def test_per_queue_stream_sends_stats(
    spooled_emulator: Emulator, make_client: ClientFactory
) -> None:
    spooled_emulator.create_job("reports", {})
    client = make_client(spooled_emulator, "sse")
    assert isinstance(client, SSEClient)
    seen: Collector[Event] = Collector()
    client.on_queue_event("queue.stats", seen)
    client.connect_queue("reports")
    assert seen.wait_count(1)
    stats = seen.items[0]
    assert stats.queue_name == "reports"
    assert stats.pending == 1


def test_sse_cannot_subscribe_at_runtime(
    spooled_emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(spooled_emulator, "sse")
    with pytest.raises(NotSupportedError, match="connect_with_filter"):
        client.subscribe(SubscriptionFilter(queue_name="emails"))


def test_reconnects_after_a_dropped_connection(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    client, seen = listening(make_client, spooled_emulator, transport)
    spooled_emulator.publish("job.completed", job_id="before", queue_name="q", duration_ms=1)
    assert seen.wait_for(lambda items: any(e.job_id == "before" for e in items))
    spooled_emulator.drop_connections()
    assert wait_until(lambda: spooled_emulator.connections_accepted(transport) >= 2)
    assert spooled_emulator.wait_for_connections(1, transport=transport)
    spooled_emulator.publish("job.completed", job_id="after", queue_name="q", duration_ms=1)
    assert seen.wait_for(lambda items: any(e.job_id == "after" for e in items))
    assert client.stats.reconnects >= 1
    assert spooled_emulator.login_count == 1  # the JWT is cached across reconnects


def test_reconnects_promptly_after_a_clean_close(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    client = make_client(
        spooled_emulator, transport, healthy_after=0.0, reconnect_delay=5, max_reconnect_delay=10
    )
    client.connect()
    spooled_emulator.wait_for_connections(1, transport=transport)
    started = time.monotonic()
    spooled_emulator.close_streams()
    assert wait_until(lambda: spooled_emulator.connections_accepted(transport) >= 2, timeout=3)
    # a clean close is not a failure: no 5 s backoff
    assert time.monotonic() - started < 2.0
    assert client.state is ConnectionState.CONNECTED or wait_until(
        lambda: client.state is ConnectionState.CONNECTED
    )


def test_strict_sse_max_duration_close_is_followed_by_a_reconnect(
    make_client: ClientFactory,
) -> None:
    with Emulator(
        strict=True, health_interval=0.1, keepalive_interval=0.2, max_stream_duration=0.5
    ) as emu:
        client = make_client(emu, "sse", healthy_after=0.0)
        seen: Collector[Event] = Collector()
        client.on_event(seen)
        client.connect()
        assert wait_until(lambda: emu.connections_accepted("sse") >= 2, timeout=5)
        assert seen.wait_for(lambda items: any(e.type == "system.health" for e in items))
        assert client.stats.protocol_errors == {}


def test_liveness_timeout_reconnects_a_stalled_stream(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    client, seen = listening(make_client, spooled_emulator, transport, liveness_timeout=0.6)
    spooled_emulator.stall(True)
    assert wait_until(lambda: spooled_emulator.connections_accepted(transport) >= 2, timeout=5)
    spooled_emulator.stall(False)
    assert wait_until(lambda: client.state is ConnectionState.CONNECTED, timeout=5)
    assert spooled_emulator.wait_for_connections(1, transport=transport)
    spooled_emulator.publish("job.completed", job_id="after-stall", queue_name="q", duration_ms=1)
    assert seen.wait_for(lambda items: any(e.job_id == "after-stall" for e in items))


def test_bad_credentials_fail_connect_with_auth_error(
    spooled_emulator: Emulator, make_options: OptionsFactory, transport: str
) -> None:
    options = make_options(spooled_emulator, api_key="sk_test_wrong_key_123456")
    client = WebSocketClient(options) if transport == "ws" else SSEClient(options)
    with pytest.raises(AuthError) as info:
        client.connect()
    assert info.value.status == 401
    assert "sk_test_wrong_key_123456" not in str(info.value)
    assert client.state is ConnectionState.DISCONNECTED
    assert spooled_emulator.login_count == 1


def test_revoked_key_mid_life_is_retried_slowly_without_a_storm(
    spooled_emulator: Emulator,
    make_client: ClientFactory,
    transport: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The real schedule starts at a minute; the same code on a shorter clock.
    monkeypatch.setattr(auth, "REFUSAL_SCHEDULE", BackoffPolicy(1.5, 3.0, jitter=0))
    caplog.set_level(logging.DEBUG)
    client = make_client(spooled_emulator, transport)
    errors: Collector[Exception] = Collector()
    client.on_error(errors)
    client.connect()
    spooled_emulator.wait_for_connections(1, transport=transport)
    spooled_emulator.revoke_api_key()
    spooled_emulator.drop_connections(transport)
    assert errors.wait_for(lambda items: any(isinstance(e, AuthError) for e in items))
    assert wait_until(lambda: client.health == "refused")
    accepted = spooled_emulator.connections_accepted(transport)
    logins = spooled_emulator.login_count
    time.sleep(0.5)  # well inside the first retry delay: nothing may be tried
    assert spooled_emulator.connections_accepted(transport) == accepted == 1
    assert spooled_emulator.login_count == logins <= 2  # one fresh login, then wait
    assert client.state is ConnectionState.RECONNECTING  # never given up
    assert client.stats.refused_until is not None
    spooled_emulator.restore_api_key()
    assert wait_until(lambda: client.state is ConnectionState.CONNECTED, timeout=10)
    assert client.health == "connected" and client.stats.refused_until is None
    assert spooled_emulator.login_count == logins + 1  # one retry, which worked
    refusals = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refusals) == 1, "one ERROR per refused attempt"
    assert "/api/v1/" in refusals[0].getMessage() and "Check SPOOLED_" in refusals[0].getMessage()
    assert spooled_emulator.api_key not in caplog.text
    assert "eyJ" not in caplog.text


def test_rate_limited_handshake_waits_retry_after(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    spooled_emulator.reject_next(2, 429, retry_after=0.4)
    client = make_client(spooled_emulator, transport)
    errors: Collector[Exception] = Collector()
    client.on_error(errors)
    started = time.monotonic()
    client.start()
    assert wait_until(lambda: client.state is ConnectionState.CONNECTED, timeout=5)
    assert time.monotonic() - started >= 0.8
    assert len(errors) == 2


def test_server_errors_are_retried(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    spooled_emulator.reject_next(3, 503)
    client = make_client(spooled_emulator, transport)
    client.start()
    assert wait_until(lambda: client.state is ConnectionState.CONNECTED, timeout=5)
    assert client.stats.connects == 1


def test_malformed_frames_are_counted_and_skipped(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    client = make_client(spooled_emulator, transport, max_frame_bytes=2000)
    seen: Collector[Event] = Collector()
    errors: Collector[Exception] = Collector()
    client.on_event(seen)
    client.on_error(errors)
    client.connect()
    spooled_emulator.wait_for_connections(1, transport=transport)
    spooled_emulator.publish_raw("this is not json")
    spooled_emulator.publish_raw('{"type":"JobCompleted","data":{"job_id":42}}')
    spooled_emulator.publish_raw('{"type":"JobCompleted","data":{"job_id":"' + "x" * 3000 + '"}}')
    if transport == "ws":
        spooled_emulator.publish_raw(b"\x00\x01binary", binary=True)
    spooled_emulator.publish("job.completed", job_id="good", queue_name="q", duration_ms=1)
    assert seen.wait_for(lambda items: any(e.job_id == "good" for e in items))
    expected = {"not_json": 1, "wrong_type": 1, "too_large": 1}
    if transport == "ws":
        expected["binary"] = 1
    assert client.stats.protocol_errors == expected
    assert all(isinstance(e, ProtocolError) for e in errors.items)
    assert client.state is ConnectionState.CONNECTED


def test_a_raising_handler_does_not_stop_the_others(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    client = make_client(spooled_emulator, transport)
    seen: Collector[Event] = Collector()

    @client.on_event
    def explode(event: Event) -> None:
        raise RuntimeError("handler bug")

    client.on_event(seen)
    client.connect()
    spooled_emulator.wait_for_connections(1, transport=transport)
    for n in range(3):
        spooled_emulator.publish("job.completed", job_id=f"j{n}", queue_name="q", duration_ms=1)
    assert seen.wait_for(lambda items: len(not_ping(items)) >= 3)
    assert client.stats.handler_errors >= 3
    assert client.state is ConnectionState.CONNECTED


def test_disconnect_during_backoff_returns_within_a_second(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    spooled_emulator.reject_next(100, 503)
    client = make_client(spooled_emulator, transport, reconnect_delay=10, max_reconnect_delay=30)
    errors: Collector[Exception] = Collector()
    client.on_error(errors)
    client.start()
    assert errors.wait_count(1)
    assert _timed_disconnect(client) < 1.0
    assert client.state is ConnectionState.DISCONNECTED


def test_disconnect_during_a_stall_returns_within_a_second(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    client = make_client(spooled_emulator, transport)
    client.connect()
    spooled_emulator.wait_for_connections(1, transport=transport)
    spooled_emulator.stall(True)
    time.sleep(0.2)
    assert _timed_disconnect(client) < 1.0


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers."""
    server = RawServer()
    yield server.base_url
    server.close()


def test_disconnect_while_connecting_to_a_silent_server(silent_server: str, transport: str) -> None:
    # A static JWT so no login is attempted; the handshake itself hangs.
    token = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln"
    client = create_client(
        ConnectionOptions(base_url=silent_server, token=token, connect_timeout=30), transport
    )  # type: ignore[arg-type]
    client.start()
    time.sleep(0.3)
    assert client.state is ConnectionState.CONNECTING
    assert _timed_disconnect(client) < 1.0


def test_disconnect_is_idempotent_and_context_manager_closes(
    spooled_emulator: Emulator, make_options: OptionsFactory, transport: str
) -> None:
    options = make_options(spooled_emulator)
    client = WebSocketClient(options) if transport == "ws" else SSEClient(options)
    with client:
        assert client.state is ConnectionState.CONNECTED
        assert spooled_emulator.wait_for_connections(1, transport=transport)
    assert client.state is ConnectionState.DISCONNECTED
    client.disconnect()
    client.disconnect()
    assert wait_until(lambda: spooled_emulator.connections_current(transport) == 0)


def test_secrets_stay_out_of_reprs(spooled_emulator: Emulator, make_client: ClientFactory) -> None:
    client = make_client(spooled_emulator, "ws")
    client.connect()
    text = repr(client) + repr(client.options) + str(client.options.model_dump())
    assert spooled_emulator.api_key not in text
    assert "eyJ" not in text


def _timed_disconnect(client: Any) -> float:
    started = time.monotonic()
    client.disconnect()
    return time.monotonic() - started


def test_websocket_commands_are_pascal_case_and_replayed_after_reconnect(
    spooled_emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(spooled_emulator, "ws")
    assert isinstance(client, WebSocketClient)
    client.subscribe(SubscriptionFilter(queue_name="emails"))  # before connect: sent on connect
    client.connect()
    client.subscribe(SubscriptionFilter(job_id="j1"))
    client.unsubscribe(SubscriptionFilter(job_id="j1"))
    expected = [
        {"cmd": "Subscribe", "queue": "emails"},
        {"cmd": "Subscribe", "job_id": "j1"},
        {"cmd": "Unsubscribe", "job_id": "j1"},
    ]
    assert wait_until(lambda: spooled_emulator.commands_received() == expected)
    spooled_emulator.drop_connections()
    replay = [*expected, {"cmd": "Subscribe", "queue": "emails"}]
    assert wait_until(lambda: spooled_emulator.commands_received() == replay)


def test_strict_backend_websocket_needs_both_credentials_and_delivers_every_type(
    spooled_emulator_strict: Emulator, make_client: ClientFactory
) -> None:
    emu = spooled_emulator_strict
    client = make_client(emu, "ws")
    seen: Collector[Event] = Collector()
    client.on_event(seen)
    client.connect()  # sends Bearer header and ?token=; strict mode refuses either alone
    assert seen.wait_for(lambda items: sum(e.type == "ping" for e in items) >= 2)  # two at connect
    for event_type, data in SAMPLE.items():
        emu.publish(event_type.value, **data)
    wanted = {t.value for t in SAMPLE}
    assert seen.wait_for(lambda items: wanted <= {e.type for e in items})
    assert client.stats.protocol_errors == {}


def test_batch_handlers_get_every_event_once_in_order_after_per_event_handlers(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    client = make_client(spooled_emulator, transport)
    singles: Collector[Event] = Collector()
    batches: Collector[list[Event]] = Collector()
    client.on_event(singles)
    client.on_events(batches)
    client.connect()
    spooled_emulator.wait_for_connections(1, transport=transport)
    for n in range(200):
        spooled_emulator.publish("job.completed", job_id=f"j{n}", queue_name="q", duration_ms=1)

    def flattened() -> list[Event]:
        return not_ping([event for batch in batches.items for event in batch])

    assert batches.wait_for(lambda _: len(flattened()) >= 200)
    assert [e.data["job_id"] for e in flattened()] == [f"j{n}" for n in range(200)]
    assert flattened() == not_ping(singles.items)[:200]  # the same objects, same order
    assert all(batch for batch in batches.items)  # never an empty call


def test_frame_handlers_get_undecoded_frames_that_decode_as_event_handlers_see_them(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    client = make_client(spooled_emulator, transport)
    frames: Collector[list[Any]] = Collector()
    client.on_frames(frames)
    client.connect()
    spooled_emulator.wait_for_connections(1, transport=transport)
    spooled_emulator.publish("job.completed", job_id="c1", queue_name="emails", duration_ms=1)
    spooled_emulator.publish_raw("this is not json")
    spooled_emulator.publish(
        "job.status", job_id="s1", queue_name="emails", old_status="processing", new_status="failed"
    )
    spooled_emulator.publish("job.completed", job_id="last", queue_name="emails", duration_ms=1)

    def received() -> list[Any]:
        return [frame for batch in frames.items for frame in batch]

    def payload(frame: Any) -> Any:  # WebSocket: the message's bytes; SSE: an SSEMessage
        return frame if isinstance(frame, bytes) else frame.data

    assert frames.wait_for(lambda _: any("last" in str(payload(f)) for f in received()))
    # nothing is decoded (or counted as delivered) until the consumer decodes
    assert client.stats.events_delivered == 0 and client.stats.protocol_errors == {}
    assert client.stats.frames_received == len(received())
    events = not_ping([event for frame in received() for event in client.decode_frame(frame)])
    assert [(e.type, e.job_id) for e in events] == [
        ("job.completed", "c1"),
        ("job.status", "s1"),
        ("job.failed", "s1"),  # the lifecycle event the status change means
        ("job.completed", "last"),
    ]
    assert client.stats.protocol_errors == {"not_json": 1}
    assert client.stats.events_delivered >= 4


def test_frame_handlers_and_event_handlers_cannot_share_a_client(
    spooled_emulator: Emulator, make_client: ClientFactory
) -> None:
    framed = make_client(spooled_emulator, "ws")
    framed.on_frames(lambda frames: None)
    with pytest.raises(ValueError, match="on_frames"):
        framed.on_event(lambda event: None)
    with pytest.raises(ValueError, match="on_frames"):
        framed.on_events(lambda events: None)
    with pytest.raises(ValueError, match="on_frames"):
        framed.on_job_event("job.completed", lambda event: None)
    handled = make_client(spooled_emulator, "sse")
    handled.on_event(lambda event: None)
    with pytest.raises(ValueError, match="on_frames"):
        handled.on_frames(lambda frames: None)


def test_per_job_stream_with_frame_handlers_still_ends_at_the_terminal_status(
    spooled_emulator: Emulator, make_client: ClientFactory
) -> None:
    job_id = spooled_emulator.create_job("emails", {"to": "a@example.com"})
    client = make_client(spooled_emulator, "sse")
    assert isinstance(client, SSEClient)
    frames: Collector[list[Any]] = Collector()
    states: Collector[ConnectionState] = Collector()
    client.on_frames(frames)
    client.on_state_change(states)
    client.connect_job(job_id)
    assert frames.wait_for(lambda items: len(items) >= 1)  # the first poll's snapshot
    spooled_emulator.set_job_status(job_id, "completed")
    assert states.wait_for(lambda items: items[-1:] == [ConnectionState.DISCONNECTED])
    events = [e for batch in frames.items for frame in batch for e in client.decode_frame(frame)]
    assert [e.type for e in events][-2:] == ["job.status", "job.completed"]
    time.sleep(0.3)  # a finished stream is not reopened
    assert spooled_emulator.connections_accepted("sse") == 1


def test_a_huge_frame_is_skipped_and_reading_goes_on(
    spooled_emulator: Emulator, make_client: ClientFactory, transport: str
) -> None:
    client, seen = listening(make_client, spooled_emulator, transport, max_frame_bytes=2000)
    huge = '{"type":"JobCompleted","data":{"job_id":"' + "x" * 4_000_000 + '"}}'
    spooled_emulator.publish_raw(huge)  # arrives over many socket reads
    spooled_emulator.publish("job.completed", job_id="after", queue_name="q", duration_ms=1)
    assert seen.wait_for(lambda items: any(e.job_id == "after" for e in items))
    assert client.stats.protocol_errors == {"too_large": 1}
    assert client.state is ConnectionState.CONNECTED
    assert client.stats.reconnects == 0
