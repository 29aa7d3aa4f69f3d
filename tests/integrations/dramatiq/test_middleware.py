"""The fast tier: StubBroker, a real ``dramatiq.Worker`` in this process, the emulator as Spooled."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from spooled_integrations.dramatiq import (
    SpooledBootError,
    SpooledMiddleware,
    actor_subscriptions,
    spooled_listener,
)
from spooled_integrations.testing import Collector, Emulator

from .conftest import fast_connection

MakeBroker = Callable[..., tuple[StubBroker, SpooledMiddleware]]
StartWorker = Callable[[dramatiq.Broker], dramatiq.Worker]


def publish_failures(emu: Emulator, count: int, queue: str = "emails") -> list[str]:
    ids = [f"job-{queue}-{i}" for i in range(count)]
    for job_id in ids:
        emu.publish("job.failed", job_id=job_id, queue_name=queue, error="boom", retry_count=0)
    return ids


# -- actor options ------------------------------------------------------------------------


def test_actor_options_become_subscriptions(make_broker: MakeBroker) -> None:
    broker, _ = make_broker(enabled=False)

    @dramatiq.actor(broker=broker, spooled_events=["JobFailed"], spooled_queue="emails")
    def on_failed(event: dict[str, Any]) -> None: ...

    @dramatiq.actor(broker=broker)
    def unrelated() -> None: ...

    [subscription], problems = actor_subscriptions(broker)
    assert problems == []
    assert subscription.name == "actor:on_failed"
    assert subscription.actor == "on_failed"
    assert subscription.event_types == {"job.failed"}
    assert subscription.queue == "emails"


def test_actor_option_problems_use_the_option_names(make_broker: MakeBroker) -> None:
    broker, _ = make_broker(enabled=False)

    @dramatiq.actor(broker=broker, spooled_events=["job.faild"], spooled_payload="all")
    def bad_events(event: dict[str, Any]) -> None: ...

    @dramatiq.actor(broker=broker, spooled_queue="emails")
    def no_events(event: dict[str, Any]) -> None: ...

    subscriptions, problems = actor_subscriptions(broker)
    assert subscriptions == []
    text = "\n".join(problems)
    assert "actor 'bad_events': spooled_payload: Input should be 'event' or 'data'" in text
    assert "actor 'no_events': spooled_events: missing" in text


def test_spooled_actor_options_need_the_middleware_first() -> None:
    broker = StubBroker()
    with pytest.raises(ValueError, match="spooled_events"):

        @dramatiq.actor(broker=broker, spooled_events=["job.failed"])
        def too_early(event: dict[str, Any]) -> None: ...

    broker.close()


# -- routing through a real worker ----------------------------------------------------------


def test_events_run_the_routed_actor_once_each(
    make_broker: MakeBroker, start_worker: StartWorker, spooled_emulator: Emulator
) -> None:
    broker, middleware = make_broker(
        mode="every_process", connection=fast_connection(spooled_emulator)
    )
    received: Collector[dict[str, Any]] = Collector()

    @dramatiq.actor(
        broker=broker, queue_name="failures", spooled_events=["job.failed"], spooled_queue="emails"
    )
    def on_failed(event: dict[str, Any]) -> None:
        received(event)

    start_worker(broker)
    assert spooled_emulator.wait_for_connections(1, timeout=5)
    expected = publish_failures(spooled_emulator, 5)
    publish_failures(spooled_emulator, 2, queue="other")  # filtered out by spooled_queue
    spooled_emulator.publish("job.completed", job_id="done-1", queue_name="emails")

    assert received.wait_count(5, timeout=5)
    broker.join("failures", timeout=5_000)
    time.sleep(0.2)  # anything extra would have arrived by now
    events = received.items
    assert sorted(e["data"]["job_id"] for e in events) == sorted(expected)
    assert {e["type"] for e in events} == {"job.failed"}
    assert {e["wire_type"] for e in events} == {"JobFailed"}
    assert all(e["data"]["error"] == "boom" and e["data"]["queue_name"] == "emails" for e in events)
    status = middleware.status()
    assert status["connected"] is True and status["listening_here"] is True
    assert status["counters"]["published"] == 5


def test_configured_subscriptions_route_data_payloads_to_another_queue(
    make_broker: MakeBroker, start_worker: StartWorker, spooled_emulator: Emulator
) -> None:
    broker, _ = make_broker(
        mode="every_process",
        connection=fast_connection(spooled_emulator),
        subscriptions=[
            {
                "name": "failed-to-audit",
                "events": ["job.*"],
                "where": {"retry_count": 0},
                "actor": "audit",
                "payload": "data",
                "options": {"queue_name": "audit-slow"},
            }
        ],
    )
    received: Collector[tuple[str, dict[str, Any]]] = Collector()
    broker.declare_queue("audit-slow")

    @dramatiq.actor(broker=broker, queue_name="audit")
    def audit(data: dict[str, Any]) -> None:
        message = dramatiq.middleware.CurrentMessage.get_current_message()
        received((message.queue_name if message else "?", data))

    broker.add_middleware(dramatiq.middleware.CurrentMessage())
    start_worker(broker)
    assert spooled_emulator.wait_for_connections(1, timeout=5)
    spooled_emulator.publish("job.failed", job_id="j1", queue_name="q", error="x", retry_count=0)
    spooled_emulator.publish("job.failed", job_id="j2", queue_name="q", error="x", retry_count=1)
    assert received.wait_count(1, timeout=5)
    broker.join("audit-slow", timeout=5_000)
    time.sleep(0.2)
    [(queue, data)] = received.items
    assert queue == "audit-slow"
    assert data["job_id"] == "j1" and "type" not in data


def test_default_mode_listens_in_process_without_the_dramatiq_command(
    make_broker: MakeBroker, start_worker: StartWorker, spooled_emulator: Emulator
) -> None:
    broker, middleware = make_broker(connection=fast_connection(spooled_emulator))
    assert middleware.settings.mode == "fork"
    assert middleware.forks == [spooled_listener]
    start_worker(broker)
    assert spooled_emulator.wait_for_connections(1, timeout=5)
    assert middleware.status()["listening_here"] is True


def test_disabled_middleware_accepts_actor_options_and_never_connects(
    make_broker: MakeBroker, start_worker: StartWorker, spooled_emulator: Emulator
) -> None:
    broker, middleware = make_broker(enabled=False, connection=fast_connection(spooled_emulator))

    @dramatiq.actor(broker=broker, spooled_events=["job.failed"])
    def on_failed(event: dict[str, Any]) -> None: ...

    assert middleware.forks == []
    start_worker(broker)
    time.sleep(0.3)
    assert spooled_emulator.connections_accepted("ws") == 0
    assert middleware.status() == {
        "enabled": False,
        "mode": "fork",
        "running": False,
        "listening_here": False,
    }


# -- refusing to boot ----------------------------------------------------------------------


def test_boot_is_refused_with_every_problem_at_once(
    make_broker: MakeBroker, spooled_emulator: Emulator
) -> None:
    broker, middleware = make_broker(
        connection=fast_connection(spooled_emulator),
        subscriptions=[
            {"events": ["job.failed"], "actor": "on_faild"},
            {"events": ["job.failed"], "actor": "on_failed", "options": {"queue": "nowhere"}},
        ],
    )

    @dramatiq.actor(broker=broker, spooled_events=["job.nope"])
    def on_failed(event: dict[str, Any]) -> None: ...

    worker = dramatiq.Worker(broker, worker_timeout=100)
    with pytest.raises(SpooledBootError) as caught:
        worker.start()
    worker.stop()
    problems = caught.value.problems
    assert any("spooled_events[0]: unknown event 'job.nope'" in p for p in problems), problems
    assert middleware.check(broker) == problems
    # Fix the actor; now the subscriptions' own problems show, all of them.
    broker.actors.pop("on_failed")

    dramatiq.actor(broker=broker, actor_name="on_failed")(lambda event: None)

    problems = middleware.check(broker)
    assert len(problems) == 2, problems
    assert "no actor 'on_faild'" in problems[0] and "did you mean 'on_failed'?" in problems[0]
    assert "queue 'nowhere' is not declared" in problems[1]
    assert str(SpooledBootError(problems)).startswith(
        "2 problem(s) in the Spooled settings; the Spooled listener refused to boot:"
    )
    assert spooled_emulator.connections_accepted("ws") == 0


def test_boot_is_refused_without_credentials(make_broker: MakeBroker) -> None:
    broker, _ = make_broker(mode="every_process")
    worker = dramatiq.Worker(broker, worker_timeout=100)
    with pytest.raises(SpooledBootError, match="no Spooled credentials: set SPOOLED_API_KEY"):
        worker.start()
    worker.stop()


# -- stopping in time ----------------------------------------------------------------------


def test_worker_stops_promptly_while_the_server_is_stalled(
    make_broker: MakeBroker, spooled_emulator: Emulator
) -> None:
    broker, middleware = make_broker(
        mode="every_process", connection=fast_connection(spooled_emulator), shutdown_timeout=2
    )
    worker = dramatiq.Worker(broker, worker_timeout=100)
    worker.start()
    assert spooled_emulator.wait_for_connections(1, timeout=5)
    spooled_emulator.stall(True)
    time.sleep(0.3)
    began = time.monotonic()
    worker.stop()
    elapsed = time.monotonic() - began
    assert elapsed < 3.0, f"stopping took {elapsed:.2f}s"
    assert middleware.status()["running"] is False
    assert spooled_emulator.connections_current("ws") == 0 or _closes_soon(spooled_emulator)


def test_worker_stops_promptly_while_reconnecting(
    make_broker: MakeBroker, spooled_emulator: Emulator
) -> None:
    connection = fast_connection(spooled_emulator, reconnect_delay=30, max_reconnect_delay=60)
    broker, _ = make_broker(mode="every_process", connection=connection, shutdown_timeout=2)
    worker = dramatiq.Worker(broker, worker_timeout=100)
    worker.start()
    assert spooled_emulator.wait_for_connections(1, timeout=5)
    spooled_emulator.drop_connections()  # the client now waits ~30 s before reconnecting
    time.sleep(0.3)
    began = time.monotonic()
    worker.stop()
    elapsed = time.monotonic() - began
    assert elapsed < 3.0, f"stopping took {elapsed:.2f}s"


def _closes_soon(emu: Emulator) -> bool:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if emu.connections_current("ws") == 0:
            return True
        time.sleep(0.02)
    return False
