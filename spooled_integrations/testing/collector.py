"""A thread-safe list that tests can wait on: handlers append, the test waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Collector"]

T = TypeVar("T")


class Collector(Generic[T]):
    """Collect items from other threads; ``wait_for`` blocks until a condition holds.

    Use it as a handler: ``client.on_event(collector)``.
    """

    def __init__(self) -> None:
        self._items: list[T] = []
        self._cond = threading.Condition()

    def __call__(self, item: T) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    @property
    def items(self) -> list[T]:
        with self._cond:
            return list(self._items)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def wait_for(self, condition: Callable[[list[T]], bool], timeout: float = 5.0) -> bool:
        """Wait until ``condition(items)`` is true; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition(self._items):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def wait_count(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` items arrived."""
        return self.wait_for(lambda items: len(items) >= count, timeout)
