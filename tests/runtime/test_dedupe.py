"""Duplicate window: both forms of one transition, snapshots, retries, expiry, bounds."""

from __future__ import annotations

import pytest

from spooled_integrations.runtime import DuplicateFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dedupe(clock: Clock) -> DuplicateFilter:
    return DuplicateFilter(window=60.0, clock=clock)


def failed_direct(make_event, job="j1", retry=1):
    return make_event("JobFailed", job_id=job, queue_name="q", error="boom", retry_count=retry)


def failed_derived(make_events, job="j1", old="processing"):
    status, derived = make_events(
        "JobStatusChange", job_id=job, queue_name="q", old_status=old, new_status="failed"
    )
    assert derived.type == "job.failed" and derived.retry_count is None
    return status, derived


def test_direct_then_derived_form_is_one_transition(dedupe, make_event, make_events):
    assert not dedupe.is_duplicate(failed_direct(make_event))
    status, derived = failed_derived(make_events)
    assert not dedupe.is_duplicate(status)  # job.status is its own type
    assert dedupe.is_duplicate(derived)


def test_derived_then_direct_form_is_one_transition(dedupe, make_event, make_events):
    _, derived = failed_derived(make_events)
    assert not dedupe.is_duplicate(derived)
    assert dedupe.is_duplicate(failed_direct(make_event, retry=3))


def test_distinct_retries_are_distinct_failures(dedupe, make_event):
    assert not dedupe.is_duplicate(failed_direct(make_event, retry=1))
    assert not dedupe.is_duplicate(failed_direct(make_event, retry=2))
    assert dedupe.is_duplicate(failed_direct(make_event, retry=2))
    assert not dedupe.is_duplicate(failed_direct(make_event, job="j2", retry=2))


def test_sse_snapshot_after_reconnect_is_suppressed(dedupe, make_events, clock):
    first = make_events(
        "JobStatusChange", job_id="j", queue_name="q", old_status="", new_status="processing"
    )
    assert [dedupe.is_duplicate(e) for e in first] == [False, False]
    clock.now += 5  # reconnect: the stream re-sends the current status with old_status ""
    again = make_events(
        "JobStatusChange", job_id="j", queue_name="q", old_status="", new_status="processing"
    )
    assert [dedupe.is_duplicate(e) for e in again] == [True, True]
    moved = make_events(
        "JobStatusChange",
        job_id="j",
        queue_name="q",
        old_status="processing",
        new_status="completed",
    )
    assert [dedupe.is_duplicate(e) for e in moved] == [False, False]


def test_a_real_second_failure_after_the_window_is_not_suppressed(dedupe, make_events, clock):
    _, derived = failed_derived(make_events)
    assert not dedupe.is_duplicate(derived)
    clock.now += 59.9
    assert dedupe.is_duplicate(failed_derived(make_events)[1])
    clock.now += 0.2  # 60.1 s after the first one: the duplicate did not extend the window
    assert not dedupe.is_duplicate(failed_derived(make_events)[1])


def test_other_event_types_are_never_duplicates(dedupe, make_event):
    for _ in range(2):
        assert not dedupe.is_duplicate(make_event("QueueStats", queue_name="q", pending=1))
        assert not dedupe.is_duplicate(
            make_event("WorkerRegistered", worker_id="w", queue_name="q")
        )
        assert not dedupe.is_duplicate(make_event("JobProgress", job_id="j", progress=0.5))


def test_window_zero_disables(clock, make_event):
    off = DuplicateFilter(window=0, clock=clock)
    assert not off.is_duplicate(failed_direct(make_event))
    assert not off.is_duplicate(failed_direct(make_event))


def test_memory_is_bounded_by_time_and_size(clock, make_event):
    capped = DuplicateFilter(window=60.0, max_entries=100, clock=clock)
    for i in range(1000):
        capped.is_duplicate(make_event("JobCompleted", job_id=f"j{i}", queue_name="q"))
    assert 50 <= len(capped) <= 100
    # the oldest were evicted by the cap, the newest are still remembered
    assert not capped.is_duplicate(make_event("JobCompleted", job_id="j0", queue_name="q"))
    assert capped.is_duplicate(make_event("JobCompleted", job_id="j999", queue_name="q"))
    clock.now += 61  # one window: still held, no longer a duplicate
    assert not capped.is_duplicate(make_event("JobCompleted", job_id="j999", queue_name="q"))
    clock.now += 121  # two windows: every old entry is gone
    capped.is_duplicate(make_event("JobCompleted", job_id="fresh", queue_name="q"))
    assert len(capped) == 1


def test_an_entry_in_the_old_generation_still_counts_within_the_window(clock, make_event):
    dedupe = DuplicateFilter(window=60.0, clock=clock)
    assert not dedupe.is_duplicate(failed_direct(make_event, job="a"))
    clock.now += 40
    assert not dedupe.is_duplicate(failed_direct(make_event, job="b"))
    clock.now += 30  # a rotation: "a" (70 s old) and "b" (30 s) are in the old generation
    assert not dedupe.is_duplicate(failed_direct(make_event, job="a"))
    assert dedupe.is_duplicate(failed_direct(make_event, job="b"))


def test_invalid_settings():
    with pytest.raises(ValueError):
        DuplicateFilter(window=-1)
    with pytest.raises(ValueError):
        DuplicateFilter(max_entries=0)


def test_expired_entries_are_forgotten_once_a_window_even_after_a_key_came_back(clock, make_event):
    dedupe = DuplicateFilter(window=60.0, clock=clock)  # cleaned up at t=1000
    clock.now = 1010
    assert not dedupe.is_duplicate(completed_event(make_event, "a"))
    clock.now = 1065  # a clean-up (drops what was seen before 1005: nothing)
    assert not dedupe.is_duplicate(completed_event(make_event, "b"))
    clock.now = 1071  # a expired, still held: recorded again, after b
    assert not dedupe.is_duplicate(completed_event(make_event, "a"))
    clock.now = 1126  # a clean-up: b (1065) has expired, a (1071) has not
    assert not dedupe.is_duplicate(completed_event(make_event, "c"))
    assert len(dedupe) == 2  # a and c
    assert dedupe.is_duplicate(completed_event(make_event, "a"))


def test_a_table_of_one_still_remembers_the_last_entry(clock, make_event):
    tiny = DuplicateFilter(window=60.0, max_entries=1, clock=clock)
    for job in ("a", "b", "c"):
        assert not tiny.is_duplicate(completed_event(make_event, job))
        assert tiny.is_duplicate(completed_event(make_event, job))


def completed_event(make_event, job):
    return make_event("JobCompleted", job_id=job, queue_name="q")
