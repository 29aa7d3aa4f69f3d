"""Fixtures for fleet coordination and fault tests.

- ``private_redis``: a ``redis-server`` of the test's own on a free port, which the test
  may stop, kill and restart (the shared Redis on 6379 is never touched).
- ``make_runtime`` (from tests/conftest.py): runtimes against an emulator, stopped at teardown.
- ``SeqFeed``: publishes sequence-numbered ``job.completed`` events and records, per
  event, whether any open stream accepted it (the emulator's ``undelivered``
  counter), so a test can tell "lost while no listener was connected" from "lost by us".
  Synthetic: no job stands behind them, so a catch-up sweep cannot recover them.
- ``JobFeed``: completes real jobs through the emulator, so the job list proves each
  ``job.completed`` and a sweep can recover the ones no stream heard.
- ``BOTH_MODES``: runs a test against the default and the strict emulator (whose
  stream carries no job events: every job arrives by the job list, see
  :func:`catch_up_config`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from blinker import NamedSignal

from spooled_integrations.protocol import parse_timestamp
from spooled_integrations.runtime import RecordingPublisher, SpooledRuntime
from spooled_integrations.runtime.signals import event_dropped, spooled_signal
from spooled_integrations.testing import Emulator

from ..conftest import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A private ``redis-server`` (no persistence) that can go down and come back."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_until(self.answers, 10.0, 0.02), "redis-server did not start"

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: connections die without a goodbye, like a crashed or unplugged server."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
        assert wait_until(lambda: not self.answers(), 5.0)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server is not installed (CI=true)")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """The default emulator, or the one :data:`BOTH_MODES` asks for."""
    strict = getattr(request, "param", "default") == "strict"
    with Emulator(strict=strict, ping_interval=0.2, keepalive_interval=0.2) as emulator:
        yield emulator


BOTH_MODES = pytest.mark.parametrize("emu", ["default", "strict"], indirect=True)
"""Run the test once per emulator mode (``emu`` becomes strict in the second run)."""


def catch_up_config(emu: Emulator) -> dict[str, Any]:
    """Runtime settings for jobs to reach the listener from ``emu``: the defaults, or
    (strict: the stream carries no job events) polling the job list every 0.3 s."""
    return {"catch_up_poll": "always", "catch_up_interval": 0.3} if emu.strict else {}


RuntimeFactory = Callable[..., SpooledRuntime]


class SeqFeed:
    """Publishes ``job.completed`` events numbered 0, 1, 2, ... (``seq`` in the data)."""

    def __init__(self, emulator: Emulator, event: str = "job.completed") -> None:
        self.emu = emulator
        self.event = event
        self.next = 0
        self.heard: list[int] = []
        self.unheard: list[int] = []
        """Published while no open stream accepted it (or while the emulator stalled)."""
        self.stamps: dict[int, str] = {}
        """Server timestamp of each event."""

    def publish(self, count: int = 1) -> list[int]:
        """Publish ``count`` events; returns their numbers."""
        sent = []
        for _ in range(count):
            seq = self.next
            self.next += 1
            before = self._missed()
            envelope = self.emu.publish(
                self.event, job_id=f"job-{seq}", queue_name="q", duration_ms=1, seq=seq
            )
            self.stamps[seq] = envelope["data"]["timestamp"]
            (self.unheard if self._missed() > before else self.heard).append(seq)
            sent.append(seq)
        return sent

    def _missed(self) -> int:
        return missed(self.emu)

    @property
    def all(self) -> list[int]:
        return list(range(self.next))

    @property
    def due(self) -> list[int]:
        """What must run: only what a stream heard (nothing else can be recovered)."""
        return self.heard

    def ran(self, publisher: RecordingPublisher) -> list[int]:
        return seqs(publisher)


def missed(emu: Emulator) -> int:
    """Events the emulator published that no open stream accepted, or dropped stalled."""
    counters = emu.counters
    return counters["undelivered"] + counters["stalled_drops"]


class JobFeed:
    """Completes real jobs: each is created, moved to processing, then to completed.

    The default emulator publishes each change on the stream (the completion as a
    ``JobStatusChange`` and a ``JobCompleted``); the strict one publishes nothing.
    Either way the job list proves the ``job.completed``, so every job is due.
    """

    def __init__(self, emulator: Emulator, queue: str = "q") -> None:
        self.emu = emulator
        self.queue = queue
        self.all: list[str] = []
        """Job ids, in the order they completed."""
        self.heard: list[str] = []
        """Completed while an open stream accepted the completion (default mode)."""
        self.unheard: list[str] = []
        """Completed while no open stream accepted it (or stalled), or on a strict server."""
        self.completed_at: dict[str, datetime] = {}

    def complete(self, count: int = 1) -> list[str]:
        """Complete ``count`` new jobs; returns their ids."""
        done = []
        for _ in range(count):
            job = self.emu.create_job(self.queue)
            self.emu.set_job_status(job, "processing")
            before = missed(self.emu)
            self.emu.set_job_status(job, "completed")
            heard = not self.emu.strict and missed(self.emu) == before
            (self.heard if heard else self.unheard).append(job)
            self.completed_at[job] = parse_timestamp(self.emu.job(job)["completed_at"])
            self.all.append(job)
            done.append(job)
        return done

    @property
    def due(self) -> list[str]:
        return self.all

    def ran(self, publisher: RecordingPublisher) -> list[str]:
        """The job id of every recorded publish, in order."""
        return [call.event.job_id or "" for call in publisher.calls]

    def settle(self, sweeps: Recorder, timeout: float = 15.0) -> None:
        """Wait until nothing sent before now can still reach the publisher.

        Default mode: a ``queue.paused`` sent after the jobs has been signalled (the
        stream and the dispatch are in order, so every twin of a job before it has been
        dispatched or suppressed). Strict mode: one more sweep has been dispatched
        (every poll sees the recent jobs again: a repeat would show now).
        """
        if self.emu.strict:
            count = len(sweeps.calls)
            assert wait_until(lambda: len(sweeps.calls) > count, timeout), "no further sweep"
            return
        signalled = threading.Event()

        def mark(sender: Any, **kw: Any) -> None:
            signalled.set()

        with spooled_signal.connected_to(mark, sender="queue.paused"):
            self.emu.publish("queue.paused", queue_name=self.queue)
            assert signalled.wait(timeout), "the stream did not deliver a marker"


def seqs(publisher: RecordingPublisher) -> list[int]:
    """The ``seq`` of every recorded publish, in order."""
    return [call.event.data["seq"] for call in publisher.calls]


class Drops:
    """Records ``event_dropped`` by reason, with the ``seq`` of each dropped event."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []
        self.senders: list[Any] = []

    def __call__(self, sender: Any, *, event: Any, reason: str, detail: str, **kw: Any) -> None:
        self.calls.append((reason, event.data.get("seq") if event is not None else None))
        self.senders.append(sender)

    def seqs(self, reason: str, sender: Any = None) -> list[int | None]:
        return [
            seq
            for (r, seq), s in zip(self.calls, self.senders, strict=True)
            if r == reason and (sender is None or s is sender)
        ]


class Recorder:
    """A receiver that records ``(sender, kwargs)``; thread-safe."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        with self._lock:
            self.calls.append((sender, kwargs))

    def kwarg(self, name: str) -> list[Any]:
        with self._lock:
            return [kwargs.get(name) for _, kwargs in self.calls]


@pytest.fixture
def record() -> Iterator[Callable[[NamedSignal], Recorder]]:
    """``record(signal)`` connects a :class:`Recorder` until the test ends."""
    connected: list[tuple[NamedSignal, Recorder]] = []

    def connect(signal: NamedSignal) -> Recorder:
        recorder = Recorder()
        signal.connect(recorder, weak=False)
        connected.append((signal, recorder))
        return recorder

    yield connect
    for sig, recorder in connected:
        sig.disconnect(recorder)


@pytest.fixture
def drops() -> Iterator[Drops]:
    recorder = Drops()
    event_dropped.connect(recorder, weak=False)
    try:
        yield recorder
    finally:
        with contextlib.suppress(Exception):
            event_dropped.disconnect(recorder)
