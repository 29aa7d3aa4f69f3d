"""What a ``fork()`` of the worker main process must not copy: a live listener.

Prefork replaces children (``--max-tasks-per-child``, ``--max-memory-per-child``, a
crash) by forking the main process while the runtime runs there. Two hooks, registered
once with ``os.register_at_fork`` when the first runtime starts:

- **disarm** (in the child): every runtime copied into the child is forgotten by its
  bootstep and *parked* -- kept referenced and never called -- so no method and no
  finalizer in the child can touch the parent's socket or locks. The threads are not
  copied by ``fork()``; without the runtime object nothing can restart them.
- **gate** (around the fork): the dispatch thread holds :data:`fork_gate` while it is
  inside ``send_task``; the fork waits (at most :data:`GATE_WAIT` seconds) until that
  publish is done, so a child never inherits kombu's producer pool mid-operation (a
  lock held by a thread that does not exist in the child would hang it).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any, Protocol

__all__ = ["GATE_WAIT", "Disarmable", "ForkGate", "fork_gate", "track", "untrack"]

GATE_WAIT = 1.0
"""Seconds a fork waits for an in-flight publish; after that it forks anyway."""


class Disarmable(Protocol):
    """A holder of a runtime that a forked child must not use."""

    def disarm(self) -> Any:
        """Forget the runtime and return it (no lock, no I/O)."""


class ForkGate:
    """A lock a fork waits for (bounded) while a publish is in flight."""

    def __init__(self, wait: float = GATE_WAIT) -> None:
        self.wait = wait
        self._lock = threading.Lock()
        self._held_for_fork = False

    @contextlib.contextmanager
    def publishing(self) -> Iterator[None]:
        with self._lock:
            yield

    def before_fork(self) -> None:
        self._held_for_fork = self._lock.acquire(timeout=self.wait)

    def after_fork_in_parent(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._lock.release()

    def after_fork_in_child(self) -> None:
        # A fresh lock: the parent's may be held by a thread the child does not have.
        self._lock = threading.Lock()
        self._held_for_fork = False


fork_gate = ForkGate()

_holders: weakref.WeakSet[Any] = weakref.WeakSet()
_parked: list[Any] = []  # runtimes inherited by a forked child: kept, never touched
_register_lock = threading.Lock()
_registered = threading.Event()


def _disarm_in_child() -> None:
    fork_gate.after_fork_in_child()
    for holder in list(_holders):
        runtime = holder.disarm()
        if runtime is not None:
            _parked.append(runtime)
    _holders.clear()


def track(holder: Disarmable) -> None:
    """Disarm ``holder`` in every child forked from now on (registers the hooks once)."""
    with _register_lock:
        if not _registered.is_set():
            os.register_at_fork(
                before=fork_gate.before_fork,
                after_in_parent=fork_gate.after_fork_in_parent,
                after_in_child=_disarm_in_child,
            )
            _registered.set()
        _holders.add(holder)


def untrack(holder: Disarmable) -> None:
    _holders.discard(holder)
