"""DramatiqPublisher: boot-time checks, and the message each routed event becomes."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import dramatiq
import pytest
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker

from spooled_integrations.dramatiq import DramatiqPublisher, SpooledMiddleware
from spooled_integrations.protocol import Event, format_timestamp, normalize
from spooled_integrations.runtime import Subscription


@pytest.fixture
def broker() -> StubBroker:
    broker = StubBroker()
    broker.emit_after("process_boot")

    @dramatiq.actor(broker=broker, queue_name="failures")
    def on_failed(event: dict[str, Any]) -> None: ...

    @dramatiq.actor(broker=broker, queue_name="audit")
    def audit(event: dict[str, Any]) -> None: ...

    yield broker
    broker.close()


def sub(**fields: Any) -> Subscription:
    return Subscription(**{"events": ["job.failed"], "actor": "on_failed", **fields})


def failed_event(seconds_ago: float = 0.0) -> Event:
    moment = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    frame = {
        "type": "job.failed",
        "timestamp": format_timestamp(moment),
        "data": {"job_id": "j1", "queue_name": "emails", "error": "boom", "retry_count": 0},
    }
    return normalize(json.dumps(frame))[0]


def only_message(broker: StubBroker, queue: str) -> Message[Any]:
    queued = list(broker.queues[queue].queue)
    assert len(queued) == 1, f"{queue}: {len(queued)} messages"
    return Message.decode(queued[0])


# -- validate -----------------------------------------------------------------------


def test_valid_subscriptions_have_no_problem(broker: StubBroker) -> None:
    publisher = DramatiqPublisher(broker)
    subs = [
        sub(),
        sub(actor="audit", options={"queue_name": "failures", "delay": 1000, "max_retries": 0}),
        sub(options={"time_limit": 1000, "on_failure": "audit"}),
        Subscription(events=["job.completed"]),  # signal-only
    ]
    assert publisher.validate(subs) == []


def test_unknown_actor_is_refused_with_a_suggestion(broker: StubBroker) -> None:
    [problem] = DramatiqPublisher(broker).validate([sub(actor="on_faild")])
    assert problem.startswith("subscriptions[0].actor: no actor 'on_faild'")
    assert "did you mean 'on_failed'?" in problem


def test_undeclared_queue_is_refused(broker: StubBroker) -> None:
    [problem] = DramatiqPublisher(broker).validate(
        [sub(name="to-nowhere", options={"queue": "nowhere"})]
    )
    assert problem.startswith("subscriptions[0] (name='to-nowhere').options.queue: queue 'nowhere'")
    assert "not declared" in problem
    assert "audit, failures" in problem


def test_every_option_problem_is_listed(broker: StubBroker) -> None:
    problems = DramatiqPublisher(broker).validate(
        [
            sub(options={"queue": "failures", "queue_name": "failures"}),
            sub(options={"delay": -5}),
            sub(options={"retries": 3}),
            sub(options={"priority": "high"}),
            sub(options={"priority": 1, "broker_priority": 2}),
            sub(options={"on_success": "ghost"}),
            sub(options={"queue_name": "failures.DQ"}),
            Subscription(events=["job.failed"], task="billing.on_failed"),
        ]
    )
    text = "\n".join(problems)
    assert len(problems) == 8, text
    assert "subscriptions[0].options: give queue_name or queue, not both" in text
    assert "subscriptions[1].options.delay: must be a number of milliseconds" in text
    assert "subscriptions[2].options.retries: no middleware on this broker reads" in text
    assert "max_retries" in problems[2]  # the known options are listed
    assert "subscriptions[3].options.priority: must be an integer" in text
    assert "subscriptions[4].options: give priority or broker_priority" in text
    assert "subscriptions[5].options.on_success: no actor 'ghost'" in text
    assert "subscriptions[6].options.queue_name: 'failures.DQ' is a delay" in text
    assert "subscriptions[7].task: 'billing.on_failed' is a Celery target" in text


def test_priority_without_a_priority_broker_warns(
    broker: StubBroker, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = DramatiqPublisher(broker)
    with caplog.at_level(logging.WARNING, "spooled_integrations.dramatiq.publisher"):
        assert publisher.validate([sub(options={"priority": 3})]) == []
        assert publisher.validate([sub(options={"priority": 3})]) == []  # the runtime re-checks
    assert caplog.text.count("only RabbitmqBroker(max_priority=N) honours") == 1


# -- publish --------------------------------------------------------------------------


def test_event_payload_goes_to_the_actors_queue_as_plain_json(broker: StubBroker) -> None:
    event = failed_event()
    subscription = sub()
    sent = DramatiqPublisher(broker).publish(subscription, subscription.build_payload(event), event)
    message = only_message(broker, "failures")
    assert sent == message.message_id  # what event_published and status report
    assert message.actor_name == "on_failed"
    assert message.kwargs == {}
    [payload] = message.args
    assert payload == json.loads(json.dumps(event.to_dict()))
    assert payload["type"] == "job.failed"
    assert payload["data"]["error"] == "boom"
    assert message.options == {}


def test_options_pass_through(broker: StubBroker) -> None:
    event = failed_event()
    subscription = sub(
        payload="data",
        options={"queue_name": "audit", "delay": 60_000, "priority": 4, "max_retries": 1},
    )
    before = int(time.time() * 1000)
    DramatiqPublisher(broker).publish(subscription, subscription.build_payload(event), event)
    message = only_message(broker, "audit.DQ")  # delayed messages wait in the delay queue
    assert message.args == ({**event.data},)
    assert message.options["broker_priority"] == 4
    assert message.options["max_retries"] == 1
    assert message.options["eta"] >= before + 60_000
    assert broker.queues["failures"].qsize() == 0


def test_max_age_becomes_what_is_left_of_it_in_milliseconds(broker: StubBroker) -> None:
    event = failed_event(seconds_ago=20)
    subscription = sub(max_age=60)
    DramatiqPublisher(broker).publish(subscription, {}, event)
    max_age = only_message(broker, "failures").options["max_age"]
    assert 39_000 <= max_age <= 40_100


def test_an_explicit_max_age_option_wins(broker: StubBroker) -> None:
    subscription = sub(max_age=60, options={"max_age": 5_000})
    DramatiqPublisher(broker).publish(subscription, {}, failed_event())
    assert only_message(broker, "failures").options["max_age"] == 5_000


def test_an_age_limited_message_is_skipped_by_the_worker(broker: StubBroker) -> None:
    """The mapping matters: Dramatiq's AgeLimit reads message.options['max_age'] in ms."""
    ran: list[Any] = []

    @dramatiq.actor(broker=broker, queue_name="aged")
    def aged(event: dict[str, Any]) -> None:
        ran.append(event)

    subscription = sub(actor="aged", max_age=10)
    DramatiqPublisher(broker).publish(subscription, {"n": 1}, failed_event(seconds_ago=9.99))
    DramatiqPublisher(broker).publish(subscription, {"n": 2}, failed_event(seconds_ago=0))
    time.sleep(0.05)  # the first message's 1 ms of age budget is gone
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        broker.join("aged", timeout=5_000, fail_fast=False)
        worker.join()
    finally:
        worker.stop()
    assert ran == [{"n": 2}]


def test_a_misspelt_option_gets_its_suggestion_not_the_whole_list(broker: StubBroker) -> None:
    (typo,) = DramatiqPublisher(broker).validate([sub(options={"max_retires": 3})])
    assert typo.endswith("this message option (did you mean 'max_retries'?)"), typo
    broker.add_middleware(SpooledMiddleware())  # its spooled_* actor options are not for messages
    assert "spooled_events" in broker.actor_options
    (far,) = DramatiqPublisher(broker).validate([sub(options={"zzz": 1})])
    listed = far.split("message options: ")[1]
    assert "max_retries" in listed and "delay" in listed
    assert "retry_when" not in listed and "throws" not in listed  # a message cannot carry them
    assert "spooled_" not in listed
