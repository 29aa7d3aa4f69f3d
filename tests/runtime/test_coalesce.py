"""Both forms of one job transition become one event carrying the fields of both.

End to end: the emulator over real sockets (its default mode sends the status change
and then the direct ``JobCompleted``/``JobFailed``, and ``publish`` sends either form in
any order) and a real ``SpooledRuntime``. The line's rules (the bound, the learning,
retry counts) are checked on the :class:`Coalescer` itself with a given clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from spooled_integrations.client import ConnectionState
from spooled_integrations.protocol import Event, normalize
from spooled_integrations.protocol.models import CATCH_UP
from spooled_integrations.runtime import RecordingPublisher, SpooledRuntime
from spooled_integrations.runtime.coalesce import Coalescer, join
from spooled_integrations.runtime.dispatcher import Dispatcher
from spooled_integrations.runtime.metrics import Metrics
from spooled_integrations.runtime.router import Router
from spooled_integrations.runtime.signals import spooled_signal
from spooled_integrations.runtime.subscriptions import load_subscriptions
from spooled_integrations.testing import Emulator

from ..conftest import wait_until

RuntimeFactory = Callable[..., SpooledRuntime]
_QUIET = ("system.health", "ping")
# Where both forms come, a window longer than the default (50 ms): a loaded test machine
# may pause the reader thread between the two frames. Nothing waits it out here.
JOIN_WINDOW = 2.0


def frame(wire_type: str, **data: Any) -> list[Event]:
    """The events one backend frame becomes (a status change adds its derived event)."""
    return normalize(json.dumps({"type": wire_type, "data": data}).encode())


def status_change(job_id: str, new: str, old: str = "processing") -> list[Event]:
    return frame("JobStatusChange", job_id=job_id, queue_name="q", old_status=old, new_status=new)


def start_connected(runtime: SpooledRuntime, emu: Emulator) -> None:
    runtime.start()
    assert wait_until(lambda: runtime.state == ConnectionState.CONNECTED)
    assert emu.wait_for_connections(1, runtime.config.transport)


def events_of(recorder: Any) -> list[Event]:
    return [
        e for s, e in zip(recorder.senders, recorder.kwarg("event"), strict=True) if s not in _QUIET
    ]


def settle(emu: Emulator, recorder: Any, name: str) -> list[Event]:
    """Everything delivered before a sentinel published now (order is kept)."""
    emu.publish("worker.registered", worker_id=name, queue_name="q")
    assert recorder.wait_for(
        lambda calls: any(kw["event"].worker_id == name for _, kw in calls if kw.get("event"))
    )
    return [e for e in events_of(recorder) if e.worker_id != name]


def of_type(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e.type == kind]


# -- end to end: the emulator's own transitions ------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_failed_job_arrives_once_with_error_and_retry_count(
    transport: str, spooled_emulator: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    seen = record(spooled_signal)
    publisher = RecordingPublisher()
    runtime = make_runtime(
        spooled_emulator,
        publisher,
        transport=transport,
        subscriptions=[{"events": ["job.failed"], "task": "t.failed", "delivery": "every_node"}],
        coalesce_window=JOIN_WINDOW,
    )
    start_connected(runtime, spooled_emulator)

    job_id = spooled_emulator.run_job("emails", "failed", error="disk full")
    failed = of_type(settle(spooled_emulator, seen, "sentinel"), "job.failed")

    assert len(failed) == 1
    event = failed[0]
    assert event.data["error"] == "disk full"
    assert event.retry_count == 0
    assert (event.data["old_status"], event.data["new_status"]) == ("processing", "failed")
    assert (event.wire_type, event.derived_from, event.job_id) == ("JobFailed", None, job_id)
    assert event.identity_key == f"job.failed:{job_id}:0"
    assert publisher.wait_for(1)
    assert [call.payload["data"]["error"] for call in publisher.calls] == ["disk full"]
    counters = runtime.status()["counters"]
    assert (counters["coalesced"], counters["duplicates_suppressed"]) == (1, 0)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_completed_job_arrives_once_with_duration(
    transport: str, spooled_emulator: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    seen = record(spooled_signal)
    runtime = make_runtime(spooled_emulator, transport=transport, coalesce_window=JOIN_WINDOW)
    start_connected(runtime, spooled_emulator)

    job_id = spooled_emulator.run_job("emails", "completed")
    events = settle(spooled_emulator, seen, "sentinel")

    completed = of_type(events, "job.completed")
    assert len(completed) == 1
    assert isinstance(completed[0].data["duration_ms"], int)
    assert completed[0].data["new_status"] == "completed"
    assert completed[0].job_id == job_id
    # the job's whole story, in the order the stream carried it
    assert [e.type for e in events] == [
        "job.created",
        "job.status",
        "job.started",
        "job.status",
        "job.completed",
    ]


@pytest.mark.parametrize("direct_first", [True, False], ids=["direct-first", "status-first"])
@pytest.mark.parametrize("kind", ["completed", "failed"])
def test_either_arrival_order_gives_one_event_with_both_forms(
    direct_first: bool,
    kind: str,
    spooled_emulator: Emulator,
    make_runtime: RuntimeFactory,
    record: Any,
) -> None:
    seen = record(spooled_signal)
    runtime = make_runtime(spooled_emulator, coalesce_window=JOIN_WINDOW)
    start_connected(runtime, spooled_emulator)

    def direct() -> None:
        if kind == "completed":
            spooled_emulator.publish(
                "JobCompleted", job_id="j", queue_name="q", duration_ms=42, result={"ok": 1}
            )
        else:
            spooled_emulator.publish(
                "JobFailed", job_id="j", queue_name="q", error="x", retry_count=2
            )

    def status() -> None:
        spooled_emulator.publish(
            "JobStatusChange", job_id="j", queue_name="q", old_status="processing", new_status=kind
        )

    for send in (direct, status) if direct_first else (status, direct):
        send()
    events = settle(spooled_emulator, seen, "sentinel")

    lifecycle = of_type(events, f"job.{kind}")
    assert len(lifecycle) == 1
    data = lifecycle[0].data
    assert (data["old_status"], data["new_status"]) == ("processing", kind)
    if kind == "completed":
        assert (data["duration_ms"], data["result"]) == (42, {"ok": 1})
    else:
        assert (data["error"], data["retry_count"]) == ("x", 2)
    assert lifecycle[0].wire_type == ("JobCompleted" if kind == "completed" else "JobFailed")
    assert len(of_type(events, "job.status")) == 1
    assert runtime.status()["counters"]["coalesced"] == 1


def test_a_job_that_fails_twice_delivers_both_failures_with_their_errors(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    seen = record(spooled_signal)
    runtime = make_runtime(spooled_emulator, coalesce_window=JOIN_WINDOW)
    start_connected(runtime, spooled_emulator)

    job_id = spooled_emulator.create_job("emails")
    for status, error in [
        ("processing", None),
        ("failed", "first"),
        ("pending", None),  # retried: the emulator counts the retry
        ("processing", None),
        ("failed", "second"),
    ]:
        spooled_emulator.set_job_status(job_id, status, error=error)
    events = settle(spooled_emulator, seen, "sentinel")

    lifecycle = [e for e in events if e.type not in ("job.status", "job.created")]
    assert [(e.type, e.retry_count, e.data.get("error")) for e in lifecycle] == [
        ("job.started", None, None),
        ("job.failed", 0, "first"),
        ("job.retrying", None, None),
        # (the second job.started repeats the first's key within the duplicate window)
        ("job.failed", 1, "second"),
    ]


def test_order_is_kept_behind_a_waiting_form(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    seen = record(spooled_signal)
    runtime = make_runtime(spooled_emulator, coalesce_window=0.5)
    start_connected(runtime, spooled_emulator)
    emu = spooled_emulator

    emu.publish(
        "JobStatusChange",
        job_id="a",
        queue_name="q",
        old_status="processing",
        new_status="completed",
    )
    emu.publish("JobCompleted", job_id="b", queue_name="q", duration_ms=2)  # its twin never comes
    emu.publish("worker.registered", worker_id="w", queue_name="q")
    emu.publish("JobCompleted", job_id="a", queue_name="q", duration_ms=1)
    events = settle(emu, seen, "sentinel")

    assert [(e.type, e.job_id or e.worker_id) for e in events] == [
        ("job.status", "a"),
        ("job.completed", "a"),
        ("job.completed", "b"),
        ("worker.joined", "w"),
    ]
    assert events[1].data["duration_ms"] == 1
    assert "new_status" not in events[2].data


def test_one_form_alone_waits_the_window_then_goes_on(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    seen = record(spooled_signal, sender="job.completed")
    runtime = make_runtime(spooled_emulator, coalesce_window=0.3)
    start_connected(runtime, spooled_emulator)

    sent = time.monotonic()
    spooled_emulator.publish(
        "JobStatusChange",
        job_id="x",
        queue_name="q",
        old_status="processing",
        new_status="completed",
    )
    # released by the dispatch thread's own timer: nothing else is published
    assert seen.wait_count(1)
    assert time.monotonic() - sent >= 0.3
    event = seen.kwarg("event")[0]
    assert (event.derived_from, "duration_ms" in event.data) == ("job.status", False)
    assert runtime.status()["counters"]["coalesced"] == 0


def test_window_zero_keeps_the_first_form_alone(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    seen = record(spooled_signal)
    runtime = make_runtime(spooled_emulator, coalesce_window=0)
    start_connected(runtime, spooled_emulator)

    spooled_emulator.run_job("emails", "failed", error="disk full")
    failed = of_type(settle(spooled_emulator, seen, "sentinel"), "job.failed")

    assert len(failed) == 1
    assert failed[0].derived_from == "job.status"
    assert "error" not in failed[0].data
    counters = runtime.status()["counters"]
    assert (counters["coalesced"], counters["duplicates_suppressed"]) == (0, 1)


def test_stop_delivers_a_form_still_waiting(
    spooled_emulator: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    seen = record(spooled_signal)
    runtime = make_runtime(spooled_emulator, coalesce_window=60)
    start_connected(runtime, spooled_emulator)

    spooled_emulator.publish(
        "JobStatusChange",
        job_id="z",
        queue_name="q",
        old_status="processing",
        new_status="completed",
    )
    assert seen.wait_for(lambda calls: any(s == "job.status" for s, _ in calls))
    assert wait_until(lambda: runtime.status()["counters"]["received"] >= 2)
    assert of_type(events_of(seen), "job.completed") == []  # waiting for its twin

    report = runtime.stop(timeout=5)

    assert (report.left, report.timed_out) == (0, False)
    assert report.drained >= 1
    assert [e.job_id for e in of_type(events_of(seen), "job.completed")] == ["z"]
    assert runtime.status()["counters"]["dropped"] == {}


# -- the dispatcher: catch-up and progress -------------------------------------------------


def test_recovered_events_do_not_wait_and_come_after_what_waited(record: Any) -> None:
    seen = record(spooled_signal, sender="job.completed")
    dispatcher = Dispatcher(Router(load_subscriptions([])), coalesce_window=60)
    dispatcher.start()
    try:
        dispatcher.submit_many(frame("JobCompleted", job_id="live", queue_name="q", duration_ms=1))
        recovered = Event(
            "job.completed", {"job_id": "old", "queue_name": "q"}, "job.completed", None, CATCH_UP
        )
        done: list[int] = []
        dispatcher.submit_recovered([recovered], lambda new, _dups: done.append(new))
        assert wait_until(lambda: done == [1])
        assert [e.job_id for e in seen.kwarg("event")] == ["live", "old"]
    finally:
        dispatcher.stop(timeout=2)


def test_progress_does_not_claim_events_behind_a_waiting_one(record: Any) -> None:
    seen = record(spooled_signal)
    dispatcher = Dispatcher(Router(load_subscriptions([])), coalesce_window=60)
    dispatcher.start()
    before = time.monotonic()
    dispatcher.submit_many(frame("JobCompleted", job_id="a", queue_name="q", duration_ms=1))
    later = frame("WorkerRegistered", worker_id="w", queue_name="q")
    later_key = later[0].identity_key
    dispatcher.submit_many(later)
    assert wait_until(lambda: dispatcher.depth == 0 and dispatcher.progress()[0] >= before)

    at, key = dispatcher.progress()
    assert key is None  # "a" waits: the position stops at it
    assert at <= time.monotonic()
    assert seen.calls == []

    report = dispatcher.stop(timeout=2)
    assert report.left == 0
    assert [e.type for e in seen.kwarg("event")] == ["job.completed", "worker.joined"]
    assert dispatcher.progress()[1] == later_key


# -- the line itself, on a given clock ---------------------------------------------------


def make_coalescer(window: float = 0.05) -> tuple[Coalescer, Metrics]:
    metrics = Metrics()
    return Coalescer(window, metrics), metrics


def test_a_wait_ends_exactly_at_its_window() -> None:
    line, _ = make_coalescer(0.05)
    derived = status_change("j", "completed")[1]

    assert line.offer(derived, 10.0) == []
    assert line.next_deadline() == pytest.approx(10.05)
    assert line.due(10.049) == []
    assert line.due(10.05) == [(derived, 10.0)]
    assert len(line) == 0
    assert line.oldest is None


def test_a_form_that_came_alone_stops_waiting_until_the_other_form_shows_up() -> None:
    line, metrics = make_coalescer()
    first, second, third = (
        frame("JobCompleted", job_id=j, queue_name="q", duration_ms=1)[0] for j in "abc"
    )
    assert line.offer(first, 1.0) == []
    assert line.due(2.0) == [(first, 1.0)]  # no twin: direct forms go on at once now
    assert line.offer(second, 3.0) is None  # None: the event itself, at once

    status, derived = status_change("c", "completed")
    assert line.offer(status, 4.0) is None
    assert line.offer(derived, 4.0) == []  # status-change forms still wait
    assert line.offer(third, 4.01) == [(join(derived, third), 4.0)]
    fourth = frame("JobCompleted", job_id="d", queue_name="q", duration_ms=1)[0]
    assert line.offer(fourth, 5.0) == []  # a status-change form came: direct ones wait again
    assert metrics.get("coalesced") == 1


def test_retry_counts_must_agree_when_both_forms_know_one() -> None:
    line, metrics = make_coalescer()
    failed_2 = frame("JobFailed", job_id="j", queue_name="q", error="a", retry_count=2)[0]
    status_3 = normalize(
        json.dumps(
            {
                "type": "JobStatusChange",
                "data": {
                    "job_id": "j",
                    "queue_name": "q",
                    "old_status": "processing",
                    "new_status": "failed",
                    "retry_count": 3,
                },
            }
        ).encode()
    )
    assert line.offer(failed_2, 1.0) == []
    assert line.offer(status_3[0], 1.0) == []  # behind the waiting one
    ready = line.offer(status_3[1], 1.0)  # not its twin: the first goes on, this one waits
    assert ready == [(failed_2, 1.0), (status_3[0], 1.0)]
    assert line.flush() == [(status_3[1], 1.0)]
    assert metrics.get("coalesced") == 0


def test_the_direct_form_wins_for_fields_both_carry() -> None:
    status, derived = normalize(
        json.dumps(
            {
                "type": "JobStatusChange",
                "data": {
                    "job_id": "j",
                    "queue_name": "q",
                    "old_status": "processing",
                    "new_status": "failed",
                    "timestamp": "2026-01-01T00:00:00Z",
                },
            }
        ).encode()
    )
    direct = frame(
        "JobFailed",
        job_id="j",
        queue_name="q",
        error="e",
        retry_count=1,
        timestamp="2026-01-01T00:00:01Z",
    )[0]
    joined = join(direct, derived)
    assert joined == join(derived, direct)
    assert dict(joined.data) == {
        "job_id": "j",
        "queue_name": "q",
        "old_status": "processing",
        "new_status": "failed",
        "error": "e",
        "retry_count": 1,
        "timestamp": "2026-01-01T00:00:01Z",
    }
    assert (joined.raw_timestamp, joined.wire_type) == ("2026-01-01T00:00:01Z", "JobFailed")
    assert status.type == "job.status"


def test_recovered_and_other_events_never_wait_on_an_empty_line() -> None:
    line, _ = make_coalescer()
    recovered = Event("job.failed", {"job_id": "j"}, "job.failed", None, CATCH_UP)
    started = status_change("j", "processing", old="pending")[1]
    assert line.offer(recovered, 1.0) is None  # None: the event itself, at once
    assert line.offer(started, 1.0) is None
    assert len(line) == 0
