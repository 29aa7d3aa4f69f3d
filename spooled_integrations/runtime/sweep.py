"""One catch-up sweep: the job list turned into the lifecycle events a gap hid.

The stream has no resume point, but ``GET /api/v1/jobs`` lists jobs with their
timestamps, newest ``created_at`` first. A job summary proves these transitions:

==================  =====================================================
``job.created``     ``created_at``
``job.started``     ``started_at``
``job.completed``   ``completed_at`` and status ``completed``
``job.failed``      ``completed_at`` and status ``failed`` or ``deadletter``
``job.cancelled``   status ``cancelled``, at ``completed_at`` or else the full
                    job's ``updated_at`` (the backend's cancel sets only that)
==================  =====================================================

A sweep delivers the ones whose moment lies in ``[since, until]``. It pages each
listing until ``created_at`` falls below ``horizon`` (a job cannot finish before it
was created, so older jobs are left to ``catch_up_max_age``). It is written for both
servers: the backend source takes one ``status`` and ignores every other filter and
order, so each listing asks for one status (or none) and every answer is checked
against what was asked; the hosted service also honours ``created_after`` and sends
``X-Has-More``, which only cut the paging short.

Recovered events look like the status-change form of their transition (plus
``duration_ms`` for a completion, from ``started_at`` and ``completed_at``): no retry
count in ``data`` (the summary is kept whole under ``data["summary"]``), so their
identity key is the one the duplicate window and claim coordination already hold
for the live twin. They are marked ``derived_from="catch_up"``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from spooled_integrations.errors import RateLimitError, SpooledConnectionError
from spooled_integrations.protocol import Event, EventType, format_timestamp, parse_timestamp
from spooled_integrations.protocol.models import CATCH_UP
from spooled_integrations.protocol.vocabulary import LIFECYCLE_TYPES, TERMINAL_STATUSES

__all__ = ["RECOVERABLE", "Interest", "JobSource", "SweepResult", "events_of", "sweep"]

logger = logging.getLogger(__name__)

CREATED = EventType.JOB_CREATED.value
STARTED = EventType.JOB_STARTED.value
COMPLETED = EventType.JOB_COMPLETED.value
FAILED = EventType.JOB_FAILED.value
CANCELLED = EventType.JOB_CANCELLED.value

RECOVERABLE = LIFECYCLE_TYPES - {EventType.JOB_RETRYING.value}
"""The lifecycle types a job summary can prove (not ``job.retrying``/``job.progress``)."""

_ORDER = {CREATED: 0, STARTED: 1, COMPLETED: 2, FAILED: 2, CANCELLED: 2}
_TERMINAL = {"completed": COMPLETED, "failed": FAILED, "deadletter": FAILED}
_FINISHED = TERMINAL_STATUSES
PAGE = 100  # the backend's largest page


@dataclass(frozen=True)
class Interest:
    """What a sweep looks for: lifecycle ``types`` in ``queues`` (``None``: every queue)."""

    types: frozenset[str]
    queues: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        return not self.types or (self.queues is not None and not self.queues)

    @property
    def scope(self) -> str:
        """The queues a sweep of this interest lists (``*``: every queue)."""
        return "*" if self.queues is None else ",".join(sorted(self.queues))


class JobSource(Protocol):
    """The part of :class:`~spooled_integrations.client.JobsClient` a sweep uses."""

    def list_jobs(self, **params: Any) -> Any: ...

    def get_job(self, job_id: str) -> dict[str, Any] | None: ...


Call = Callable[[Callable[[], Any]], Any]


@dataclass
class SweepResult:
    """What one sweep found; ``complete`` is False when part of the gap is unknown."""

    since: datetime
    until: datetime
    events: list[Event] = field(default_factory=list)
    requests: int = 0
    complete: bool = True
    reason: str | None = None
    """Why the sweep is incomplete (``request_cap``, ``max_age``)."""
    listed_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    """When it began listing: what changed after that may be missing from it."""
    oldest_open: dict[datetime, datetime | None] = field(default_factory=dict)
    """For each moment ``m`` the sweep was asked about (``open_after``): ``created_at``
    of the oldest job seen open at ``m`` (not finished, or finished at or after ``m``),
    ``None`` if none was. No older job can move at or after ``m``, so a later sweep that
    starts there need not page past it."""


def sweep(
    jobs: JobSource,
    interest: Interest,
    since: datetime,
    until: datetime,
    *,
    horizon: datetime,
    max_requests: int,
    request: Call | None = None,
    open_after: Iterable[datetime] = (),
) -> SweepResult:
    """Page the job list of each queue of ``interest`` back to ``horizon`` and collect
    the transitions inside ``[since, until]``, oldest first, each once.

    One listing per queue and no ``status`` filter: ``job.created``/``job.started`` can
    be proved by a job in any status, and seeing unfinished jobs tells the next sweep
    how far back it must page. ``request`` wraps each HTTP call (the caller's retry
    policy); by default a call is made once. ``open_after``: the moments
    :attr:`SweepResult.oldest_open` is kept for.
    """
    result = SweepResult(since, until, oldest_open=dict.fromkeys(open_after))
    run = _Sweep(jobs, interest, request or _once, result, max_requests)
    queues: list[str | None] = [None] if interest.queues is None else [*sorted(interest.queues)]
    for queue in queues:
        if not run.page(queue, horizon):
            break
    return run.finish()


def _once(fn: Callable[[], Any]) -> Any:
    return fn()


class _Sweep:
    def __init__(
        self, jobs: JobSource, interest: Interest, call: Call, result: SweepResult, cap: int
    ) -> None:
        self.jobs, self.interest, self.call, self.result, self.cap = (
            jobs,
            interest,
            call,
            result,
            cap,
        )
        self.found: dict[str, tuple[datetime, int, Event]] = {}
        self.seen: set[str] = set()

    def page(self, queue: str | None, horizon: datetime) -> bool:
        """One queue's listing, page by page; False when the request cap was reached."""
        result = self.result
        offset = 0
        while True:
            if result.requests >= self.cap:
                result.complete, result.reason = False, "request_cap"
                return False
            result.requests += 1
            params = {
                "queue_name": queue,
                "limit": PAGE,
                "offset": offset,
                "created_after": horizon,  # honoured by the hosted service only
                "order_by": "created_at",
                "order_dir": "desc",
            }
            page = self.call(functools.partial(self.jobs.list_jobs, **params))
            older = False
            for summary in page.jobs:
                if summary.created_at < horizon:
                    older = True  # newest first: the rest is older still
                    break
                if queue is not None and summary.queue_name != queue:
                    continue  # a server that ignored the filter
                if summary.id not in self.seen:  # offset paging repeats rows of new jobs
                    self.seen.add(summary.id)
                    self.take(summary)
            received = len(page.jobs) + page.skipped
            if older or received < PAGE or page.has_more is False:
                return True
            offset += received

    def take(self, summary: Any) -> None:
        result = self.result
        oldest_open = result.oldest_open
        for moment, oldest in oldest_open.items():
            if _open(summary, moment) and (oldest is None or summary.created_at < oldest):
                oldest_open[moment] = summary.created_at
        for moment, event in events_of(summary, self.interest, result.since, result.until):
            self.found.setdefault(event.identity_base, (moment, _ORDER[event.type], event))
        if (
            summary.status == "cancelled"
            and CANCELLED in self.interest.types
            and summary.completed_at is None
            and summary.updated_at is None
            and summary.created_at <= result.until
        ):
            self.take_cancel(summary)

    def take_cancel(self, summary: Any) -> None:
        """The backend's cancel sets only ``updated_at``, shown by the full job."""
        self.result.requests += 1
        job = self.call(functools.partial(self.jobs.get_job, summary.id))
        moment = _timestamp(job.get("updated_at")) if isinstance(job, dict) else None
        result = self.result
        if moment is not None and result.since <= moment <= result.until:
            event = _event(CANCELLED, summary, moment)
            self.found.setdefault(event.identity_base, (moment, _ORDER[CANCELLED], event))

    def finish(self) -> SweepResult:
        ordered = sorted(self.found.values(), key=lambda item: (item[0], item[1]))
        self.result.events = [event for _, _, event in ordered]
        return self.result


def _open(summary: Any, moment: datetime) -> bool:
    """Not finished, or finished at or after ``moment`` (a cancel without a date: finished)."""
    if summary.status not in _FINISHED:
        return True
    finished = summary.completed_at or summary.updated_at
    return finished is not None and finished >= moment


def events_of(
    summary: Any, interest: Interest, since: datetime, until: datetime
) -> Iterable[tuple[datetime, Event]]:
    """The wanted transitions ``summary`` proves inside ``[since, until]`` (a cancel
    without ``completed_at``/``updated_at`` needs the full job: see ``_Sweep``)."""
    if interest.queues is not None and summary.queue_name not in interest.queues:
        return
    types = interest.types
    status = summary.status
    moments: list[tuple[str, datetime | None]] = [
        (CREATED, summary.created_at),
        (STARTED, summary.started_at),
    ]
    if status in _TERMINAL:
        moments.append((_TERMINAL[status], summary.completed_at))
    elif status == "cancelled":
        moments.append((CANCELLED, summary.completed_at or summary.updated_at))
    for kind, moment in moments:
        if kind in types and moment is not None and since <= moment <= until:
            yield moment, _event(kind, summary, moment)


def _timestamp(value: Any) -> datetime | None:
    try:
        return parse_timestamp(value) if isinstance(value, str) else None
    except ValueError:
        return None


_NEW_STATUS = {CREATED: "pending", STARTED: "processing"}


def _event(kind: str, summary: Any, moment: datetime) -> Event:
    raw = dict(summary.raw)
    stamp = format_timestamp(moment)
    data: dict[str, Any] = {
        "job_id": summary.id,
        "queue_name": summary.queue_name,
        "status": summary.status,
        "new_status": _NEW_STATUS.get(kind, summary.status),
        "timestamp": stamp,
        "summary": raw,
    }
    for name in ("priority", "created_at", "started_at", "completed_at"):
        if raw.get(name) is not None:
            data[name] = raw[name]
    error = raw.get("last_error")
    if kind == FAILED and isinstance(error, str):
        data["error"] = error
    if kind == COMPLETED and summary.started_at is not None and summary.completed_at is not None:
        # As the direct JobCompleted carries it: the run's length.
        data["duration_ms"] = int(
            (summary.completed_at - summary.started_at).total_seconds() * 1000
        )
    return Event(type=kind, data=data, wire_type=kind, raw_timestamp=stamp, derived_from=CATCH_UP)


def retrying(
    attempts: int,
    backoff: Callable[[int], float],
    wait: Callable[[float], bool],
    count: Callable[[int], None] = lambda n: None,
) -> Callable[[Callable[[], Any]], Any]:
    """A ``request`` wrapper for :func:`sweep`: retry 429/5xx/network errors.

    ``wait(seconds)`` returns True when the runtime is stopping (the sweep ends with the
    last error). A 429 waits its ``Retry-After`` when the server gives one. ``count(1)``
    is called for every attempt, failed ones included.
    """

    def call(fn: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            if wait(0):  # stopping: end the sweep between requests
                raise SpooledConnectionError("the runtime is stopping")
            attempt += 1
            count(1)
            try:
                return fn()
            except RateLimitError as exc:
                delay = exc.retry_after if exc.retry_after is not None else backoff(attempt)
                last: SpooledConnectionError = exc
            except SpooledConnectionError as exc:
                if exc.status in (401, 403, 404):
                    raise
                delay, last = backoff(attempt), exc
            if attempt >= attempts or wait(delay):
                raise last

    return call


def clip(since: datetime, now: datetime, max_age: float) -> tuple[datetime, bool]:
    """``since`` no older than ``max_age`` seconds before ``now``; True if clipped."""
    oldest = now - timedelta(seconds=max_age)
    return (oldest, True) if since < oldest else (since, False)
