"""Catch-up in a coordinated fleet: claim fleets share the checkpoint, a lease leader sweeps.

Two runtimes in this process stand for two nodes: one listens over WebSocket and the
other over SSE, so the emulator can cut one node's stream and not the other's.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from spooled_integrations.client import ConnectionState
from spooled_integrations.runtime import RecordingPublisher, SpooledRuntime
from spooled_integrations.runtime.signals import caught_up
from spooled_integrations.testing import Emulator

from ..conftest import RuntimeFactory, wait_until
from .conftest import Recorder
from .test_catchup import complete_jobs

pytestmark = pytest.mark.redis

ONCE = {"events": ["job.completed"], "task": "once_task"}
EVERY = {"events": ["job.completed"], "task": "node_task", "delivery": "every_node"}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    # Frequent pings and keep-alives: a node's checkpoint position is its last frame.
    with Emulator(ping_interval=0.5, keepalive_interval=0.5) as emulator:
        yield emulator


def node(
    make_runtime: RuntimeFactory, emu: Emulator, coordination: dict[str, Any], **config: Any
) -> tuple[SpooledRuntime, RecordingPublisher]:
    publisher = RecordingPublisher()
    runtime = make_runtime(
        emu,
        publisher,
        subscriptions=[ONCE, EVERY],
        coordination=coordination,
        catch_up_poll="off",
        **config,
    )
    runtime.start()
    assert wait_until(lambda: runtime.state == ConnectionState.CONNECTED)
    return runtime, publisher


def tasks(publisher: RecordingPublisher, task: str) -> Counter[str]:
    return Counter(
        call.event.job_id or "" for call in publisher.calls if call.subscription.task == task
    )


def test_a_claim_node_back_from_a_long_gap_does_not_repeat_what_the_fleet_ran(
    emu: Emulator, make_runtime: RuntimeFactory, redis_url: str, record: Any
) -> None:
    """Claims live 2 s here; the node is away 7.5-10 s (longer than the 5 s skew the
    fleet position is read with). Without the fleet checkpoint the recovered events
    would find no claim and run their ``once`` task a second time."""
    coordination = {
        "strategy": "claim",
        "redis_url": redis_url,
        "namespace": f"t{uuid.uuid4().hex[:10]}",
        "claim_ttl": 2.0,
        "buffer_max_age": 1.0,
    }
    sweeps: Recorder = record(caught_up)
    steady, steady_runs = node(make_runtime, emu, coordination)
    away, away_runs = node(
        make_runtime,
        emu,
        coordination,
        transport="sse",
        connection={"reconnect_delay": 10.0, "max_reconnect_delay": 10.0},
    )
    time.sleep(1.5)  # both have written the fleet checkpoint
    emu.drop_connections("sse")
    assert wait_until(lambda: away.state != ConnectionState.CONNECTED)
    jobs = complete_jobs(emu, 5)
    assert wait_until(lambda: len(tasks(steady_runs, "once_task")) == 5)
    assert wait_until(lambda: away.state == ConnectionState.CONNECTED, 20)
    assert sweeps.wait_for(lambda calls: any(kw["recovered"] == 5 for _, kw in calls), 10)
    assert wait_until(lambda: len(tasks(away_runs, "node_task")) == 5)
    time.sleep(0.5)
    assert tasks(steady_runs, "once_task") == Counter(jobs)
    assert tasks(away_runs, "once_task") == Counter()  # the fleet had run them
    assert tasks(away_runs, "node_task") == Counter(jobs)  # its own rules still run
    assert all(c.event.replayed for c in away_runs.calls)
    assert steady.state == ConnectionState.CONNECTED


def test_with_a_lease_only_the_leader_sweeps(
    emu: Emulator, make_runtime: RuntimeFactory, redis_url: str, record: Any
) -> None:
    coordination = {
        "strategy": "lease",
        "redis_url": redis_url,
        "namespace": f"t{uuid.uuid4().hex[:10]}",
    }
    sweeps: Recorder = record(caught_up)
    leader, leader_runs = node(make_runtime, emu, coordination)
    assert wait_until(lambda: leader.status()["coordination"]["role"] == "leader")
    standby, standby_runs = node(make_runtime, emu, coordination, transport="sse")
    time.sleep(1.0)  # whatever the starts swept (the leader's, if it led by then) is done
    swept_before, requests_before = len(sweeps.calls), emu.counters["rest_list"]
    emu.reject_next(10, 503)
    emu.drop_connections("sse")  # the standby's gap: not swept
    assert wait_until(lambda: standby.state != ConnectionState.CONNECTED)
    complete_jobs(emu, 2)
    assert wait_until(lambda: standby.state == ConnectionState.CONNECTED, 15)
    time.sleep(1.0)
    assert len(sweeps.calls) == swept_before
    assert emu.counters["rest_list"] == requests_before
    emu.reject_next(10, 503)
    emu.drop_connections("ws")  # the leader's gap: swept by the leader
    assert wait_until(lambda: leader.state != ConnectionState.CONNECTED)
    missed = complete_jobs(emu, 3)
    assert sweeps.wait_for(lambda calls: len(calls) > swept_before, 15)
    assert wait_until(lambda: len(tasks(leader_runs, "once_task")) == 5)
    assert [kw["kind"] for _, kw in sweeps.calls[swept_before:]] == ["gap"]
    assert sweeps.calls[-1][1]["recovered"] == 3
    recovered = {c.event.job_id for c in leader_runs.calls if c.event.replayed}
    assert recovered == set(missed)
    assert tasks(standby_runs, "once_task") == Counter()
