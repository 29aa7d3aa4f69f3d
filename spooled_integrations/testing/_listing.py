"""``GET /jobs`` query parsing and paging, in both modes (protocol §8).

Strict mode is the backend source: ``queue_name``, one ``status``, ``limit`` and
``offset``; everything else is ignored and the order is always ``created_at DESC``.
Default mode adds what the hosted service reportedly honours: a comma list of
statuses, ``created_after``/``created_before``, ``order_by``/``order_dir`` and the
``X-Has-More`` header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spooled_integrations.protocol.timestamps import parse_timestamp
from spooled_integrations.testing._auth import Rejected
from spooled_integrations.testing._state import JOB_STATUSES, Job

__all__ = ["JobQuery", "select_jobs"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
_ORDER_FIELDS = frozenset({"created_at", "started_at", "completed_at", "updated_at"})
_INTEGER = re.compile(r"[+-]?\d{1,18}\Z", re.ASCII)
_QUEUE_EXTRA = frozenset("-_.")


def _bad_query(name: str, problem: str) -> Rejected:
    """axum's ``Query`` rejection (text/plain 400)."""
    return Rejected(400, f"Failed to deserialize query string: {name}: {problem}")


def _integer(query: Mapping[str, str], name: str, default: int) -> int:
    value = query.get(name)
    if value is None:
        return default
    if not _INTEGER.match(value):
        raise _bad_query(name, "invalid digit found in string")
    return int(value)


def _moment(query: Mapping[str, str], name: str) -> datetime | None:
    value = query.get(name)
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        raise _bad_query(name, "input contains invalid characters") from None


def _queue_name(value: str | None) -> str | None:
    """The backend's check; an invalid (or empty) name is ignored, not refused."""
    if not value or len(value) > 255:
        return None
    if not all(char.isalnum() or char in _QUEUE_EXTRA for char in value):
        return None
    return value


def _statuses(value: str | None, *, strict: bool) -> frozenset[str] | None:
    """Strict: exactly one known status, else no filter. Default: any known ones listed."""
    if value is None:
        return None
    if strict:
        return frozenset({value}) if value in JOB_STATUSES else None
    wanted = frozenset(part.strip() for part in value.split(",")) & JOB_STATUSES
    return wanted or None


@dataclass(frozen=True)
class JobQuery:
    """A parsed ``GET /jobs`` query; ``None`` filters match every job."""

    queue_name: str | None = None
    statuses: frozenset[str] | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    created_after: datetime | None = None
    created_before: datetime | None = None
    order_by: str = "created_at"
    descending: bool = True

    @classmethod
    def parse(cls, query: Mapping[str, str], *, strict: bool) -> JobQuery:
        """Read the query like the server of that mode; ``Rejected`` (400) for a
        non-integer ``limit``/``offset`` or (default mode) an unreadable date."""
        limit = min(max(_integer(query, "limit", DEFAULT_LIMIT), 1), MAX_LIMIT)
        offset = max(_integer(query, "offset", 0), 0)
        base = cls(
            queue_name=_queue_name(query.get("queue_name")),
            statuses=_statuses(query.get("status"), strict=strict),
            limit=limit,
            offset=offset,
        )
        if strict:
            return base
        order_by = query.get("order_by", "created_at")
        return cls(
            queue_name=base.queue_name,
            statuses=base.statuses,
            limit=limit,
            offset=offset,
            created_after=_moment(query, "created_after"),
            created_before=_moment(query, "created_before"),
            order_by=order_by if order_by in _ORDER_FIELDS else "created_at",
            descending=query.get("order_dir", "desc").lower() != "asc",
        )

    def matches(self, job: Job) -> bool:
        return (
            (self.queue_name is None or job.queue_name == self.queue_name)
            and (self.statuses is None or job.status in self.statuses)
            and (self.created_after is None or job.created_at >= self.created_after)
            and (self.created_before is None or job.created_at < self.created_before)
        )

    def sort_key(self, job: Job) -> tuple[Any, ...]:
        """Postgres order: NULL sorts above every value; creation order breaks ties."""
        value = getattr(job, self.order_by)
        return (value is None, value or job.created_at, job.seq)


def select_jobs(jobs: Iterable[Job], query: JobQuery) -> tuple[list[Job], bool]:
    """One page of the matching jobs, and whether more follow it."""
    matching = sorted(
        (job for job in jobs if query.matches(job)), key=query.sort_key, reverse=query.descending
    )
    end = query.offset + query.limit
    return matching[query.offset : end], end < len(matching)
