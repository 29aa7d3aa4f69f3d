"""Fleet coordination against real Redis: lease and claim, over the emulator's real sockets.

Every test uses a namespace of its own; outage tests use a private redis-server they
can kill and restart.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import Counter
from typing import Any

import pytest

from spooled_integrations.errors import ConfigurationError
from spooled_integrations.runtime import RecordingPublisher, SpooledRuntime
from spooled_integrations.runtime.coordination import CoordinationConfig, parse_coordination
from spooled_integrations.runtime.coordination.lease import LeaseCoordinator
from spooled_integrations.runtime.signals import leadership_changed, spooled_signal
from spooled_integrations.testing import Emulator

from .conftest import Drops, RedisServer, RuntimeFactory, SeqFeed, wait_until

pytestmark = pytest.mark.redis

ONCE = {"name": "once", "events": ["job.completed"], "task": "t.once"}
EVERY = {"name": "every", "events": ["job.completed"], "task": "t.every", "delivery": "every_node"}


def lease(redis_url: str, namespace: str, **extra: Any) -> dict[str, Any]:
    return {
        "strategy": "lease",
        "redis_url": redis_url,
        "namespace": namespace,
        "lease_ttl": 1.2,
        "takeover_skew": 0.2,
        **extra,
    }


def claim(redis_url: str, namespace: str, **extra: Any) -> dict[str, Any]:
    return {
        "strategy": "claim",
        "redis_url": redis_url,
        "namespace": namespace,
        "retry_interval": 0.1,
        **extra,
    }


def node(
    make_runtime: RuntimeFactory, emu: Emulator, coordination: dict[str, Any]
) -> tuple[SpooledRuntime, RecordingPublisher]:
    publisher = RecordingPublisher()
    runtime = make_runtime(emu, publisher, subscriptions=[ONCE, EVERY], coordination=coordination)
    return runtime, publisher


def once_seqs(*publishers: RecordingPublisher) -> list[int]:
    return [c.event.data["seq"] for p in publishers for c in p.calls if c.target == "task:t.once"]


def every_seqs(publisher: RecordingPublisher) -> list[int]:
    return [c.event.data["seq"] for c in publisher.calls if c.target == "task:t.every"]


def role(runtime: SpooledRuntime) -> str | None:
    status = runtime.status()["coordination"]
    return status.get("role") if status else None


def start_all(emu: Emulator, *runtimes: SpooledRuntime) -> None:
    for runtime in runtimes:
        runtime.start()
    assert emu.wait_for_connections(len(runtimes))


# -- lease -------------------------------------------------------------------------------


def test_lease_exactly_one_node_dispatches_each_once_event(
    emu: Emulator, make_runtime: RuntimeFactory, redis_url: str, namespace: str
) -> None:
    (a, pa), (b, pb) = (node(make_runtime, emu, lease(redis_url, namespace)) for _ in range(2))
    start_all(emu, a, b)
    assert wait_until(lambda: sorted([role(a), role(b)]) == ["leader", "standby"])
    leader, standby = (a, b) if role(a) == "leader" else (b, a)
    feed = SeqFeed(emu)
    feed.publish(60)

    assert wait_until(
        lambda: (
            len(once_seqs(pa, pb)) >= 60 and len(every_seqs(pa)) >= 60 and len(every_seqs(pb)) >= 60
        )
    )
    time.sleep(0.2)
    assert sorted(once_seqs(pa, pb)) == feed.all  # once each, across the fleet
    lead_pub = pa if leader is a else pb
    assert once_seqs(lead_pub) == feed.all  # all by the leader, in order
    assert every_seqs(pa) == every_seqs(pb) == feed.all  # every_node ignores coordination
    for runtime in (a, b):  # signals ignore coordination too
        assert runtime.status()["counters"]["signals_sent"] == 60
    lead, stand = leader.status()["coordination"], standby.status()["coordination"]
    assert lead["holder"] == stand["holder"] == lead["node"] != stand["node"]
    assert json.loads(json.dumps(lead))["strategy"] == "lease"
    assert stand["shadowed"] == 60
    assert wait_until(lambda: leader.status()["coordination"]["renewals"] >= 1)


def test_lease_standby_takes_over_a_stopped_leader_without_loss_or_duplicates(
    emu: Emulator,
    make_runtime: RuntimeFactory,
    redis_url: str,
    namespace: str,
    record: Any,
    drops: Drops,
) -> None:
    changes = record(leadership_changed)
    nodes = [node(make_runtime, emu, lease(redis_url, namespace)) for _ in range(3)]
    runtimes = [rt for rt, _ in nodes]
    publishers = [p for _, p in nodes]
    start_all(emu, *runtimes)
    assert wait_until(lambda: [role(rt) for rt in runtimes].count("leader") == 1)
    leader = next(rt for rt in runtimes if role(rt) == "leader")
    standbys = [rt for rt in runtimes if rt is not leader]
    feed = SeqFeed(emu)
    stop = threading.Event()

    def publish() -> None:  # events keep coming during the handover
        while not stop.is_set():
            feed.publish()
            time.sleep(0.003)

    publisher = threading.Thread(target=publish)
    publisher.start()
    time.sleep(0.3)
    stopped_at = time.monotonic()
    leader.stop()
    try:
        assert wait_until(lambda: "leader" in [role(rt) for rt in standbys], 1.2)  # < a poll
        took = time.monotonic() - stopped_at
        time.sleep(0.5)
    finally:
        stop.set()
        publisher.join()
    new = next(rt for rt in standbys if role(rt) == "leader")
    other = next(rt for rt in standbys if rt is not new)
    assert wait_until(lambda: len(set(once_seqs(*publishers))) == len(feed.heard), 5)
    got = once_seqs(*publishers)
    assert len(got) == len(set(got)), "an event ran twice"
    assert sorted(got) == feed.heard == feed.all
    assert took < 1.2
    assert new.status()["coordination"]["takeover_window_dropped"] == 0
    leader_events = [kw for _, kw in changes.calls if kw["leader"]]
    assert [kw["node"] for kw in leader_events][-1] == new.status()["coordination"]["node"]
    assert any(not kw["leader"] and kw["reason"] == "stopped" for _, kw in changes.calls)
    # The other standby saw the lease free for a moment; the new leader took those
    # events over, so stopping it counts nothing as lost.
    other.stop(timeout=2)
    assert drops.calls == []


def test_lease_leader_cut_off_from_redis_stops_before_the_standby_starts(
    emu: Emulator,
    make_runtime: RuntimeFactory,
    private_redis: RedisServer,
    namespace: str,
    drops: Drops,
) -> None:
    """The leader's Redis calls never succeed again: it stops dispatching at its horizon
    (0.4 s after its last renewal) and gives the lease up at 2/3 TTL; a standby takes
    over about one TTL after the last renewal. What arrived meanwhile is re-dispatched
    by the new leader or counted."""
    config = lease(private_redis.url, namespace, lease_ttl=1.5, renew_interval=0.1)
    (a, pa), (b, pb) = (node(make_runtime, emu, config) for _ in range(2))
    start_all(emu, a, b)
    assert wait_until(lambda: "leader" in (role(a), role(b)))
    leader, standby = (a, b) if role(a) == "leader" else (b, a)
    c, pc = node(make_runtime, emu, config)  # a second standby, for the accounting
    third = c
    third.start()
    assert emu.wait_for_connections(3)
    assert wait_until(lambda: role(third) == "standby")
    coordinator = leader.coordinator
    assert isinstance(coordinator, LeaseCoordinator)
    import redis

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("simulated partition")

    feed = SeqFeed(emu)
    feed.publish(20)
    assert wait_until(lambda: len(once_seqs(pa, pb)) == 20)
    renewals = coordinator.status()["renewals"]  # let a renewal record that progress
    assert wait_until(lambda: coordinator.status()["renewals"] > renewals)
    coordinator._script = unreachable  # type: ignore[method-assign]
    cut = time.monotonic()
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            feed.publish()
            time.sleep(0.01)

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        assert wait_until(lambda: not coordinator.is_leader, 1.5)
        stopped = time.monotonic() - cut
        assert wait_until(lambda: "leader" in (role(standby), role(third)), 3.0)
        took = time.monotonic() - cut
        if role(third) == "leader":
            standby, third = third, standby
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert stopped <= 0.4 + 0.1  # the horizon counts from before the last renewal
    assert took <= 1.5 + 0.6  # TTL after the last renewal, plus a poll's slack
    assert wait_until(
        lambda: len(once_seqs(pa, pb, pc)) + len(drops.seqs("takeover_window")) >= len(feed.all),
        5,
    )
    got = once_seqs(pa, pb, pc)
    assert len(got) == len(set(got)), "an event ran twice"
    window = drops.seqs("takeover_window")
    # Every event ran or was counted. The window is an upper bound: the old leader
    # dispatched what it received up to its deadline, after its last progress record.
    assert set(got) | set(window) == set(feed.all)
    status = standby.status()
    assert status["counters"]["dropped"].get("takeover_window", 0) == len(window)
    assert status["coordination"]["redispatched"] > 0  # the tail after the promise ran
    assert 0 <= status["coordination"]["takeover_lag"] < 0.5  # measured, not guessed
    assert leader.status()["coordination"]["renew_failures"] >= 1
    # The other standby saw the lease expire before the new leader took it; those
    # events are the new leader's, so stopping this one counts nothing as lost.
    third.stop(timeout=2)
    assert once_seqs({a: pa, b: pb, c: pc}[third]) == []
    assert drops.seqs("coordination_unavailable", third) == []


def test_lease_leader_pauses_past_its_horizon_and_resumes_without_loss(
    emu: Emulator, make_runtime: RuntimeFactory, redis_url: str, namespace: str, record: Any
) -> None:
    """Renewals fail for longer than the dispatch horizon but less than 2/3 TTL: the
    leader holds events instead of dispatching them, keeps the lease, then catches up."""
    changes = record(leadership_changed)
    config = lease(redis_url, namespace, lease_ttl=3.0, renew_interval=0.1)  # horizon 0.4 s
    runtime, publisher = node(make_runtime, emu, config)
    start_all(emu, runtime)
    assert wait_until(lambda: role(runtime) == "leader")
    coordinator = runtime.coordinator
    assert isinstance(coordinator, LeaseCoordinator)
    feed = SeqFeed(emu)
    feed.publish(5)
    assert wait_until(lambda: len(once_seqs(publisher)) == 5)
    import redis

    real = coordinator._script

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("simulated hiccup")

    coordinator._script = unreachable  # type: ignore[method-assign]
    assert wait_until(lambda: not coordinator.is_leader, 0.6)
    feed.publish(10)
    assert wait_until(lambda: runtime.status()["coordination"]["shadowed"] == 10)
    assert role(runtime) == "leader" and len(once_seqs(publisher)) == 5
    coordinator._script = real  # type: ignore[method-assign]
    assert wait_until(lambda: len(once_seqs(publisher)) == 15, 2.0)
    assert once_seqs(publisher) == feed.all
    assert changes.kwarg("leader") == [True]  # never lost the lease
    assert runtime.status()["counters"]["dropped"] == {}


def test_lease_redis_outage_pauses_dispatch_then_replays_the_shadow(
    emu: Emulator,
    make_runtime: RuntimeFactory,
    private_redis: RedisServer,
    namespace: str,
    record: Any,
) -> None:
    changes = record(leadership_changed)
    runtime, publisher = node(make_runtime, emu, lease(private_redis.url, namespace))
    start_all(emu, runtime)
    assert wait_until(lambda: role(runtime) == "leader")
    feed = SeqFeed(emu)
    feed.publish(10)
    assert wait_until(lambda: len(once_seqs(publisher)) == 10)
    private_redis.kill()
    assert wait_until(lambda: role(runtime) == "standby", 1.2)  # 2/3 TTL + slack
    assert changes.kwarg("leader")[-1] is False
    feed.publish(15)  # no leader: shadowed, pending
    assert wait_until(lambda: len(every_seqs(publisher)) == 25)  # every_node goes on
    assert len(once_seqs(publisher)) == 10
    status = runtime.status()["coordination"]
    assert status["available"] is False and status["shadowed"] == 15
    private_redis.start()
    assert wait_until(lambda: len(once_seqs(publisher)) == 25, 5)
    assert once_seqs(publisher) == feed.all
    assert changes.kwarg("leader")[-1] is True
    assert runtime.status()["counters"]["dropped"] == {}


def test_lease_outage_longer_than_the_buffer_counts_every_lost_event(
    emu: Emulator,
    make_runtime: RuntimeFactory,
    private_redis: RedisServer,
    namespace: str,
    drops: Drops,
) -> None:
    config = lease(
        private_redis.url, namespace, lease_ttl=0.6, buffer_size=4, buffer_max_age=0.5, claim_ttl=5
    )
    runtime, publisher = node(make_runtime, emu, config)
    start_all(emu, runtime)
    assert wait_until(lambda: role(runtime) == "leader")
    private_redis.kill()
    assert wait_until(lambda: role(runtime) == "standby", 1.0)
    feed = SeqFeed(emu)
    feed.publish(10)
    assert wait_until(lambda: len(drops.seqs("coordination_unavailable")) == 6)  # size bound
    assert drops.seqs("coordination_unavailable") == list(range(6))
    assert wait_until(lambda: len(drops.seqs("coordination_unavailable")) == 10, 3.0)  # age
    assert runtime.metrics.dropped("coordination_unavailable") == 10
    assert once_seqs(publisher) == []
    assert every_seqs(publisher) == feed.all


# -- claim -------------------------------------------------------------------------------


def test_claim_each_event_is_published_once_across_three_runtimes(
    emu: Emulator, make_runtime: RuntimeFactory, redis_url: str, namespace: str
) -> None:
    nodes = [node(make_runtime, emu, claim(redis_url, namespace)) for _ in range(3)]
    start_all(emu, *(rt for rt, _ in nodes))
    publishers = [p for _, p in nodes]
    feed = SeqFeed(emu)
    feed.publish(150)
    assert wait_until(lambda: all(len(every_seqs(p)) == 150 for p in publishers))
    assert wait_until(
        lambda: (
            sum(
                s["claims_won"] + s["claims_lost"]
                for s in (rt.status()["coordination"] for rt, _ in nodes)
            )
            == 450
        )
    )
    got = once_seqs(*publishers)
    assert sorted(got) == feed.all
    statuses = [rt.status()["coordination"] for rt, _ in nodes]
    assert sum(s["claims_won"] for s in statuses) == 150
    assert sum(s["claims_lost"] for s in statuses) == 300
    import redis

    keys = redis.Redis.from_url(redis_url).keys(f"spooled:claim:{namespace}:*")
    assert len(keys) == 150
    assert f"spooled:claim:{namespace}:job.completed:job-7".encode() in keys


def test_claim_pipelines_claims_while_events_queue_up(
    emu: Emulator, make_runtime: RuntimeFactory, redis_url: str, namespace: str
) -> None:
    nodes = [node(make_runtime, emu, claim(redis_url, namespace)) for _ in range(2)]
    start_all(emu, *(rt for rt, _ in nodes))
    sizes: list[int] = []
    for runtime, _ in nodes:
        coordinator = runtime.coordinator
        assert coordinator is not None
        real = coordinator._claim_all  # type: ignore[attr-defined]

        def spy(items: Any, real: Any = real) -> Any:
            sizes.append(len(items))
            return real(items)

        coordinator._claim_all = spy  # type: ignore[attr-defined]
    gate = threading.Event()
    entered = threading.Event()

    def hold(sender: Any, event: Any, **kw: Any) -> None:
        if event.data["seq"] == 0:
            entered.set()
            gate.wait(5)

    feed = SeqFeed(emu)
    with spooled_signal.connected_to(hold, sender="job.completed"):
        feed.publish(1)
        assert entered.wait(5)
        feed.publish(199)  # queues up behind the held receiver on both nodes
        time.sleep(0.2)
        gate.set()
        assert wait_until(lambda: len(once_seqs(*(p for _, p in nodes))) == 200)
    time.sleep(0.2)
    assert sorted(once_seqs(*(p for _, p in nodes))) == feed.all
    for _, publisher in nodes:
        mine = once_seqs(publisher)
        assert mine == sorted(mine)
    assert max(sizes) == 64 and sum(sizes) == 400  # batched, every event claimed once


def settled(runtime: SpooledRuntime) -> int:
    coordination = runtime.status()["coordination"]
    return int(coordination["claims_won"] + coordination["claims_lost"])


def test_claim_redis_down_buffers_then_drains_in_order(
    emu: Emulator, make_runtime: RuntimeFactory, private_redis: RedisServer, namespace: str
) -> None:
    nodes = [node(make_runtime, emu, claim(private_redis.url, namespace)) for _ in range(2)]
    start_all(emu, *(rt for rt, _ in nodes))
    (a, pa), (_, pb) = nodes
    feed = SeqFeed(emu)
    feed.publish(5)
    assert wait_until(lambda: len(once_seqs(pa, pb)) == 5)
    # Both nodes settled their claims (a restarted Redis forgets them, so a claim still
    # pending on the slower node at the kill would be won again afterwards).
    assert wait_until(lambda: all(settled(runtime) == 5 for runtime, _ in nodes))
    private_redis.kill()
    feed.publish(20)
    assert wait_until(lambda: len(every_seqs(pa)) == len(every_seqs(pb)) == 25)
    assert wait_until(lambda: a.status()["coordination"]["buffered"] == 20)
    assert a.status()["coordination"]["available"] is False
    assert len(once_seqs(pa, pb)) == 5
    private_redis.start()
    assert wait_until(lambda: len(once_seqs(pa, pb)) == 25, 5)
    time.sleep(0.3)
    assert sorted(once_seqs(pa, pb)) == feed.all
    for runtime, publisher in nodes:
        assert runtime.status()["coordination"]["buffered"] == 0
        mine = once_seqs(publisher)
        assert mine == sorted(mine)  # drained in arrival order
        assert runtime.status()["counters"]["dropped"] == {}


def test_claim_outage_beyond_the_buffer_bounds_counts_and_signals_each_drop(
    emu: Emulator,
    make_runtime: RuntimeFactory,
    private_redis: RedisServer,
    namespace: str,
    drops: Drops,
) -> None:
    config = claim(private_redis.url, namespace, buffer_size=5, buffer_max_age=0.6, claim_ttl=5)
    runtime, publisher = node(make_runtime, emu, config)
    start_all(emu, runtime)
    private_redis.kill()
    feed = SeqFeed(emu)
    feed.publish(12)
    assert wait_until(lambda: len(every_seqs(publisher)) == 12)
    assert drops.seqs("coordination_unavailable") == list(range(7))  # oldest pushed out
    assert wait_until(lambda: len(drops.seqs("coordination_unavailable")) == 12, 3.0)  # aged out
    assert drops.seqs("coordination_unavailable") == feed.all
    assert runtime.metrics.dropped("coordination_unavailable") == 12
    assert runtime.status()["coordination"]["dropped"] == 12
    assert runtime.status()["counters"]["signals_sent"] == 12
    private_redis.start()
    feed.publish(3)
    assert wait_until(lambda: once_seqs(publisher) == [12, 13, 14], 3.0)


def test_claim_a_silent_redis_never_holds_up_signals_and_every_node_rules(
    emu: Emulator, make_runtime: RuntimeFactory, namespace: str
) -> None:
    """Redis accepts connections but never answers (a blackholed host): only the first
    claim waits for the timeout; the dispatch thread then keeps going while a probe
    waits for Redis in the background."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(100)  # connections complete in the backlog; nothing is ever read
    try:
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        runtime, publisher = node(
            make_runtime, emu, claim(url, namespace, redis_timeout=0.5, retry_interval=0.1)
        )
        start_all(emu, runtime)
        feed = SeqFeed(emu)
        sent: dict[int, float] = {}
        seen: dict[int, float] = {}

        def on_event(sender: Any, event: Any, **kw: Any) -> None:
            seen[event.data["seq"]] = time.monotonic()

        with spooled_signal.connected_to(on_event, sender="job.completed"):
            for _ in range(25):  # spread out: a retry is always due by the next event
                (seq,) = feed.publish()
                sent[seq] = time.monotonic()
                time.sleep(0.06)
            assert wait_until(lambda: len(every_seqs(publisher)) == 25, 6.0)
        # Only the first claim waited for the timeout; after it, events flow at once.
        late = [seen[seq] - sent[seq] for seq in range(12, 25)]
        assert max(late) < 0.2, late
        assert runtime.status()["counters"]["signals_sent"] == 25
        assert runtime.status()["coordination"]["buffered"] == 25
        assert once_seqs(publisher) == []
    finally:
        silent.close()


def test_claim_stop_counts_what_is_still_buffered(
    emu: Emulator,
    make_runtime: RuntimeFactory,
    private_redis: RedisServer,
    namespace: str,
    drops: Drops,
) -> None:
    runtime, _ = node(make_runtime, emu, claim(private_redis.url, namespace))
    start_all(emu, runtime)
    private_redis.kill()
    SeqFeed(emu).publish(4)
    assert wait_until(lambda: runtime.status()["coordination"]["buffered"] == 4)
    runtime.stop(timeout=2)
    assert drops.seqs("coordination_unavailable") == [0, 1, 2, 3]
    assert runtime.metrics.dropped("coordination_unavailable") == 4


# -- configuration and status ------------------------------------------------------------


def test_coordination_config_spellings_and_errors() -> None:
    assert parse_coordination(None) is None
    assert parse_coordination("claim").strategy == "claim"  # type: ignore[union-attr]
    parsed = parse_coordination("claim:redis://r:6380/2")
    assert parsed is not None and parsed.redis_url == "redis://r:6380/2"
    parsed = parse_coordination("rediss://:pw@r:6380/2")
    assert parsed is not None and parsed.strategy == "lease"
    parsed = parse_coordination('{"strategy": "lease", "lease_ttl": 3, "namespace": "x"}')
    assert parsed == CoordinationConfig(lease_ttl=3, namespace="x")
    assert parse_coordination({"strategy": "claim"}) == CoordinationConfig(strategy="claim")
    with pytest.raises(ConfigurationError, match="lease_ttl: Input should be greater"):
        parse_coordination({"lease_ttl": 0})
    with pytest.raises(ConfigurationError, match="unknown strategy 'leader'"):
        parse_coordination("leader")
    with pytest.raises(
        ConfigurationError, match=r"claim_ttl .* must be longer than buffer_max_age"
    ):
        parse_coordination({"claim_ttl": 10, "buffer_max_age": 20})
    with pytest.raises(ConfigurationError, match="ttls: unknown field"):
        parse_coordination({"ttls": 1})
    with pytest.raises(ConfigurationError, match="renew_interval"):
        parse_coordination({"lease_ttl": 3, "renew_interval": 2})
    with pytest.raises(ConfigurationError, match=r"dispatch_horizon .* at most 2/3"):
        parse_coordination({"lease_ttl": 3, "dispatch_horizon": 2.5})
    defaults = CoordinationConfig()
    assert defaults.effective_renew_interval == 0.5 and defaults.effective_dispatch_horizon == 2
    short = CoordinationConfig(lease_ttl=0.9)
    assert (short.effective_renew_interval, short.effective_dispatch_horizon) == (0.3, 0.6)
    with pytest.raises(ConfigurationError, match="redis_url must start with"):
        parse_coordination({"redis_url": "http://user:hunter2@r"})
    try:
        parse_coordination({"redis_url": "http://user:hunter2@r"})
    except ConfigurationError as exc:
        assert "hunter2" not in str(exc)


def test_redis_passwords_stay_out_of_reprs_status_and_logs(
    emu: Emulator, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture, namespace: str
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_url = "redis://:hunter2secret@127.0.0.1:9/0"  # nothing listens on 9
    config = CoordinationConfig(redis_url=secret_url, namespace=namespace, lease_ttl=0.6)
    assert "hunter2secret" not in repr(config)
    runtime, _ = node(make_runtime, emu, config.model_dump())
    runtime.start()
    assert wait_until(lambda: runtime.status()["coordination"]["last_error"] is not None)
    status = json.dumps(runtime.status())
    assert "hunter2secret" not in status and "[redacted]" in status
    runtime.stop(timeout=2)
    assert "hunter2secret" not in caplog.text
    assert "redis://:[redacted]@127.0.0.1:9/0" in caplog.text


def test_status_without_coordination_carries_the_once_warning(
    emu: Emulator, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = make_runtime(emu, RecordingPublisher(), subscriptions=[ONCE, EVERY])
    runtime.start()
    coordination = runtime.status()["coordination"]
    assert coordination["strategy"] is None and "delivery='once'" in coordination["warning"]
    assert "subscriptions[0] (name='once')" in coordination["warning"]
    assert "delivery='once'" in caplog.text
    quiet = make_runtime(
        emu, RecordingPublisher(), subscriptions=[EVERY], coordination={"strategy": "claim"}
    )
    assert quiet.coordinator is None  # nothing to coordinate: no Redis connection
    assert quiet.status()["coordination"]["active"] is False


def test_the_once_advice_is_a_warning_on_a_nodes_first_boot_only(
    emu: Emulator, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spooled_integrations.runtime.runtime")
    for _ in range(2):  # the same node (cache directory) boots the same rules twice
        make_runtime(emu, RecordingPublisher(), subscriptions=[ONCE]).start()
    said = [r.levelno for r in caplog.records if "ask for delivery='once'" in r.getMessage()]
    assert said == [logging.WARNING, logging.INFO]
    make_runtime(emu, RecordingPublisher(), subscriptions=[ONCE, EVERY]).start()
    said = [r.levelno for r in caplog.records if "ask for delivery='once'" in r.getMessage()]
    assert said[-1] == logging.INFO  # other rules, the same once-rule: already said


def test_runtime_config_rejects_bad_coordination_naming_the_field(emu: Emulator) -> None:
    from spooled_integrations.runtime import RuntimeConfig

    with pytest.raises(ConfigurationError, match="coordination: buffer_size: Input should be"):
        RuntimeConfig(coordination={"buffer_size": 0})
    config = RuntimeConfig(coordination="claim")
    assert config.coordination == CoordinationConfig(strategy="claim")


def test_receive_order_and_counts_are_per_node(
    emu: Emulator, make_runtime: RuntimeFactory, redis_url: str, namespace: str
) -> None:
    """A claim node keeps arrival order even while it wins and loses claims."""
    nodes = [node(make_runtime, emu, claim(redis_url, namespace)) for _ in range(2)]
    start_all(emu, *(rt for rt, _ in nodes))
    feed = SeqFeed(emu)
    feed.publish(80)
    assert wait_until(lambda: len(once_seqs(*(p for _, p in nodes))) == 80)
    for _, publisher in nodes:
        mine = once_seqs(publisher)
        assert mine == sorted(mine)
    counts = Counter(once_seqs(*(p for _, p in nodes)))
    assert set(counts.values()) == {1}


def test_winning_a_free_lease_at_boot_is_info_a_takeover_is_a_warning(
    emu: Emulator,
    make_runtime: RuntimeFactory,
    redis_url: str,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="spooled_integrations.runtime.coordination")
    first, _ = node(make_runtime, emu, lease(redis_url, namespace))
    start_all(emu, first)
    assert wait_until(lambda: role(first) == "leader")
    second, _ = node(make_runtime, emu, lease(redis_url, namespace))
    start_all(emu, second)
    assert wait_until(lambda: role(second) == "standby")
    first.stop(timeout=2)
    assert wait_until(lambda: role(second) == "leader", 5)
    won = [r for r in caplog.records if "is now the leader" in r.getMessage()]
    assert [r.levelno for r in won] == [logging.INFO, logging.WARNING]
