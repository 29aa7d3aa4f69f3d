"""A lease leader leads only while it hears its stream (issue 16), against real Redis.

The standbys read the real emulator; the leader's stream goes elsewhere:

- *stalled*: a server that accepts the connection and then says nothing, either
  before the WebSocket handshake or right after it (``StalledServer``);
- *unreachable*: nothing listens (connection refused);
- *silent mid-session*: through a ``Relay`` to the emulator that stops forwarding
  (the client notices after its ``liveness_timeout``), or that cuts the connections
  for less than the grace (a blip: the leader keeps the lease).

In each case every ``once`` event a standby heard is dispatched exactly once by the
fleet, and what the fleet did is visible in status, logs and ``leadership_changed``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from spooled_integrations.protocol import Event
from spooled_integrations.runtime import RecordingPublisher, SpooledRuntime
from spooled_integrations.runtime.coordination import CoordinationConfig
from spooled_integrations.runtime.coordination.lease import (
    LeaseCoordinator,
    _Record,
    _Shadowed,
    _Takeover,
)
from spooled_integrations.runtime.signals import caught_up, leadership_changed
from spooled_integrations.testing import Emulator

from ..client.conftest import RawServer, read_request_head
from .conftest import Drops, JobFeed, RuntimeFactory, SeqFeed, free_port, wait_until

pytestmark = pytest.mark.redis

TTL = 1.2  # the grace a deaf leader gets is one TTL
ONCE = {"name": "once", "events": ["job.completed"], "task": "t.once"}


class StalledServer(RawServer):
    """Accepts every connection and never sends a frame; with ``handshake`` it first
    completes the WebSocket upgrade (the client then counts as connected)."""

    def __init__(self, *, handshake: bool) -> None:
        self.handshake = handshake
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        super().serve(conn)  # held open until close()
        if not self.handshake:
            return
        with contextlib.suppress(OSError):
            conn.settimeout(5)
            request = read_request_head(conn)
            if request is None:
                return
            key = next(
                line.split(b":", 1)[1].strip()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(
                hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
            )
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )


class Relay:
    """A TCP relay to ``port``. ``freeze()``: bytes stop both ways and new connections
    hang, sockets stay open (a silent stall); ``cut(seconds)``: open connections are
    closed and new ones refused for that long (a blip)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"ws://127.0.0.1:{self._listener.getsockname()[1]}"
        self._frozen = threading.Event()
        self._stop = threading.Event()
        self._refuse_until = 0.0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def freeze(self, frozen: bool = True) -> None:
        if frozen:
            self._frozen.set()
        else:
            self._frozen.clear()

    def cut(self, seconds: float) -> None:
        self._refuse_until = time.monotonic() + seconds
        self._close_all()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._close_all()
        self._listener.close()

    def _close_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            if time.monotonic() < self._refuse_until:
                conn.close()
                continue
            with self._lock:
                self._sockets.append(conn)
            if self._frozen.is_set():
                continue  # held, silent
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._sockets.append(upstream)
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not self._frozen.is_set():  # frozen: what arrives is lost
                    dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay(emu: Emulator) -> Iterator[Relay]:
    port = int(emu.base_url.rsplit(":", 1)[1].split("/")[0])
    server = Relay(port)
    try:
        yield server
    finally:
        server.close()


def coordination(redis_url: str, namespace: str) -> dict[str, Any]:
    return {
        "strategy": "lease",
        "redis_url": redis_url,
        "namespace": namespace,
        "lease_ttl": TTL,
        "takeover_skew": 0.2,
    }


def lease_node(
    make_runtime: RuntimeFactory,
    emu: Emulator,
    redis_url: str,
    namespace: str,
    **connection: Any,
) -> tuple[SpooledRuntime, RecordingPublisher]:
    publisher = RecordingPublisher()
    runtime = make_runtime(
        emu,
        publisher,
        connection=connection,
        subscriptions=[ONCE],
        coordination=coordination(redis_url, namespace),
    )
    return runtime, publisher


def lease_status(runtime: SpooledRuntime) -> dict[str, Any]:
    status = runtime.status()["coordination"]
    assert status is not None
    return dict(status)


def role(runtime: SpooledRuntime) -> str:
    return str(lease_status(runtime)["role"])


def seqs(*publishers: RecordingPublisher) -> list[int]:
    return [call.event.data["seq"] for p in publishers for call in p.calls]


def start_deaf_leader(
    runtime: SpooledRuntime, make_runtime: RuntimeFactory, emu: Emulator, *standbys: Any
) -> None:
    """The deaf node first: with nobody hearing it takes the lease (someone must hold
    it to sweep a gap once connected); then the standbys connect."""
    runtime.start()
    assert wait_until(lambda: role(runtime) == "leader", 5)
    assert lease_status(runtime)["hearing"] is False
    for standby in standbys:
        standby.start()
    assert emu.wait_for_connections(len(standbys))


@pytest.mark.parametrize("handshake", [True, False], ids=["after-handshake", "before-handshake"])
def test_a_stalled_leader_hands_the_lease_to_a_standby_that_hears(
    handshake: bool,
    emu: Emulator,
    make_runtime: RuntimeFactory,
    redis_url: str,
    namespace: str,
    drops: Drops,
    record: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The issue's report: the leader's server accepts and never sends a frame, the
    standby is connected. The leader pauses, hands the lease over after one TTL of
    deafness, and never takes it back while deaf; the standby dispatches every event,
    those it shadowed before the takeover included, once."""
    caplog.set_level(logging.INFO, logger="spooled_integrations.runtime.coordination")
    changes = record(leadership_changed)
    stalled = StalledServer(handshake=handshake)
    try:
        deaf, deaf_pub = lease_node(
            make_runtime, emu, redis_url, namespace, ws_url=stalled.base_url.replace("http", "ws")
        )
        standby, standby_pub = lease_node(make_runtime, emu, redis_url, namespace)
        start_deaf_leader(deaf, make_runtime, emu, standby)
        feed = SeqFeed(emu)
        feed.publish(20)  # heard by the standby only, while the deaf node holds the lease
        assert wait_until(lambda: role(standby) == "leader", 3 * TTL)
        feed.publish(20)
        assert wait_until(lambda: len(seqs(standby_pub)) == 40, 5)
        assert stalled.connections >= 1
        time.sleep(2 * TTL)  # the deaf node never takes the lease back
        status, new = lease_status(deaf), lease_status(standby)
    finally:
        stalled.close()
    assert seqs(standby_pub) == feed.all == feed.heard  # every event once, in order
    assert seqs(deaf_pub) == []
    assert drops.calls == []
    assert role(deaf) == "standby" and status["holder"] == new["node"]
    assert status["hearing"] is False and status["dispatching"] is False
    assert status["deaf_handovers"] == 1 and status["deaf_since"] is not None
    assert status["other_nodes_hearing"] == 1
    assert new["hearing"] is True and new["dispatching"] is True
    assert new["redispatched"] >= 1 and new["takeover_window_dropped"] == 0
    handed = [kw for _, kw in changes.calls if kw["node"] == status["node"] and not kw["leader"]]
    assert [kw["reason"].startswith("heard no stream for") for kw in handed] == [True]
    assert "handing the lease of namespace" in caplog.text
    assert "it heard no stream and handed the lease over" in caplog.text


def test_an_unreachable_leader_hands_over_and_no_deaf_node_takes_the_lease_back(
    emu: Emulator,
    make_runtime: RuntimeFactory,
    redis_url: str,
    namespace: str,
    drops: Drops,
) -> None:
    """Connection refused: the same handover. When the new leader stops, the lease goes
    to the other standby that hears, not to the deaf node."""
    refused = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    deaf, deaf_pub = lease_node(make_runtime, emu, redis_url, namespace, base_url=refused)
    a, pa = lease_node(make_runtime, emu, redis_url, namespace)
    b, pb = lease_node(make_runtime, emu, redis_url, namespace)
    start_deaf_leader(deaf, make_runtime, emu, a, b)
    feed = SeqFeed(emu)
    feed.publish(15)
    assert wait_until(lambda: "leader" in (role(a), role(b)), 3 * TTL)
    first, second = (a, b) if role(a) == "leader" else (b, a)
    feed.publish(15)
    assert wait_until(lambda: len(seqs(pa, pb)) == 30, 5)
    first.stop(timeout=2)  # a clean handover: to the standby that hears
    assert wait_until(lambda: role(second) == "leader", 2 * TTL)
    feed.publish(15)
    assert wait_until(lambda: len(seqs(pa, pb)) == 45, 5)
    time.sleep(TTL)
    assert sorted(seqs(pa, pb)) == feed.all  # once each across the fleet
    assert seqs(deaf_pub) == []
    assert role(deaf) == "standby" and lease_status(deaf)["deaf_handovers"] == 1
    assert drops.calls == []
    assert deaf.status()["last_error"] is not None  # what to look at on the deaf node


def test_a_leader_whose_stream_goes_silent_hands_over_and_nothing_runs_twice(
    emu: Emulator,
    make_runtime: RuntimeFactory,
    redis_url: str,
    namespace: str,
    relay: Relay,
    drops: Drops,
) -> None:
    """Mid-session stall: the leader dispatched the first events, then its stream goes
    silent. It notices after its liveness_timeout, hands over after one TTL more, and
    the standby dispatches exactly the events after the leader's last one."""
    leader, lead_pub = lease_node(
        make_runtime, emu, redis_url, namespace, ws_url=relay.url, liveness_timeout=1.0
    )
    standby, standby_pub = lease_node(make_runtime, emu, redis_url, namespace)
    leader.start()
    assert wait_until(lambda: role(leader) == "leader" and lease_status(leader)["hearing"])
    standby.start()
    assert emu.wait_for_connections(2)
    assert wait_until(lambda: lease_status(leader)["other_nodes_hearing"] == 1, 2 * TTL)
    feed = SeqFeed(emu)
    feed.publish(10)
    assert wait_until(lambda: len(seqs(lead_pub)) == 10)
    relay.freeze()
    stop = threading.Event()

    def publish() -> None:  # events keep coming through the stall and the handover
        while not stop.is_set():
            feed.publish()
            time.sleep(0.02)

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        assert wait_until(lambda: lease_status(leader)["hearing"] is False, 3.0)
        assert wait_until(lambda: role(standby) == "leader", 3 * TTL)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    relay.freeze(False)  # the old leader hears again: a standby now, it stays one
    assert wait_until(lambda: lease_status(leader)["hearing"] is True, 5)
    feed.publish(10)
    assert wait_until(lambda: len(seqs(lead_pub, standby_pub)) == len(feed.all), 5)
    time.sleep(TTL)
    assert seqs(lead_pub) == list(range(10))
    assert seqs(lead_pub) + seqs(standby_pub) == feed.all  # once each, in order
    assert drops.calls == []
    assert role(leader) == "standby" and role(standby) == "leader"
    assert lease_status(standby)["takeover_window_dropped"] == 0
    assert lease_status(standby)["redispatched"] > 0
    assert lease_status(leader)["deaf_handovers"] == 1


def test_a_short_blip_keeps_the_lease_and_catch_up_recovers_the_gap(
    emu: Emulator,
    make_runtime: RuntimeFactory,
    redis_url: str,
    namespace: str,
    relay: Relay,
    record: Any,
) -> None:
    """The leader's stream is cut for less than one TTL while jobs complete: it keeps
    the lease (no handover, no flapping), its catch-up recovers the jobs it missed, and
    the standby, which heard them, dispatches none of them."""
    changes = record(leadership_changed)
    sweeps = record(caught_up)
    leader, lead_pub = lease_node(make_runtime, emu, redis_url, namespace, ws_url=relay.url)
    standby, standby_pub = lease_node(make_runtime, emu, redis_url, namespace)
    leader.start()
    assert wait_until(lambda: role(leader) == "leader" and lease_status(leader)["hearing"])
    standby.start()
    assert emu.wait_for_connections(2)
    assert wait_until(lambda: lease_status(leader)["other_nodes_hearing"] == 1, 2 * TTL)
    feed = JobFeed(emu)
    feed.complete(5)
    relay.cut(0.5)
    missed = feed.complete(5)  # the standby hears these; the leader does not
    assert wait_until(lambda: leader.metrics.get("reconnects") >= 1, 5)
    feed.complete(5)
    assert wait_until(lambda: set(feed.ran(lead_pub)) >= set(feed.all), 10)
    feed.settle(sweeps)
    assert Counter(feed.ran(lead_pub)) == Counter(feed.all)  # each job once
    assert standby_pub.calls == []
    recovered = {c.event.job_id for c in lead_pub.calls if c.event.replayed}
    assert recovered >= set(missed)
    assert [kw["leader"] for _, kw in changes.calls] == [True]  # no handover
    assert lease_status(leader)["deaf_handovers"] == 0


def test_a_deaf_leader_that_nobody_can_replace_keeps_the_lease(
    emu: Emulator, make_runtime: RuntimeFactory, redis_url: str, namespace: str
) -> None:
    """No other node hears: handing over would help nobody, and the holder is the node
    that sweeps the gap once its stream is back. It keeps the lease and says why."""
    refused = f"http://127.0.0.1:{free_port()}"
    deaf, _ = lease_node(make_runtime, emu, redis_url, namespace, base_url=refused)
    deaf.start()
    assert wait_until(lambda: role(deaf) == "leader", 5)
    time.sleep(2 * TTL)
    status = lease_status(deaf)
    assert status["role"] == "leader" and status["deaf_handovers"] == 0
    assert status["hearing"] is False and status["other_nodes_hearing"] == 0
    assert status["dispatching"] is True  # what its catch-up recovers still runs


def test_a_final_record_without_a_key_hands_over_everything_after_the_acquisition() -> None:
    """A leader that never heard dispatched nothing: the new leader runs every event it
    received after that leader took the lease, and leaves the earlier ones to the one
    before (no network: the split alone)."""
    lease = LeaseCoordinator(CoordinationConfig(redis_url="redis://127.0.0.1:9/0"))
    events = [
        Event("job.completed", {"job_id": f"j{i}", "seq": i}, "JobCompleted") for i in range(6)
    ]
    shadow = [_Shadowed(10.0 + i, e, (), False) for i, e in enumerate(events)]
    record = _Record(holder="deaf", w=12.5, key="", s=12.5, final=True, why="deaf")
    replay, maybe, unknown = lease._split(shadow, _Takeover(record, own=False))
    assert [item.event.data["seq"] for item in replay] == [3, 4, 5]
    assert maybe == [] and unknown == 0


def test_what_a_deaf_leader_recovered_but_never_heard_is_counted_at_the_handover() -> None:
    """Its catch-up recovered events after its last frame (a handshake-only stream
    counts as connected): the next leader may not have heard them, so they are counted
    as the handover's window, not dispatched (no network: the dispatch thread's part)."""
    from spooled_integrations.runtime.coordination import DispatchHooks

    lease = LeaseCoordinator(CoordinationConfig(redis_url="redis://127.0.0.1:9/0"))
    dropped: list[tuple[int, str]] = []
    lease.attach(
        DispatchHooks(
            publish=lambda sub, event: pytest.fail("nothing may run"),
            drop=lambda event, reason, detail: dropped.append((event.data["seq"], reason)),
            progress=lambda: (0.0, None),
        )
    )
    events = [
        Event("job.completed", {"job_id": f"j{i}", "seq": i}, "JobCompleted") for i in range(5)
    ]
    # Held while paused: 0-1 live (before its last frame), 2-3 recovered after it, 4
    # received after the handover (the stream came back).
    now = time.monotonic()
    times = [now - 5, now - 4, now - 3, now - 2, now]
    lease._shadow.extend(_Shadowed(t, e, (), True) for t, e in zip(times, events, strict=True))
    lease._handed_over = (now - 3.5, now - 1)
    lease.poll()
    assert dropped == [(2, "takeover_window"), (3, "takeover_window")]
    assert [item.event.data["seq"] for item in lease._shadow] == [0, 1, 4]
    assert lease.status()["takeover_window_dropped"] == 2
