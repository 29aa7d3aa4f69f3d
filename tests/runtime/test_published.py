"""The id of every published message: the ``event_published`` signal and ``last_published``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from spooled_integrations.protocol import Event
from spooled_integrations.runtime import Dispatcher, RecordingPublisher, RetryPolicy, Router
from spooled_integrations.runtime.signals import event_published
from spooled_integrations.runtime.subscriptions import Subscription

FAST = RetryPolicy(attempts=3, budget=5.0, initial_delay=0.01, max_delay=0.02, jitter=0)

SUBS = [
    {"name": "emails", "events": ["job.completed"], "queue": "emails", "task": "t.emails"},
    {"events": ["job.failed"], "actor": "a.failures"},
    {"name": "signals-only", "events": ["*"]},
]


@pytest.fixture
def dispatchers() -> Iterator[list[Dispatcher]]:
    made: list[Dispatcher] = []
    yield made
    for dispatcher in made:
        dispatcher.stop(timeout=2.0)


def _start(dispatchers: list[Dispatcher], publisher: Any, subs: Any = SUBS) -> Dispatcher:
    dispatcher = Dispatcher(Router(subs), publisher=publisher, retry=FAST, signal_sender="rt")
    dispatchers.append(dispatcher)
    dispatcher.start()
    return dispatcher


def test_each_publish_signals_its_message_id_and_status_keeps_the_last_per_rule(
    dispatchers, make_event, record
):
    published = record(event_published)
    publisher = RecordingPublisher(fail_times=1)  # the first attempt fails, then works
    dispatcher = _start(dispatchers, publisher)

    dispatcher.submit(make_event("JobCompleted", job_id="j1", queue_name="emails"))
    dispatcher.submit(make_event("JobFailed", job_id="j2", queue_name="emails", error="x"))
    dispatcher.submit(make_event("JobCompleted", job_id="j3", queue_name="emails"))
    assert published.wait_count(3)

    assert published.senders == ["rt"] * 3
    assert published.kwarg("message_id") == ["recorded-1", "recorded-2", "recorded-3"]
    assert published.kwarg("attempts") == [2, 1, 1]
    assert published.kwarg("target") == ["task:t.emails", "actor:a.failures", "task:t.emails"]
    assert [e.job_id for e in published.kwarg("event")] == ["j1", "j2", "j3"]
    assert [s.name for s in published.kwarg("subscription")] == ["emails", None, "emails"]

    last = dispatcher.last_published.snapshot()
    assert set(last) == {"emails", "actor:a.failures"}  # an unnamed rule: its target
    assert last["emails"]["message_id"] == "recorded-3"
    assert last["emails"]["job_id"] == "j3"
    assert last["emails"]["event"] == "job.completed"
    assert last["emails"]["target"] == "task:t.emails"
    assert last["emails"]["at"].endswith("Z")
    assert last["actor:a.failures"]["message_id"] == "recorded-2"


def test_a_failed_publish_is_not_signalled_as_published(dispatchers, make_event, record):
    published = record(event_published)
    publisher = RecordingPublisher(fail_times=FAST.attempts)
    dispatcher = _start(dispatchers, publisher)
    dispatcher.submit(make_event("JobCompleted", job_id="j1", queue_name="emails"))
    dispatcher.stop(5)
    assert dispatcher.metrics.dropped("publish_failed") == 1
    assert published.calls == []
    assert dispatcher.last_published.snapshot() == {}


class _NoIdPublisher:
    """A user's publisher from before publishes returned ids: it returns nothing useful."""

    name = "no-id"

    def validate(self, subscriptions: Any) -> list[str]:
        return []

    def publish(self, subscription: Subscription, payload: Any, event: Event) -> Any:
        return 42  # not a message id


def test_a_publisher_without_ids_publishes_with_message_id_none(dispatchers, make_event, record):
    published = record(event_published)
    dispatcher = _start(dispatchers, _NoIdPublisher())
    dispatcher.submit(make_event("JobCompleted", job_id="j1", queue_name="emails"))
    assert published.wait_count(1)
    assert published.kwarg("message_id") == [None]
    assert dispatcher.last_published.snapshot()["emails"]["message_id"] is None
