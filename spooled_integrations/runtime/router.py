"""Which subscriptions an event goes to, found through an index on the event type.

Globs are expanded against the known vocabulary when the router is built, so matching
an event is two dict lookups (type, then queue) plus the cheap filters of the few
candidates left: 1,000 subscriptions for different events cost about what 10 do. Event types this
package does not know only match ``*`` subscriptions.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spooled_integrations.protocol import Event, resolve
from spooled_integrations.runtime.subscriptions import (
    Subscription,
    SubscriptionSet,
    load_subscriptions,
)

__all__ = ["Router"]


@dataclass(frozen=True, slots=True)
class _Route:
    """A subscription compiled to what matching needs."""

    subscription: Subscription
    order: int
    queues: frozenset[str] | None
    job_ids: frozenset[str] | None
    worker_ids: frozenset[str] | None
    where: tuple[tuple[str, tuple[Any, ...]], ...]

    def accepts(self, event: Event) -> bool:
        if self.queues is not None and event.queue_name not in self.queues:
            return False
        if self.job_ids is not None and event.job_id not in self.job_ids:
            return False
        if self.worker_ids is not None and event.worker_id not in self.worker_ids:
            return False
        data = event.data
        for key, allowed in self.where:
            if key not in data:
                return False
            value = data[key]
            if not any(_equal(value, option) for option in allowed):
                return False
        return True


def _equal(value: Any, expected: Any) -> bool:
    # JSON true is not 1: keep booleans apart from numbers.
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    return bool(value == expected)


def _compile(sub: Subscription, order: int) -> _Route:
    where = tuple(
        (key, tuple(value) if isinstance(value, (list, tuple)) else (value,))
        for key, value in sub.where.items()
    )
    return _Route(
        subscription=sub,
        order=order,
        queues=sub.filter_values("queue"),
        job_ids=sub.filter_values("job_id"),
        worker_ids=sub.filter_values("worker_id"),
        where=where,
    )


@dataclass(frozen=True, slots=True)
class _Bucket:
    """The routes of one event type: those without a queue filter, and by queue name."""

    any_queue: tuple[_Route, ...]
    by_queue: Mapping[str, tuple[_Route, ...]]

    @classmethod
    def build(cls, routes: Sequence[_Route]) -> _Bucket:
        by_queue: dict[str, list[_Route]] = {}
        for route in routes:
            for name in route.queues or ():
                by_queue.setdefault(name, []).append(route)
        return cls(
            any_queue=tuple(r for r in routes if r.queues is None),
            by_queue={name: tuple(found) for name, found in by_queue.items()},
        )

    def candidates(self, queue_name: str | None) -> Sequence[_Route]:
        queued = self.by_queue.get(queue_name) if queue_name is not None else None
        if not queued:
            return self.any_queue
        if not self.any_queue:
            return queued
        return list(heapq.merge(self.any_queue, queued, key=_order))

    def all(self) -> list[_Route]:
        seen = {id(r): r for r in self.any_queue}
        for routes in self.by_queue.values():
            seen.update((id(r), r) for r in routes)
        return sorted(seen.values(), key=_order)


def _order(route: _Route) -> int:
    return route.order


_EMPTY = _Bucket(any_queue=(), by_queue={})


class Router:
    """Match events to subscriptions; results keep the subscriptions' order.

    The index is two levels deep: event type, then queue name for subscriptions with a
    ``queue`` filter (the common way to tell many rules apart), so candidates are only
    the rules that can match. ``subscriptions`` is anything :func:`load_subscriptions`
    accepts (validated here unless it is a ``SubscriptionSet`` already).
    """

    def __init__(
        self, subscriptions: SubscriptionSet | Sequence[Any] | str | os.PathLike[str] = ()
    ) -> None:
        subs = load_subscriptions(subscriptions)
        self._subscriptions = subs
        by_type: dict[str, list[_Route]] = {}
        catch_all: list[_Route] = []
        for order, sub in enumerate(subs):
            route = _compile(sub, order)
            for event_type in sub.event_types:
                by_type.setdefault(event_type, []).append(route)
            if sub.matches_all:
                catch_all.append(route)
        self._index = {name: _Bucket.build(routes) for name, routes in by_type.items()}
        self._catch_all = _Bucket.build(catch_all)

    @property
    def subscriptions(self) -> SubscriptionSet:
        return self._subscriptions

    def _bucket(self, event_type: str) -> _Bucket:
        bucket = self._index.get(event_type)
        if bucket is not None:
            return bucket
        return _EMPTY if resolve(event_type) is not None else self._catch_all

    def candidates(self, event_type: str, queue_name: str | None = None) -> list[Subscription]:
        """Subscriptions that the index offers for a type (and queue), before filters.

        Without ``queue_name``, every subscription for the type.
        """
        bucket = self._bucket(event_type)
        routes = bucket.all() if queue_name is None else bucket.candidates(queue_name)
        return [route.subscription for route in routes]

    def match(self, event: Event) -> list[Subscription]:
        """Subscriptions whose events and filters accept ``event``, in configured order."""
        routes = self._bucket(event.type).candidates(event.queue_name)
        return [route.subscription for route in routes if route.accepts(event)]
