"""Runtime fixtures: events built through the real normalizer, and signal recorders."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from blinker import NamedSignal

from spooled_integrations.protocol import Event, normalize

EventFactory = Callable[..., Event]


def build_events(wire_type: str, **data: Any) -> list[Event]:
    """Every event one backend-envelope frame becomes (a job.status may add a derived one)."""
    return normalize(json.dumps({"type": wire_type, "data": data}).encode())


def build_event(wire_type: str, **data: Any) -> Event:
    """The direct event of one frame (never the derived one)."""
    return build_events(wire_type, **data)[0]


@pytest.fixture
def make_event() -> EventFactory:
    """``make_event("JobCompleted", job_id="j1", queue_name="emails")``."""
    return build_event


@pytest.fixture
def make_events() -> Callable[..., list[Event]]:
    """``make_events("JobStatusChange", ...)`` → [job.status, derived lifecycle event]."""
    return build_events


class Recorder:
    """A receiver that records ``(sender, kwargs)``; thread-safe and waitable."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        with self._cond:
            self.calls.append((sender, kwargs))
            self._cond.notify_all()

    @property
    def senders(self) -> list[Any]:
        with self._cond:
            return [sender for sender, _ in self.calls]

    def kwarg(self, name: str) -> list[Any]:
        with self._cond:
            return [kwargs.get(name) for _, kwargs in self.calls]

    def wait_count(self, count: int, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda calls: len(calls) >= count, timeout)

    def wait_for(
        self, condition: Callable[[list[tuple[Any, dict[str, Any]]]], bool], timeout: float = 5.0
    ) -> bool:
        """Wait until ``condition(calls)`` holds; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: condition(self.calls), timeout)


@pytest.fixture
def record() -> Iterator[Callable[..., Recorder]]:
    """``record(signal, sender=ANY)`` connects a :class:`Recorder` until the test ends."""
    connected: list[tuple[NamedSignal, Recorder]] = []

    def connect(signal: NamedSignal, sender: Any = None) -> Recorder:
        recorder = Recorder()
        if sender is None:
            signal.connect(recorder, weak=False)
        else:
            signal.connect(recorder, sender=sender, weak=False)
        connected.append((signal, recorder))
        return recorder

    yield connect
    for signal, recorder in connected:
        signal.disconnect(recorder)
