"""Faults, one test each, with an exact account of what ran.

Stream gaps (the server killed, a stall, a clean close, a 429 storm, 5xx on connect)
use real jobs (``JobFeed``), in both emulator modes: every job completed during the
test ran exactly once, those no stream heard arrived replayed by the catch-up, and
every sweep the catch-up reported was complete and covered them.

The other faults use sequence-numbered synthetic events (``SeqFeed``): each published
event ran exactly once, except those the emulator says no open stream accepted
(``SeqFeed.unheard``) and those a documented bounded buffer dropped -- which are
counted and signalled, event by event.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations.client import ConnectionState
from spooled_integrations.errors import AuthError, PublishError
from spooled_integrations.protocol import Event, parse_timestamp
from spooled_integrations.runtime import RecordingPublisher, SpooledRuntime, Subscription
from spooled_integrations.runtime.signals import (
    caught_up,
    receiver_failed,
    spooled_signal,
    stream_gap,
)
from spooled_integrations.testing import Emulator

from ..conftest import FAST_RECONNECT
from .conftest import (
    BOTH_MODES,
    Drops,
    JobFeed,
    Recorder,
    RedisServer,
    RuntimeFactory,
    SeqFeed,
    catch_up_config,
    seqs,
    wait_until,
)

ROUTE = [{"events": ["job.completed"], "task": "t"}]


def connected(runtime: SpooledRuntime, emu: Emulator, transport: str = "ws") -> bool:
    return wait_until(
        lambda: (
            runtime.state == ConnectionState.CONNECTED and emu.connections_current(transport) == 1
        )
    )


def start(
    make_runtime: RuntimeFactory, emu: Emulator, transport: str = "ws", **config: Any
) -> tuple[SpooledRuntime, RecordingPublisher]:
    publisher = RecordingPublisher()
    runtime = make_runtime(emu, publisher, subscriptions=ROUTE, transport=transport, **config)
    runtime.start()
    assert connected(runtime, emu, transport)
    return runtime, publisher


def assert_accounted(
    feed: SeqFeed, publisher: RecordingPublisher, *, dropped: list[int | None] = ()
) -> None:
    """Ran once each, in order; missing = unheard + counted drops, nothing else."""
    got = seqs(publisher)
    assert got == sorted(set(got)), "an event ran twice or out of order"
    missing = set(feed.all) - set(got)
    assert missing == set(feed.unheard) | set(dropped)  # type: ignore[arg-type]
    assert not set(feed.unheard) & set(dropped)  # type: ignore[arg-type]


def wait_ran(publisher: RecordingPublisher, feed: SeqFeed | JobFeed, timeout: float = 15.0) -> None:
    """Wait until everything due has run (heard events; every completed job)."""
    assert wait_until(lambda: set(feed.due) <= set(feed.ran(publisher)), timeout), (
        f"due but not run: {sorted(set(feed.due) - set(feed.ran(publisher)))}"
    )


def wait_gap_swept(
    runtime: SpooledRuntime, gaps: Recorder, sweeps: Recorder, timeout: float = 15.0
) -> None:
    """Wait until the last reconnect's stream gap has been swept, and the sweep's events
    dispatched and reported."""

    def swept() -> bool:
        reconnects = runtime.metrics.get("reconnects")
        ends = gaps.kwarg("reconnected_at")  # one per reconnect, signalled just after it
        return len(ends) >= reconnects >= 1 and any(
            info["kind"] == "gap" and parse_timestamp(info["until"]) >= ends[-1]
            for _, info in list(sweeps.calls)
        )

    assert wait_until(swept, timeout), f"the gap was not swept: {gaps.calls} {sweeps.calls}"


def assert_ran_once(feed: JobFeed, publisher: RecordingPublisher, sweeps: Recorder) -> None:
    """Every completed job ran once; those no stream heard came replayed by a complete
    sweep that covered them; every sweep reported was complete."""
    feed.settle(sweeps)
    assert Counter(feed.ran(publisher)) == Counter(feed.all), "a job ran twice or never"
    replayed = [call.event for call in publisher.calls if call.event.replayed]
    assert {event.job_id for event in replayed} >= set(feed.unheard)
    assert all(event.derived_from == "catch_up" for event in replayed)
    reports = [info for _, info in list(sweeps.calls)]
    assert reports, "no sweep reported"
    assert all(info["complete"] for info in reports), reports
    for job in feed.unheard:
        moment = feed.completed_at[job]
        assert any(
            parse_timestamp(info["since"]) <= moment <= parse_timestamp(info["until"])
            for info in reports
        ), f"no sweep covered {job} (completed {moment})"


# -- the connection -----------------------------------------------------------------------


@BOTH_MODES
@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_server_killed_and_restarted_mid_stream(
    emu: Emulator, make_runtime: RuntimeFactory, record: Any, transport: str
) -> None:
    gaps, sweeps = record(stream_gap), record(caught_up)
    runtime, publisher = start(make_runtime, emu, transport, **catch_up_config(emu))
    client = runtime.client
    assert client is not None
    feed = JobFeed(emu)
    feed.complete(10)
    wait_ran(publisher, feed)
    emu.stop()
    assert emu.connections_current(transport) == 0
    assert wait_until(lambda: runtime.state != ConnectionState.CONNECTED)  # noticed
    refused: list[Exception] = []
    client.on_error(refused.append)
    lost = feed.complete(5)  # nobody can be listening: the server is down
    assert feed.unheard[-5:] == lost
    assert wait_until(lambda: len(refused) >= 2)  # a few refused reconnects
    emu.start()
    assert connected(runtime, emu, transport)
    wait_gap_swept(runtime, gaps, sweeps)
    feed.complete(10)
    wait_ran(publisher, feed)
    assert_ran_once(feed, publisher, sweeps)
    assert runtime.status()["counters"]["reconnects"] == 1
    # One gap, whose window holds every lost job's completion.
    (_, gap), *rest = gaps.calls
    assert not rest
    for job in lost:
        assert gap["disconnected_at"] <= feed.completed_at[job] <= gap["reconnected_at"]


@BOTH_MODES
def test_stall_with_the_socket_open(
    emu: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    gaps, sweeps = record(stream_gap), record(caught_up)
    runtime, publisher = start(
        make_runtime, emu, connection={"liveness_timeout": 0.6}, **catch_up_config(emu)
    )
    client = runtime.client
    assert client is not None
    feed = JobFeed(emu)
    feed.complete(10)
    wait_ran(publisher, feed)
    emu.stall(True)
    stalled = feed.complete(5)
    assert feed.unheard[-5:] == stalled
    # Silence beyond the liveness timeout: the client gives up on the open socket.
    assert wait_until(lambda: client.stats.connects >= 2, 10.0)
    emu.stall(False)
    unstalled = datetime.now(timezone.utc)
    assert connected(runtime, emu)
    # A frame on the new connection: it is not one the stall will time out.
    assert wait_until(lambda: (client.stats.last_frame_at or unstalled) > unstalled)
    wait_gap_swept(runtime, gaps, sweeps)
    feed.complete(10)
    wait_ran(publisher, feed)
    assert_ran_once(feed, publisher, sweeps)
    assert runtime.status()["counters"]["reconnects"] >= 1


@BOTH_MODES
def up_for(runtime: SpooledRuntime) -> float:
    """Seconds the current connection has been up (0 when not connected)."""
    since = runtime.client.stats.connected_since if runtime.client is not None else None
    return 0.0 if since is None else (datetime.now(timezone.utc) - since).total_seconds()


def test_clean_close_reconnects_promptly_without_loss(
    emu: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    gaps, sweeps = record(stream_gap), record(caught_up)
    runtime, publisher = start(
        make_runtime,
        emu,
        connection={"reconnect_delay": 2.0, "max_reconnect_delay": 5.0},
        **catch_up_config(emu),
    )
    feed = JobFeed(emu)
    feed.complete(10)
    wait_ran(publisher, feed)
    # Only a healthy stream's close is followed by a prompt reconnect: one that carried
    # an event or was up healthy_after (a strict stream carries no job event).
    assert wait_until(lambda: up_for(runtime) > FAST_RECONNECT["healthy_after"] + 0.1)
    closed = time.monotonic()
    emu.close_streams()  # like the server's 30-minute cap
    feed.complete(5)  # while the listener reconnects: heard or not, each runs once
    assert wait_until(lambda: emu.connections_accepted("ws") == 2, 1.5)
    assert time.monotonic() - closed < 1.0  # not the 2 s failure backoff
    assert connected(runtime, emu)
    wait_gap_swept(runtime, gaps, sweeps)
    feed.complete(10)
    wait_ran(publisher, feed)
    assert_ran_once(feed, publisher, sweeps)


def test_api_key_revoked_mid_life_waits_without_a_reconnect_storm(
    emu: Emulator, make_runtime: RuntimeFactory
) -> None:
    # Catch-up off: this accounts for a listener refused on a revoked key -- the events
    # it loses while it waits for its slow retry (a minute away), its logins and its
    # connections; a job-list sweep (its requests, or events it could prove) must not
    # enter that account.
    runtime, publisher = start(make_runtime, emu, catch_up=False)
    feed = SeqFeed(emu)
    feed.publish(5)
    wait_ran(publisher, feed)
    emu.revoke_api_key()
    assert wait_until(lambda: runtime.health == "refused", 3.0)
    assert runtime.state == ConnectionState.RECONNECTING  # waiting, never given up
    client = runtime.client
    assert client is not None and isinstance(client.last_error, AuthError)
    logins, accepted = emu.login_count, emu.connections_accepted("ws")
    lost = feed.publish(5)
    time.sleep(1.0)
    assert (emu.login_count, emu.connections_accepted("ws")) == (logins, accepted)
    assert logins <= 2 and accepted == 1  # one fresh login, then wait
    assert feed.unheard == lost
    assert_accounted(feed, publisher)
    assert "401" in (runtime.status()["last_error"] or "")
    started = time.monotonic()
    runtime.stop(timeout=2)
    assert time.monotonic() - started < 1.0


@BOTH_MODES
def test_429_storm_waits_as_told_and_recovers_what_the_refusals_hid(
    emu: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    gaps, sweeps = record(stream_gap), record(caught_up)
    runtime, publisher = start(make_runtime, emu, **catch_up_config(emu))
    feed = JobFeed(emu)
    feed.complete(5)
    wait_ran(publisher, feed)
    emu.reject_next(6, 429, retry_after=0.15)
    refused_at = time.monotonic()
    emu.drop_connections()
    assert wait_until(lambda: emu.connections_current("ws") == 0)
    lost = feed.complete(5)
    assert feed.unheard[-5:] == lost
    assert connected(runtime, emu)
    assert time.monotonic() - refused_at >= 6 * 0.15 * 0.9  # Retry-After honoured each time
    assert emu.counters["rejected_by_fault"] == 6
    assert emu.connections_accepted("ws") == 2  # six refusals, one success: no storm
    wait_gap_swept(runtime, gaps, sweeps)
    feed.complete(5)
    wait_ran(publisher, feed)
    assert_ran_once(feed, publisher, sweeps)


@BOTH_MODES
def test_5xx_on_connect_is_retried_with_backoff(
    emu: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    sweeps = record(caught_up)
    emu.reject_next(3, 503)
    publisher = RecordingPublisher()
    runtime = make_runtime(emu, publisher, subscriptions=ROUTE, **catch_up_config(emu))
    feed = JobFeed(emu)
    runtime.start()
    lost = feed.complete(3)  # before the first successful connection
    assert feed.unheard == lost
    assert connected(runtime, emu)
    assert emu.counters["rejected_by_fault"] == 3
    client = runtime.client
    assert client is not None and client.stats.connects == 1
    feed.complete(10)
    wait_ran(publisher, feed)
    assert_ran_once(feed, publisher, sweeps)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_malformed_binary_and_oversized_frames_are_counted_and_skipped(
    emu: Emulator, make_runtime: RuntimeFactory, transport: str
) -> None:
    runtime, publisher = start(make_runtime, emu, transport, connection={"max_frame_bytes": 2000})
    feed = SeqFeed(emu)
    bad: list[tuple[str | bytes, bool]] = [
        ("this is not json", False),
        ('{"type":"JobCompleted","data":{"job_id":42}}', False),
        ('{"type":"JobCompleted","data":{"job_id":"' + "x" * 3000 + '"}}', False),
    ]
    if transport == "ws":
        bad.append((b"\x00\x01binary", True))
    for payload, binary in bad:
        feed.publish(3)
        emu.publish_raw(payload, binary=binary)
    feed.publish(3)
    wait_ran(publisher, feed)
    assert_accounted(feed, publisher)
    expected = {"not_json": 1, "wrong_type": 1, "too_large": 1}
    if transport == "ws":
        expected["binary"] = 1
    assert wait_until(lambda: runtime.status()["counters"]["protocol_errors"] == expected)
    client = runtime.client
    assert client is not None and client.stats.connects == 1  # never dropped the stream


# -- dispatch -------------------------------------------------------------------------------


class RedisListPublisher:
    """Publishes by ``RPUSH``ing the event's seq to a Redis list (a stand-in broker)."""

    name = "redis-list"

    def __init__(self, url: str, key: str) -> None:
        import redis

        self.key = key
        self.client = redis.Redis.from_url(url, socket_timeout=0.3, socket_connect_timeout=0.3)

    def validate(self, subscriptions: list[Subscription]) -> list[str]:
        return []

    def publish(self, subscription: Subscription, payload: Any, event: Event) -> None:
        import redis

        try:
            self.client.rpush(self.key, event.data["seq"])
        except redis.RedisError as exc:
            raise PublishError(f"broker unreachable: {type(exc).__name__}") from exc

    def delivered(self) -> list[int]:
        return [int(v) for v in self.client.lrange(self.key, 0, -1)]


@pytest.mark.redis
def test_broker_down_while_events_arrive(
    emu: Emulator, make_runtime: RuntimeFactory, private_redis: RedisServer, drops: Drops
) -> None:
    broker = RedisListPublisher(private_redis.url, "out")
    runtime = make_runtime(
        emu,
        broker,
        subscriptions=ROUTE,
        publish_attempts=100,
        # Long enough for a Redis restart on a busy host (phase 1 once lost an event
        # to a restart slower than a 1.5 s budget), short enough for phase 2.
        publish_budget=3.0,
        publish_backoff=0.05,
        publish_backoff_max=0.1,
    )
    runtime.start()
    assert connected(runtime, emu)
    feed = SeqFeed(emu)
    feed.publish(10)
    assert wait_until(lambda: broker.delivered() == feed.all)
    # 1. A short outage, inside the publish budget: retried, nothing lost.
    private_redis.kill()
    feed.publish(5)
    assert wait_until(lambda: runtime.metrics.get("publish_retries") >= 2)
    private_redis.start()  # an empty Redis: only what is published from now on
    assert wait_until(lambda: broker.delivered() == list(range(10, 15)), 5)
    # 2. An outage longer than the budget: each event is dropped, counted, signalled.
    private_redis.kill()
    feed.publish(2)
    assert wait_until(lambda: len(drops.seqs("publish_failed")) == 2, 10)
    private_redis.start()
    feed.publish(5)
    assert wait_until(lambda: broker.delivered() == list(range(17, 22)), 5)
    assert drops.seqs("publish_failed") == [15, 16]
    assert runtime.metrics.dropped("publish_failed") == 2
    assert runtime.metrics.get("published") == 20
    assert feed.unheard == []
    assert runtime.metrics.get("received") == 22  # the reader never stopped reading


def test_a_raising_receiver_loses_nothing(
    emu: Emulator, make_runtime: RuntimeFactory, record: Any
) -> None:
    failures = record(receiver_failed)

    def broken(sender: Any, **kw: Any) -> None:
        raise RuntimeError("receiver bug")

    runtime, publisher = start(make_runtime, emu)
    feed = SeqFeed(emu)
    with spooled_signal.connected_to(broken, sender="job.completed"):
        feed.publish(20)
        wait_ran(publisher, feed)
    assert_accounted(feed, publisher)
    assert runtime.status()["counters"]["receiver_failures"] == 20
    assert [kw["event"].data["seq"] for _, kw in failures.calls] == feed.all
    assert runtime.status()["counters"]["dropped"] == {}


def test_a_slow_receiver_backs_up_into_counted_drops(
    emu: Emulator, make_runtime: RuntimeFactory, drops: Drops
) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(sender: Any, event: Event, **kw: Any) -> None:
        if event.data["seq"] == 0:
            entered.set()
            release.wait(10)

    runtime, publisher = start(make_runtime, emu, queue_size=5)
    feed = SeqFeed(emu)
    with spooled_signal.connected_to(slow, sender="job.completed"):
        feed.publish(1)
        assert entered.wait(5)  # the dispatch thread is stuck in the receiver
        feed.publish(19)  # 5 fit in the queue, 14 overflow
        assert wait_until(lambda: runtime.metrics.dropped("overflow") == 14)  # reading goes on
        release.set()
        assert wait_until(lambda: len(seqs(publisher)) == 6)
    assert runtime.metrics.get("received") == 20
    overflow = drops.seqs("overflow")
    assert overflow == list(range(6, 20))  # the newest are dropped, each one signalled
    assert runtime.metrics.dropped("overflow") == 14
    assert_accounted(feed, publisher, dropped=overflow)


# -- the fleet -----------------------------------------------------------------------------

NODE = Path(__file__).with_name("fleet_node.py")


class Node:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(NODE)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line[:1] == ["READY"], line
        self.token = line[1]

    def finish(self) -> dict[str, Any]:
        import json

        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=15)
        status = next(line for line in out.splitlines() if line.startswith("STATUS "))
        result: dict[str, Any] = json.loads(status.removeprefix("STATUS "))
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.mark.redis
def test_leader_killed_with_sigkill_standby_takes_over_within_the_ttl(
    emu: Emulator, redis_url: str, namespace: str
) -> None:
    import redis

    ttl = 1.5
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    out, drop_key = f"{namespace}:out", f"{namespace}:drops"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")},
        "SPOOLED_BASE_URL": emu.base_url,
        "SPOOLED_API_KEY": emu.api_key,
        "NODE_REDIS": redis_url,
        "NODE_NS": namespace,
        "NODE_TTL": str(ttl),
        "NODE_OUT": out,
        "NODE_DROPS": drop_key,
    }
    nodes = [Node(env) for _ in range(2)]
    try:
        assert emu.wait_for_connections(2)
        lease_key = f"spooled:lease:{namespace}"
        assert wait_until(lambda: client.get(lease_key) in {n.token for n in nodes})
        leader = next(n for n in nodes if n.token == client.get(lease_key))
        standby = next(n for n in nodes if n is not leader)
        feed = SeqFeed(emu)
        stop = threading.Event()

        def publish() -> None:
            while not stop.is_set():
                feed.publish()
                time.sleep(0.005)

        thread = threading.Thread(target=publish)
        thread.start()
        try:
            time.sleep(0.8)
            leader.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            leader.kill()
            assert wait_until(lambda: client.get(lease_key) == standby.token, ttl + 1.0)
            took = time.monotonic() - killed
            time.sleep(0.8)
        finally:
            stop.set()
            thread.join()
        assert took <= ttl + 0.6
        assert wait_until(lambda: client.llen(out) + client.llen(drop_key) >= feed.next, 5)
        status = standby.finish()
        published = [entry.split() for entry in client.lrange(out, 0, -1)]
        dropped = [entry.split() for entry in client.lrange(drop_key, 0, -1)]
    finally:
        for node in nodes:
            node.kill()
        client.delete(out, drop_key, lease_key, f"{lease_key}:last")
    ran = [int(seq) for _, seq in published]
    assert len(ran) == len(set(ran)), "an event ran twice"
    by_leader = [int(seq) for token, seq in published if token == leader.token]
    by_standby = [int(seq) for token, seq in published if token == standby.token]
    assert by_leader and by_standby and len(by_leader) + len(by_standby) == len(ran)
    window = [int(seq) for reason, seq in dropped if reason == "takeover_window"]
    assert {reason for reason, _ in dropped} <= {"takeover_window"}
    # Lost = only what the takeover window counted (an upper bound: the dead leader
    # may have run some of those before it died).
    missing = set(feed.all) - set(ran)
    assert missing <= set(window), sorted(missing - set(window))
    assert feed.unheard == []
    coordination = status["coordination"]
    assert coordination["takeovers"] == 1 and coordination["redispatched"] > 0
    assert coordination["takeover_window_dropped"] == len(window)
    assert status["counters"]["dropped"].get("takeover_window", 0) == len(window)
    # The window is bounded by the lease timing: at most ~2/3 TTL plus skews of events.
    assert len(window) <= (ttl * 2 / 3 + 0.4 + 0.4) / 0.005


@pytest.mark.redis
def test_claim_node_killed_with_sigkill_its_claims_in_flight_are_counted(
    emu: Emulator, redis_url: str, namespace: str
) -> None:
    """The victim claims a batch in one round trip and publishes it slowly; killed
    halfway, the events it claimed and never sent are counted by a survivor that finds
    its in-flight record once its heartbeat has expired."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    out, drop_key = f"{namespace}:out", f"{namespace}:drops"
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")},
        "SPOOLED_BASE_URL": emu.base_url,
        "SPOOLED_API_KEY": emu.api_key,
        "NODE_REDIS": redis_url,
        "NODE_NS": namespace,
        "NODE_STRATEGY": "claim",
        "NODE_TTL": "3",
        "NODE_OUT": out,
        "NODE_DROPS": drop_key,
    }
    victim = Node({**base, "NODE_SLOW": "0.05"})
    survivor: Node | None = None
    try:
        assert emu.wait_for_connections(1)
        feed = SeqFeed(emu)
        feed.publish(64)  # claimed in a few round trips, then sent at 20/s
        claims = [f"spooled:claim:{namespace}:job.completed:job-{seq}" for seq in feed.all]
        # Kill once everything is claimed: an event only the dead node had received,
        # and not yet claimed, is lost with it (nobody else heard it).
        assert wait_until(lambda: client.exists(*claims) == 64)
        assert wait_until(lambda: client.llen(out) >= 15)
        victim.proc.send_signal(signal.SIGKILL)
        victim.kill()
        killed_with = client.llen(out)
        survivor = Node(base)
        assert emu.wait_for_connections(1)
        feed.publish(10)  # the fleet goes on
        assert wait_until(lambda: client.llen(drop_key) > 0, 9.0)  # heartbeat TTL 5 s
        assert wait_until(lambda: client.llen(out) == killed_with + 10)
        status = survivor.finish()
        published = [entry.split() for entry in client.lrange(out, 0, -1)]
        dropped = [entry.split() for entry in client.lrange(drop_key, 0, -1)]
    finally:
        for node in (victim, survivor):
            if node is not None:
                node.kill()
        client.delete(out, drop_key)
        for key in client.scan_iter(f"spooled:*:{namespace}:*"):
            client.delete(key)
    assert survivor is not None
    ran = [int(seq) for _, seq in published]
    assert len(ran) == len(set(ran)), "an event ran twice"
    assert {token for token, _ in published} == {survivor.token, victim.token}
    assert feed.unheard == []
    counted = [int(seq) for reason, seq in dropped if reason == "claim_holder_lost"]
    assert {reason for reason, _ in dropped} == {"claim_holder_lost"}
    missing = set(feed.all) - set(ran)
    assert missing and missing <= set(counted), sorted(missing - set(counted))
    assert len(counted) <= 64  # only the last batch can be in flight
    assert status["coordination"]["holder_lost_counted"] == len(counted)
    assert status["counters"]["dropped"] == {"claim_holder_lost": len(counted)}
