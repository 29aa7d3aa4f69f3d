"""spooled_signal senders and aliases; send_isolated's failure isolation."""

from __future__ import annotations

import gc
import logging
from typing import Any

import pytest

from spooled_integrations.protocol import EventType
from spooled_integrations.runtime import signals
from spooled_integrations.runtime.signals import (
    receiver_failed,
    send_event,
    send_isolated,
    spooled_signal,
    stream_gap,
)


def test_connect_receives_every_event_with_canonical_sender(record, make_event):
    everything = record(spooled_signal)
    completed = make_event("JobCompleted", job_id="j1", queue_name="q")
    joined = make_event("WorkerRegistered", worker_id="w1", queue_name="q")
    unknown = make_event("SomethingNew", x=1)

    for event in (completed, joined, unknown):
        assert send_isolated(spooled_signal, event.type, event=event) == (1, 0)

    assert everything.senders == ["job.completed", "worker.joined", "SomethingNew"]
    assert everything.kwarg("event") == [completed, joined, unknown]


@pytest.mark.parametrize(
    "alias", ["job.completed", "JobCompleted", "jobcompleted", EventType.JOB_COMPLETED]
)
def test_connect_via_alias_resolves_to_canonical_sender(record, make_event, alias):
    via_alias = record(spooled_signal, sender=alias)
    completed = make_event("JobCompleted", job_id="j1", queue_name="q")
    failed = make_event("JobFailed", job_id="j1", queue_name="q", error="x", retry_count=0)

    send_isolated(spooled_signal, completed.type, event=completed)
    send_isolated(spooled_signal, failed.type, event=failed)

    assert via_alias.senders == ["job.completed"]
    assert via_alias.kwarg("event") == [completed]


def test_sending_with_an_alias_reaches_canonical_receivers(record):
    joined = record(spooled_signal, sender="worker.joined")
    spooled_signal.send("worker.registered", event=None)
    send_isolated(spooled_signal, "WorkerRegistered", event=None)
    assert joined.senders == ["worker.joined", "worker.joined"]


def test_connect_via_decorator_and_disconnect_use_the_alias_too():
    seen: list[Any] = []

    @spooled_signal.connect_via("JobStatusChange")
    def on_status(sender: Any, **kw: Any) -> None:
        seen.append(sender)

    try:
        assert spooled_signal.has_receivers_for("job.status")
        spooled_signal.send("job.status_changed")
    finally:
        spooled_signal.disconnect(on_status, sender="job.status")
    spooled_signal.send("job.status")
    assert seen == ["job.status"]


def test_a_raising_receiver_is_reported_and_the_others_run(record, make_event, caplog):
    failures = record(receiver_failed)
    good = record(spooled_signal)
    boom = RuntimeError("receiver exploded")

    def bad(sender: Any, **kw: Any) -> None:
        raise boom

    event = make_event("JobCompleted", job_id="j1", queue_name="q")
    with spooled_signal.connected_to(bad), caplog.at_level(logging.ERROR):
        ok, failed = send_isolated(spooled_signal, event.type, event=event)

    assert (ok, failed) == (1, 1)
    assert len(good.calls) == 1
    assert failures.senders == [spooled_signal]
    _, report = failures.calls[0]
    assert report["receiver"] is bad
    assert report["event"] is event
    assert report["exception"] is boom
    record_ = next(r for r in caplog.records if "failed" in r.getMessage())
    assert record_.exc_info is not None and record_.exc_info[1] is boom
    assert "bad" in record_.getMessage()


def test_a_raising_receiver_failed_receiver_does_not_recurse(caplog):
    calls: list[str] = []

    def bad_event_receiver(sender: Any, **kw: Any) -> None:
        calls.append("event")
        raise ValueError("first")

    def bad_failure_receiver(sender: Any, **kw: Any) -> None:
        calls.append("failure")
        raise ValueError("second")

    with (
        spooled_signal.connected_to(bad_event_receiver),
        receiver_failed.connected_to(bad_failure_receiver),
        caplog.at_level(logging.ERROR),
    ):
        assert send_isolated(spooled_signal, "job.completed", event=None) == (0, 1)

    assert calls == ["event", "failure"]
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert [str(e) for e in logged] == ["first", "second"]


def test_operational_signals_without_an_event_report_event_none(record):
    failures = record(receiver_failed)

    def bad(sender: Any, **kw: Any) -> None:
        raise KeyError("gap")

    with stream_gap.connected_to(bad):
        send_isolated(stream_gap, "runtime", disconnected_at=1, reconnected_at=2)
    assert failures.senders == [stream_gap]
    assert failures.kwarg("event") == [None]


def test_coroutine_receivers_count_as_failures_without_warnings(record):
    failures = record(receiver_failed)

    async def coro(sender: Any, **kw: Any) -> None:
        return None

    with spooled_signal.connected_to(coro):
        assert send_isolated(spooled_signal, "ping", event=None) == (0, 1)
    assert isinstance(failures.kwarg("exception")[0], TypeError)


def test_muted_signal_calls_nobody(record):
    rec = record(spooled_signal)
    with spooled_signal.muted():
        assert send_isolated(spooled_signal, "ping", event=None) == (0, 0)
    assert rec.calls == []


def test_weak_reference_rule_as_documented():
    seen: list[str] = []

    def connect_inside_a_function(weak: bool) -> Any:
        def receiver(sender: Any, **kw: Any) -> None:
            seen.append(f"weak={weak}")

        spooled_signal.connect(receiver, sender="queue.paused", weak=weak)
        return receiver

    connect_inside_a_function(weak=True)
    strong = connect_inside_a_function(weak=False)
    gc.collect()
    try:
        send_isolated(spooled_signal, "queue.paused", event=None)
    finally:
        spooled_signal.disconnect(strong)
    assert seen == ["weak=False"]
    assert "weak=False" in (signals.__doc__ or "")


def test_cached_receivers_follow_connects_disconnects_and_collected_receivers():
    """send_isolated caches receivers per sender; every change must still show."""
    seen: list[str] = []

    class Owner:
        def on_event(self, sender: Any, **kw: Any) -> None:
            seen.append("method")

    def plain(sender: Any, **kw: Any) -> None:
        seen.append("plain")

    def send() -> list[str]:
        seen.clear()
        send_isolated(spooled_signal, "JobCompleted", event=None)  # alias: same sender
        return sorted(seen)

    owner = Owner()
    spooled_signal.connect(owner.on_event, sender="job.completed")  # weak bound method
    assert send() == ["method"]
    spooled_signal.connect(plain, sender="job.completed", weak=False)
    assert send() == ["method", "plain"]  # a connect after the cache was filled
    del owner
    gc.collect()
    assert send() == ["plain"]  # the cache did not keep the collected owner alive
    spooled_signal.disconnect(plain)
    assert send() == []


def test_a_receiver_without_weak_reference_support_is_cached_strongly():
    calls: list[str] = []

    class Slotted:
        __slots__ = ()  # no __weakref__: blinker only takes it with weak=False

        def __call__(self, sender: Any, **kw: Any) -> None:
            calls.append(sender)

    receiver = Slotted()
    spooled_signal.connect(receiver, sender="queue.paused", weak=False)
    try:
        assert send_isolated(spooled_signal, "queue.paused", event=None) == (1, 0)
        assert send_isolated(spooled_signal, "queue.paused", event=None) == (1, 0)
    finally:
        spooled_signal.disconnect(receiver)
    assert send_isolated(spooled_signal, "queue.paused", event=None) == (0, 0)
    assert calls == ["queue.paused", "queue.paused"]


def test_isolated_sets_receivers_aside_and_puts_them_back(make_event):
    seen: list[str] = []

    def outside(sender, **kwargs):
        seen.append("outside")

    def inside(sender, **kwargs):
        seen.append("inside")

    spooled_signal.connect(outside, weak=False)
    try:
        with spooled_signal.isolated():
            assert not spooled_signal.has_receivers_for("job.completed")
            spooled_signal.connect_via("job.completed")(inside)
            send_event(make_event("JobCompleted", job_id="j1", queue_name="q"))
        assert seen == ["inside"]
        assert spooled_signal.has_receivers_for("job.completed")
        send_event(make_event("JobCompleted", job_id="j2", queue_name="q"))
        assert seen == ["inside", "outside"]
    finally:
        spooled_signal.disconnect(outside)


def test_the_isolation_fixture_hides_what_other_modules_connected(
    spooled_receivers_isolated: None,
) -> None:
    assert not spooled_signal.receivers
