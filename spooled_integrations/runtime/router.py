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

from spooled_integrations.protocol import Event, EventType, resolve
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

    @property
    def queue_only(self) -> bool:
        """No filter but the queue (which the index matches): every candidate matches."""
        return self.job_ids is None and self.worker_ids is None and not self.where

    def accepts(self, event: Event) -> bool:
        if self.queues is not None and event.queue_name not in self.queues:
            return False
        return self.accepts_filters(event)

    def accepts_filters(self, event: Event) -> bool:
        """Every filter but the queue."""
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
class _Candidates:
    """Routes the index offers for one type and queue, in configured order.

    ``answer`` is the match itself when no route has a filter beyond the queue.
    """

    routes: tuple[_Route, ...]
    answer: tuple[Subscription, ...] | None

    @classmethod
    def of(cls, routes: Sequence[_Route]) -> _Candidates:
        plain = all(route.queue_only for route in routes)
        return cls(tuple(routes), tuple(r.subscription for r in routes) if plain else None)

    def accepted(self, event: Event) -> list[Subscription]:
        if self.answer is not None:
            return list(self.answer)
        return [route.subscription for route in self.routes if route.accepts_filters(event)]


@dataclass(frozen=True, slots=True)
class _Bucket:
    """The routes of one event type: those without a queue filter, and by queue name."""

    any_queue: _Candidates
    by_queue: Mapping[str, _Candidates]

    @classmethod
    def build(cls, routes: Sequence[_Route]) -> _Bucket:
        by_queue: dict[str, list[_Route]] = {}
        for route in routes:
            for name in route.queues or ():
                by_queue.setdefault(name, []).append(route)
        return cls(
            any_queue=_Candidates.of([r for r in routes if r.queues is None]),
            by_queue={name: _Candidates.of(found) for name, found in by_queue.items()},
        )

    def candidates(self, queue_name: str | None) -> Sequence[_Route]:
        queued = self.by_queue.get(queue_name) if queue_name is not None else None
        if queued is None:
            return self.any_queue.routes
        if not self.any_queue.routes:
            return queued.routes
        return list(heapq.merge(self.any_queue.routes, queued.routes, key=_order))

    def all(self) -> list[_Route]:
        seen = {id(r): r for r in self.any_queue.routes}
        for found in self.by_queue.values():
            seen.update((id(r), r) for r in found.routes)
        return sorted(seen.values(), key=_order)


def _order(route: _Route) -> int:
    return route.order


_EMPTY = _Bucket.build(())


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
        self._catch_all = _Bucket.build(catch_all)
        # Every known type has a bucket (maybe empty), so only unknown types miss.
        self._index = dict.fromkeys((member.value for member in EventType), _EMPTY)
        self._index.update((name, _Bucket.build(routes)) for name, routes in by_type.items())

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
        bucket = self._index.get(event.type) or self._bucket(event.type)
        if bucket.by_queue:
            queue_name = event.data.get("queue_name")
            queued = bucket.by_queue.get(queue_name) if isinstance(queue_name, str) else None
            if queued is not None:
                if bucket.any_queue.routes:  # rules with and without a queue filter
                    routes = bucket.candidates(queue_name)
                    return [r.subscription for r in routes if r.accepts(event)]
                return queued.accepted(event)  # the index matched the queue
        return bucket.any_queue.accepted(event)
