"""The dispatch stage: signals, routing, publish retries, overflow, staleness, stop."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from spooled_integrations.errors import PublishError
from spooled_integrations.protocol import Event
from spooled_integrations.runtime import (
    Dispatcher,
    DuplicateFilter,
    RecordingPublisher,
    RetryPolicy,
    Router,
)
from spooled_integrations.runtime.signals import event_dropped, receiver_failed, spooled_signal

FAST = RetryPolicy(attempts=3, budget=5.0, initial_delay=0.01, max_delay=0.02, jitter=0)

SUBS = [
    {"name": "emails", "events": ["job.completed"], "queue": "emails", "task": "t.emails"},
    {"name": "data", "events": ["job.*"], "actor": "a.jobs", "payload": "data"},
    {"name": "signals-only", "events": ["*"]},
]


@pytest.fixture
def dispatchers() -> Iterator[list[Dispatcher]]:
    made: list[Dispatcher] = []
    yield made
    for dispatcher in made:
        dispatcher.stop(timeout=2.0)


@pytest.fixture
def make_dispatcher(dispatchers):
    def factory(subs: Any = SUBS, **kwargs: Any) -> Dispatcher:
        kwargs.setdefault("retry", FAST)
        dispatcher = Dispatcher(Router(subs), **kwargs)
        dispatchers.append(dispatcher)
        dispatcher.start()
        return dispatcher

    return factory


class Gate:
    """A spooled_signal receiver that blocks the dispatch thread until opened."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, sender: Any, **kw: Any) -> None:
        self.entered.set()
        self.opened.wait(10)


def completed(make_event, job="j1", queue="emails", **extra: Any) -> Event:
    return make_event("JobCompleted", job_id=job, queue_name=queue, **extra)


def test_events_are_signalled_routed_and_published(make_dispatcher, make_event, record):
    signals_seen = record(spooled_signal)
    publisher = RecordingPublisher()
    dispatcher = make_dispatcher(publisher=publisher)
    event = completed(make_event)
    other = completed(make_event, job="j2", queue="sms")

    assert dispatcher.submit(event) and dispatcher.submit(other)
    assert publisher.wait_for(3)
    assert signals_seen.wait_count(2)

    assert signals_seen.senders == ["job.completed", "job.completed"]
    assert signals_seen.kwarg("event") == [event, other]
    assert publisher.targets() == ["task:t.emails", "actor:a.jobs", "actor:a.jobs"]
    first, second, _ = publisher.calls
    assert first.payload == event.to_dict() and first.event is event
    assert second.payload == dict(event.data)
    assert json.loads(json.dumps([c.payload for c in publisher.calls]))
    report = dispatcher.stop(timeout=2)
    counts = dispatcher.metrics.snapshot()
    assert (report.left, report.timed_out) == (0, False)
    assert counts["received"] == 2 and counts["dispatched"] == 2
    assert counts["signals_sent"] == 2 and counts["published"] == 3
    assert counts["dropped"] == {}


def test_a_raising_receiver_does_not_stop_dispatch(make_dispatcher, make_event, record):
    failures = record(receiver_failed)
    publisher = RecordingPublisher()
    dispatcher = make_dispatcher(publisher=publisher)

    def bad(sender: Any, **kw: Any) -> None:
        raise RuntimeError("nope")

    with spooled_signal.connected_to(bad):
        dispatcher.submit(completed(make_event))
        assert publisher.wait_for(2)
        dispatcher.stop(2)
    assert dispatcher.metrics.get("receiver_failures") == 1
    assert failures.senders == [spooled_signal]


def test_a_batch_that_does_not_fit_keeps_what_fits_and_counts_the_rest(
    make_dispatcher, make_event, record
):
    dropped = record(event_dropped)
    seen: list[str] = []
    gate = Gate()
    dispatcher = make_dispatcher(subs=[], queue_size=4)

    def note(sender: Any, event: Any, **kw: Any) -> None:
        seen.append(event.data["job_id"])

    with spooled_signal.connected_to(gate), spooled_signal.connected_to(note):
        dispatcher.submit(completed(make_event, job="first"))
        assert gate.entered.wait(5)
        batch = [completed(make_event, job=f"j{i}") for i in range(6)]
        assert dispatcher.submit_many(batch) == 4
        assert dispatcher.depth == 4
        assert dispatcher.submit_many([completed(make_event, job="late")]) == 0
        gate.opened.set()
        dispatcher.stop(5)

    assert sorted(seen) == sorted(["first", "j0", "j1", "j2", "j3"])
    assert dispatcher.metrics.get("received") == 8
    assert dispatcher.metrics.dropped("overflow") == 3
    assert [e.data["job_id"] for e in dropped.kwarg("event")] == ["j4", "j5", "late"]
    assert dispatcher.depth == 0


def test_overflow_is_counted_and_signalled_without_blocking(make_dispatcher, make_event, record):
    dropped = record(event_dropped)
    gate = Gate()
    dispatcher = make_dispatcher(subs=[], queue_size=3)
    with spooled_signal.connected_to(gate):
        dispatcher.submit(completed(make_event, job="first"))
        assert gate.entered.wait(5)  # the thread holds "first"; the queue is empty again
        events = [completed(make_event, job=f"j{i}") for i in range(10)]
        started = time.monotonic()
        accepted = [dispatcher.submit(e) for e in events]
        assert time.monotonic() - started < 0.5  # never blocks the reader
        gate.opened.set()
        dispatcher.stop(5)

    assert accepted == [True] * 3 + [False] * 7
    assert dispatcher.metrics.dropped("overflow") == 7
    assert dropped.kwarg("reason") == ["overflow"] * 7
    assert dropped.kwarg("event") == events[3:]
    assert dropped.senders == [dispatcher] * 7
    assert dispatcher.metrics.get("dispatched") == 4


def test_publish_failure_is_retried_then_counted_and_signalled(make_dispatcher, make_event, record):
    dropped = record(event_dropped)
    publisher = RecordingPublisher(fail_times=100)
    dispatcher = make_dispatcher(
        subs=[{"name": "x", "events": ["job.completed"], "task": "t.x"}], publisher=publisher
    )
    event = completed(make_event)
    dispatcher.submit(event)
    assert dropped.wait_count(1)
    dispatcher.stop(2)

    assert publisher.attempts == 3
    assert dispatcher.metrics.get("publish_retries") == 2
    assert dispatcher.metrics.dropped("publish_failed") == 1
    assert dropped.kwarg("reason") == ["publish_failed"]
    assert dropped.kwarg("event") == [event]
    assert "x (task:t.x)" in dropped.kwarg("detail")[0]
    assert "after 3 attempts" in dropped.kwarg("detail")[0]


def test_publish_recovers_within_the_budget(make_dispatcher, make_event):
    publisher = RecordingPublisher(fail_times=2)
    dispatcher = make_dispatcher(
        subs=[{"events": ["job.completed"], "task": "t"}], publisher=publisher
    )
    dispatcher.submit(completed(make_event))
    assert publisher.wait_for(1)
    dispatcher.stop(2)
    assert dispatcher.metrics.get("publish_retries") == 2
    assert dispatcher.metrics.get("published") == 1
    assert dispatcher.metrics.dropped("publish_failed") == 0


def test_the_time_budget_bounds_retries(make_dispatcher, make_event, record):
    dropped = record(event_dropped)
    publisher = RecordingPublisher(fail_times=100)
    slow = RetryPolicy(attempts=50, budget=0.3, initial_delay=0.1, max_delay=0.1, jitter=0)
    dispatcher = make_dispatcher(
        subs=[{"events": ["job.completed"], "task": "t"}], publisher=publisher, retry=slow
    )
    started = time.monotonic()
    dispatcher.submit(completed(make_event))
    assert dropped.wait_count(1)
    assert time.monotonic() - started < 1.0
    assert 2 <= publisher.attempts <= 4


def test_stale_events_are_dropped_globally_and_per_subscription(
    make_dispatcher, make_event, record
):
    dropped = record(event_dropped)
    seen = record(spooled_signal)
    publisher = RecordingPublisher()
    now = 1_714_557_600.0  # 2024-05-01T10:00:00Z
    dispatcher = make_dispatcher(
        subs=[
            {"name": "fresh-only", "events": ["job.completed"], "task": "t.fresh", "max_age": 10},
            {"name": "any-age", "events": ["job.completed"], "task": "t.any"},
        ],
        publisher=publisher,
        max_age=60,
        wall_clock=lambda: now,
    )
    recent = completed(make_event, job="recent", timestamp="2024-05-01T09:59:55Z")
    older = completed(make_event, job="older", timestamp="2024-05-01T09:59:30Z")
    ancient = completed(make_event, job="ancient", timestamp="2024-05-01T09:00:00Z")
    undated = completed(make_event, job="undated")
    for event in (recent, older, ancient, undated):
        dispatcher.submit(event)
    dispatcher.stop(2)

    assert [(c.event.job_id, c.target) for c in publisher.calls] == [
        ("recent", "task:t.fresh"),
        ("recent", "task:t.any"),
        ("older", "task:t.any"),
        ("undated", "task:t.fresh"),
        ("undated", "task:t.any"),
    ]
    assert [e.job_id for e in seen.kwarg("event")] == ["recent", "older", "undated"]
    assert dispatcher.metrics.dropped("stale") == 2
    assert dropped.kwarg("reason") == ["stale", "stale"]
    assert [e.job_id for e in dropped.kwarg("event")] == ["older", "ancient"]
    assert "fresh-only" in dropped.kwarg("detail")[0]


def test_duplicates_are_suppressed_before_signals(make_dispatcher, make_event, make_events, record):
    seen = record(spooled_signal)
    dispatcher = make_dispatcher(subs=[], dedupe=DuplicateFilter(window=60))
    direct = make_event("JobFailed", job_id="j", queue_name="q", error="x", retry_count=1)
    status, derived = make_events(
        "JobStatusChange", job_id="j", queue_name="q", old_status="processing", new_status="failed"
    )
    for event in (direct, status, derived, status, derived):
        dispatcher.submit(event)
    dispatcher.stop(2)
    assert seen.kwarg("event") == [direct, status]
    assert dispatcher.metrics.get("duplicates_suppressed") == 3


def test_stop_drains_the_queue_within_its_timeout(make_dispatcher, make_event, record):
    seen = record(spooled_signal)
    gate = Gate()
    dispatcher = make_dispatcher(subs=[])
    with spooled_signal.connected_to(gate, sender="job.started"):
        dispatcher.submit(make_event("JobStarted", job_id="blocker", queue_name="q"))
        assert gate.entered.wait(5)
        for i in range(200):
            dispatcher.submit(completed(make_event, job=f"j{i}"))
        threading.Timer(0.2, gate.opened.set).start()
        started = time.monotonic()
        report = dispatcher.stop(timeout=5)
    assert time.monotonic() - started < 5
    assert (report.left, report.timed_out) == (0, False)
    assert report.drained == 201
    assert len(seen.calls) == 201


def test_stop_reports_what_it_could_not_drain(make_dispatcher, make_event, record):
    dropped = record(event_dropped)
    gate = Gate()
    dispatcher = make_dispatcher(subs=[])
    try:
        with spooled_signal.connected_to(gate):
            dispatcher.submit(completed(make_event, job="stuck"))
            assert gate.entered.wait(5)
            for i in range(5):
                dispatcher.submit(completed(make_event, job=f"j{i}"))
            started = time.monotonic()
            report = dispatcher.stop(timeout=0.3)
            elapsed = time.monotonic() - started
    finally:
        gate.opened.set()
    assert 0.25 < elapsed < 1.0
    assert report.timed_out and report.left == 6 and report.drained == 0
    assert dispatcher.metrics.dropped("stopped") == 6
    assert dropped.kwarg("event") == [None] and dropped.kwarg("reason") == ["stopped"]
    assert dispatcher.stop(timeout=0) is report  # idempotent
    assert not dispatcher.submit(completed(make_event, job="late"))
    assert dispatcher.metrics.dropped("stopped") == 7


def test_stop_interrupts_a_publish_backoff(make_dispatcher, make_event):
    publisher = RecordingPublisher(fail_times=100)
    patient = RetryPolicy(attempts=10, budget=60, initial_delay=30, max_delay=30, jitter=0)
    dispatcher = make_dispatcher(
        subs=[{"events": ["job.completed"], "task": "t"}], publisher=publisher, retry=patient
    )
    dispatcher.submit(completed(make_event))
    deadline = time.monotonic() + 5
    while publisher.attempts == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    report = dispatcher.stop(timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert report.timed_out and report.left == 1
    time.sleep(0.1)
    assert not dispatcher.running  # the backoff sleep woke up and the thread ended
    assert publisher.attempts == 1


def test_no_publisher_means_publish_failed(make_dispatcher, make_event):
    dispatcher = make_dispatcher(subs=[{"events": ["job.completed"], "task": "t"}])
    dispatcher.submit(completed(make_event))
    dispatcher.stop(2)
    assert dispatcher.metrics.dropped("publish_failed") == 1


def test_lifecycle_rules(make_event):
    dispatcher = Dispatcher(Router([]))
    assert not dispatcher.submit(completed(make_event))  # not started
    assert dispatcher.metrics.dropped("stopped") == 1
    dispatcher.start()
    dispatcher.start()
    assert dispatcher.running
    report = dispatcher.stop(1)
    assert (report.drained, report.left, report.timed_out) == (0, 0, False)
    assert not dispatcher.running
    with pytest.raises(RuntimeError):
        dispatcher.start()
    assert Dispatcher(Router([])).stop(1).to_dict() == {"drained": 0, "left": 0, "timed_out": False}


def test_retry_policy_delays():
    policy = RetryPolicy(initial_delay=0.5, max_delay=3, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1, 2, 3, 3]
    jittered = RetryPolicy(initial_delay=1, max_delay=1, jitter=0.5)
    assert all(0.5 <= jittered.delay(1) <= 1 for _ in range(100))
    for bad in ({"attempts": 0}, {"budget": -1}, {"jitter": 2}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


def test_recording_publisher_validates_targets():
    from spooled_integrations.runtime import load_subscriptions

    publisher = RecordingPublisher(known_targets={"task:t.known", "a.known"})
    subs = load_subscriptions(
        [
            {"events": ["job.completed"], "task": "t.known"},
            {"events": ["job.completed"], "actor": "a.known"},
            {"name": "x", "events": ["job.completed"], "task": "t.unknown"},
            {"events": ["job.completed"]},
        ]
    )
    assert publisher.validate(subs) == [
        "subscriptions[2] (name='x'): unknown target 'task:t.unknown'"
    ]
    assert RecordingPublisher().validate(subs) == []
    failing = RecordingPublisher(fail_times=1, error=lambda: PublishError("broker down"))
    with pytest.raises(PublishError, match="broker down"):
        failing.publish(subs[0], {}, None)  # type: ignore[arg-type]


def test_stop_from_a_receiver_does_not_deadlock(make_dispatcher, make_event, record):
    seen = record(spooled_signal)
    dispatcher = make_dispatcher(subs=[])
    reports = []
    gate = Gate()

    def stopper(sender: Any, **kw: Any) -> None:
        gate.opened.wait(5)  # let the test queue more events behind this one
        reports.append(dispatcher.stop(timeout=5))

    with spooled_signal.connected_to(stopper, sender="job.started"):
        dispatcher.submit(make_event("JobStarted", job_id="stop-now", queue_name="q"))
        for i in range(3):
            dispatcher.submit(completed(make_event, job=f"j{i}"))
        gate.opened.set()
        deadline = time.monotonic() + 5
        while dispatcher.running and time.monotonic() < deadline:
            time.sleep(0.01)
    assert not dispatcher.running
    assert [(r.left, r.timed_out) for r in reports] == [(3, False)]
    assert [e.job_id for e in seen.kwarg("event")] == ["stop-now"]
    assert dispatcher.stop(1) is reports[0]
    assert dispatcher.metrics.dropped("stopped") == 3


def test_concurrent_stops_share_one_report(make_dispatcher, make_event):
    gate = Gate()
    dispatcher = make_dispatcher(subs=[])
    reports: list[Any] = []
    with spooled_signal.connected_to(gate):
        dispatcher.submit(completed(make_event))
        assert gate.entered.wait(5)
        for i in range(4):
            dispatcher.submit(completed(make_event, job=f"j{i}"))
        threads = [
            threading.Thread(target=lambda: reports.append(dispatcher.stop(0.2))) for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        gate.opened.set()
    assert len(reports) == 3 and all(r is reports[0] for r in reports)
    assert dispatcher.metrics.dropped("stopped") == reports[0].left == 5


def test_frames_are_decoded_on_the_dispatch_thread_and_a_failing_decode_skips_one(
    make_dispatcher, make_event, record
):
    signals_seen = record(spooled_signal)
    dispatcher = make_dispatcher(subs=[], skip_ping=True)
    threads: set[str] = set()
    frames = {
        "a": [completed(make_event, job="a")],
        "ping": [make_event("Ping")],
        "both": make_event_pair(make_event),
        "c": [completed(make_event, job="c")],
    }

    def decode(frame: str) -> list[Event]:
        threads.add(threading.current_thread().name)
        if frame == "broken":
            raise RuntimeError("decoder bug")
        return frames[frame]

    assert dispatcher.submit_frames(["a", "ping", "broken", "both", "c"], decode) == 5
    assert signals_seen.wait_count(4)
    assert [e.data["job_id"] for e in signals_seen.kwarg("event")] == ["a", "s", "s", "c"]
    assert threads == {"spooled-dispatch"}
    report = dispatcher.stop(timeout=2)
    counts = dispatcher.metrics.snapshot()
    assert report.left == 0 and counts["received"] == 4 and counts["dispatched"] == 4
    assert counts["protocol_errors"] == {"decode_failed": 1}
    assert dispatcher.last_event_at is not None and dispatcher.last_event_at <= time.time()


def test_refused_frames_are_decoded_so_each_event_is_dropped_and_signalled(
    make_dispatcher, make_event, record
):
    dropped = record(event_dropped)
    gate = Gate()
    dispatcher = make_dispatcher(subs=[], queue_size=1)
    with spooled_signal.connected_to(gate):
        dispatcher.submit_frames(["held"], lambda frame: [completed(make_event, job=frame)])
        assert gate.entered.wait(5)
        queued = dispatcher.submit_frames(
            ["q", "x", "y"], lambda frame: [completed(make_event, job=frame)] * 2
        )
        gate.opened.set()
    assert queued == 1
    assert [kw["event"].data["job_id"] for _, kw in dropped.calls] == ["x", "x", "y", "y"]
    assert {kw["reason"] for _, kw in dropped.calls} == {"overflow"}
    assert dispatcher.metrics.dropped("overflow") == 4


def make_event_pair(make_event) -> list[Event]:
    """A status change and the lifecycle event it means: one frame, two events."""
    status = make_event(
        "JobStatusChange", job_id="s", queue_name="q", old_status="processing", new_status="failed"
    )
    return [status, make_event("JobFailed", job_id="s", queue_name="q", error="x")]


def test_submitters_on_several_threads_share_the_queue_size_exactly(
    make_dispatcher, make_event, record
):
    """The reader and a catch-up sweep (or any caller) may submit at once: what was
    queued and what was dropped add up, with the size limit held exactly."""
    dropped = record(event_dropped)
    gate = Gate()
    dispatcher = make_dispatcher(subs=[], queue_size=1000)
    with spooled_signal.connected_to(gate, sender="job.started"):
        dispatcher.submit(make_event("JobStarted", job_id="blocker", queue_name="q"))
        assert gate.entered.wait(5)
        accepted: list[int] = []

        def submitter(name: str) -> None:
            count = 0
            for i in range(500):
                count += dispatcher.submit_many([completed(make_event, job=f"{name}-{i}")])
            accepted.append(count)

        threads = [threading.Thread(target=submitter, args=(f"t{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(accepted) == 1000 and dispatcher.depth == 1000
        assert dispatcher.metrics.dropped("overflow") == 1000
        gate.opened.set()
        report = dispatcher.stop(timeout=10)
    assert report.left == 0 and report.drained + dispatcher.metrics.get("dispatched") >= 1000
    assert dispatcher.metrics.get("received") == 2001
    assert len(dropped.calls) == 1000
