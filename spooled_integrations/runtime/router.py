"""Which subscriptions an event goes to, found through an index on the event type.

Globs are expanded against the known vocabulary when the router is built, and each
queue's candidates are merged with the type's queue-less rules then, so matching an
event is two dict lookups (type, then queue) plus the cheap filters of the few
candidates left: 1,000 subscriptions for different events cost what 1 does
(``bench/routing.py``). Event types this package does not know only match ``*``
subscriptions.
"""

from __future__ import annotations

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
    """Routes that can match one event type (and queue name), in configured order.

    ``answer`` is the match itself when no route has a filter beyond the queue, so
    the common case returns a ready tuple.
    """

    routes: tuple[_Route, ...]
    answer: tuple[Subscription, ...] | None

    @classmethod
    def of(cls, routes: Sequence[_Route]) -> _Candidates:
        ordered = tuple(sorted(routes, key=_order))
        plain = all(route.queue_only for route in ordered)
        return cls(ordered, tuple(r.subscription for r in ordered) if plain else None)

    def accepted(self, event: Event) -> tuple[Subscription, ...]:
        if self.answer is not None:
            return self.answer
        return tuple(route.subscription for route in self.routes if route.accepts_filters(event))


def _order(route: _Route) -> int:
    return route.order


@dataclass(frozen=True, slots=True)
class _Bucket:
    """The routes of one event type: by queue name, and for any other queue.

    A queue's candidates include the routes without a queue filter, so matching is
    one lookup whether a type has no rule, one or a thousand. (The price: each queue
    name holds its own copy of those references, built once at load.)
    """

    by_queue: Mapping[Any, _Candidates]  # str keys; looked up with whatever the event has
    other_queues: _Candidates

    @classmethod
    def build(cls, routes: Sequence[_Route]) -> _Bucket:
        any_queue = [r for r in routes if r.queues is None]
        by_queue: dict[str, list[_Route]] = {}
        for route in routes:
            for name in route.queues or ():
                by_queue.setdefault(name, list(any_queue)).append(route)
        return cls(
            by_queue={name: _Candidates.of(found) for name, found in by_queue.items()},
            other_queues=_Candidates.of(any_queue),
        )

    def candidates(self, queue_name: Any) -> _Candidates:
        try:
            return self.by_queue.get(queue_name, self.other_queues)
        except TypeError:  # an unhashable queue_name names no queue
            return self.other_queues

    def all(self) -> list[_Route]:
        seen = {id(r): r for r in self.other_queues.routes}
        for found in self.by_queue.values():
            seen.update((id(r), r) for r in found.routes)
        return sorted(seen.values(), key=_order)


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
        routes = bucket.all() if queue_name is None else bucket.candidates(queue_name).routes
        return [route.subscription for route in routes]

    def match(self, event: Event) -> tuple[Subscription, ...]:
        """Subscriptions whose events and filters accept ``event``, in configured order."""
        bucket = self._index.get(event.type) or self._bucket(event.type)
        try:  # bucket.candidates() inlined: this runs for every event
            found = bucket.by_queue.get(event.data.get("queue_name"), bucket.other_queues)
        except TypeError:
            found = bucket.other_queues
        answer = found.answer
        return answer if answer is not None else found.accepted(event)
