"""The takeover split, without a network: which shadowed events a new leader runs,
which it counts as maybe lost, and which it leaves to the old leader."""

from __future__ import annotations

from typing import Any

import pytest

from spooled_integrations.protocol import Event
from spooled_integrations.runtime.coordination import CoordinationConfig
from spooled_integrations.runtime.coordination.lease import (
    LeaseCoordinator,
    _Record,
    _Shadowed,
    _Takeover,
)

pytest.importorskip("redis")


def coordinator(**config: Any) -> LeaseCoordinator:
    # Building a coordinator does no I/O: nothing listens on port 9.
    return LeaseCoordinator(CoordinationConfig(redis_url="redis://127.0.0.1:9/0", **config))


def shadow(times: list[float]) -> list[_Shadowed]:
    events = [
        Event("job.completed", {"job_id": f"j{i}", "seq": i}, "JobCompleted")
        for i in range(len(times))
    ]
    return [_Shadowed(t, e, (), False) for t, e in zip(times, events, strict=True)]


def seqs(items: list[_Shadowed]) -> list[int]:
    return [item.event.data["seq"] for item in items]


TIMES = [10.0 + i * 0.1 for i in range(30)]  # received at 10.0, 10.1, ... 12.9


def test_the_last_recorded_event_splits_exactly_and_its_lag_widens_the_margin() -> None:
    lease = coordinator(takeover_skew=0.25)
    # The old leader got j5 at 10.4 (this node: 10.5, lag 0.1) and promised to stop
    # dispatching what it received after 11.5.
    record = _Record(holder="old", w=10.4, key="job.completed:j5", s=11.5, final=False)
    replay, maybe, unknown = lease._split(shadow(TIMES), _Takeover(record, own=False))
    assert seqs(maybe) == list(range(6, 19))  # after j5, up to 11.5 + 0.1 + 0.25
    assert seqs(replay) == list(range(19, 30))
    assert unknown == 0
    assert lease.status()["takeover_lag"] == pytest.approx(0.1)


def test_a_clean_handover_leaves_no_window() -> None:
    lease = coordinator()
    record = _Record(holder="old", w=10.5, key="job.completed:j5", s=10.5, final=True)
    replay, maybe, _ = lease._split(shadow(TIMES), _Takeover(record, own=False))
    assert maybe == [] and seqs(replay) == list(range(6, 30))


def test_without_the_recorded_event_times_decide_with_a_wide_margin() -> None:
    lease = coordinator(takeover_skew=0.1)
    record = _Record(holder="old", w=11.0, key="job.completed:gone", s=11.5, final=True)
    for item in shadow([9.5, 9.52, 10.05, 10.06, 10.07]):  # pushed out of a full shadow
        lease._evict(item, "full")
    assert len(lease._evicted) == 2  # 0.1 s buckets, not one entry per event
    replay, maybe, unknown = lease._split(shadow(TIMES[5:]), _Takeover(record, own=False))
    # 1 s either side: [10.0, 12.5] may have run; after 12.5 it cannot have.
    assert seqs(maybe) == list(range(0, 21))
    assert seqs(replay) == list(range(21, 25))
    assert unknown == 3  # the evictions from 10.05 lie inside the window; 9.5x do not


def test_no_previous_leader_or_this_node_itself_means_run_everything() -> None:
    lease = coordinator()
    items = shadow(TIMES[:5])
    assert lease._split(items, _Takeover(None, own=False)) == (items, [], 0)
    mine = _Record(holder=lease.token, w=0, key="", s=0, final=False)
    assert lease._split(items, _Takeover(mine, own=True)) == (items, [], 0)


def test_a_takeover_lost_before_it_starts_waits_for_the_next_acquisition() -> None:
    """Taken, lost and taken back before the dispatch thread got to it: nothing runs
    while it is lost, and the foreign holder before it still decides what runs."""
    import time

    from spooled_integrations.runtime.coordination import DispatchHooks

    lease = coordinator()
    ran: list[int] = []
    lease.attach(
        DispatchHooks(
            publish=lambda sub, event: ran.append(event.data["seq"]),
            drop=lambda event, reason, detail: None,
            progress=lambda: (0.0, None),
        )
    )
    now = time.monotonic()
    lease._shadow.extend(shadow([now - 1 + i * 0.05 for i in range(10)]))  # held as a standby
    lease._publish_all = lambda event, subs: ran.append(event.data["seq"])  # type: ignore[method-assign]
    foreign = _Record(holder="old", w=now - 0.8, key="job.completed:j4", s=now - 0.8, final=True)
    lease._become_leader(time.monotonic(), _Takeover(foreign, own=False), "test")
    with lease._lock:
        lease._leader = False  # lost before the dispatch thread started the takeover
    lease.poll()
    assert ran == [] and len(lease._shadow) == 10 and not lease.is_leader
    own = _Record(holder=lease.token, w=0, key="", s=0, final=False)
    lease._become_leader(time.monotonic(), _Takeover(own, own=True), "test")
    lease.poll()
    assert ran == [5, 6, 7, 8, 9]  # j0..j4 were the old holder's; nothing twice
    assert lease.is_leader
