"""Jobs, queues and workers the emulator knows, and the events their changes mean.

Methods return the events a production server would publish for an action as
``(name, fields)`` pairs; the emulator decides whether to send them (default mode)
or not (strict mode, like the public backend source).

Jobs carry the backend's wall-clock timestamps (``created_at`` … ``updated_at``), which
the REST routes show; ``duration_ms`` of ``JobCompleted`` comes from the monotonic clock
unless a test gave a moment (``at``) for the job, then from those timestamps.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from spooled_integrations.protocol.timestamps import format_optional
from spooled_integrations.protocol.vocabulary import TERMINAL_STATUSES

__all__ = ["JOB_STATUSES", "Job", "State"]

JOB_STATUSES = frozenset(
    {"pending", "scheduled", "processing", "completed", "failed", "deadletter", "cancelled"}
)
_WAITING = frozenset({"pending", "scheduled"})
_FINISHED = frozenset({"completed", "failed", "deadletter"})  # these set completed_at
_RUNNABLE = _WAITING | {"processing"}  # these clear it (a retry)
_COUNT_NAMES = ("pending", "processing", "completed", "failed")

Published = list[tuple[str, dict[str, Any]]]


@dataclass
class Job:
    id: str
    queue_name: str
    payload: Any
    priority: int
    created_at: datetime
    updated_at: datetime
    seq: int = 0  # creation order: breaks created_at ties
    max_retries: int = 3
    status: str = "pending"
    retry_count: int = 0
    error: str | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    created_tick: float = 0.0  # monotonic, for duration_ms
    started_tick: float | None = None
    wall_durations: bool = False  # a test set a moment: durations from the timestamps

    def summary(self, *, strict: bool) -> dict[str, Any]:
        """One element of ``GET /jobs``: the backend's fields, plus what production adds."""
        summary: dict[str, Any] = {
            "id": self.id,
            "queue_name": self.queue_name,
            "status": self.status,
            "priority": self.priority,
            "retry_count": self.retry_count,
            "created_at": format_optional(self.created_at),
            "scheduled_at": format_optional(self.scheduled_at),
            "started_at": format_optional(self.started_at),
            "completed_at": format_optional(self.completed_at),
        }
        if not strict:
            summary["max_retries"] = self.max_retries
            summary["last_error"] = self.error
            summary["updated_at"] = format_optional(self.updated_at)
        return summary

    def status_json(self) -> dict[str, Any]:
        """One element of ``GET /jobs/status``."""
        return {
            "id": self.id,
            "status": self.status,
            "queue_name": self.queue_name,
            "retry_count": self.retry_count,
            "created_at": format_optional(self.created_at),
            "completed_at": format_optional(self.completed_at),
        }

    def to_json(self) -> dict[str, Any]:
        """``GET /jobs/{id}``: the backend's full job (fields the emulator lacks are null)."""
        return {
            "id": self.id,
            "queue_name": self.queue_name,
            "status": self.status,
            "payload": self.payload,
            "result": None,
            "retry_count": self.retry_count,
            "max_retries": self.max_retries,
            "last_error": self.error,
            "created_at": format_optional(self.created_at),
            "scheduled_at": format_optional(self.scheduled_at),
            "started_at": format_optional(self.started_at),
            "completed_at": format_optional(self.completed_at),
            "expires_at": None,
            "priority": self.priority,
            "tags": None,
            "timeout_seconds": 300,
            "parent_job_id": None,
            "completion_webhook": None,
            "assigned_worker_id": None,
            "lease_id": None,
            "lease_expires_at": None,
            "idempotency_key": None,
            "updated_at": format_optional(self.updated_at),
        }

    def duration_ms(self, moment: datetime, tick: float) -> int:
        """Time since processing started (or since creation, if it never did)."""
        if self.wall_durations:
            start = self.started_at or self.created_at
            return max(0, int((moment - start).total_seconds() * 1000))
        started = self.started_tick if self.started_tick is not None else self.created_tick
        return int((tick - started) * 1000)


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be a timezone-aware datetime")
    return at.astimezone(timezone.utc)


@dataclass
class State:
    """The emulator's little database."""

    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    jobs: dict[str, Job] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)  # worker id -> queue name
    paused: set[str] = field(default_factory=set)
    count_overrides: dict[str, dict[str, int]] = field(default_factory=dict)
    database_ok: bool = True
    redis_ok: bool = True
    db_error: bool = False
    _seq: itertools.count[int] = field(default_factory=itertools.count, init=False, repr=False)

    # -- jobs -----------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall_clock(), timezone.utc)

    def create_job(
        self,
        queue_name: str,
        payload: Any = None,
        priority: int = 0,
        *,
        max_retries: int = 3,
        at: datetime | None = None,
    ) -> tuple[Job, Published]:
        """A pending job created ``at`` (default now)."""
        moment = self.now() if at is None else _aware(at)
        job = Job(
            str(uuid.uuid4()),
            queue_name,
            payload,
            priority,
            created_at=moment,
            updated_at=moment,
            seq=next(self._seq),
            max_retries=max_retries,
            created_tick=self.clock(),
            wall_durations=at is not None,
        )
        self.jobs[job.id] = job
        fields = {"job_id": job.id, "queue_name": queue_name, "priority": priority}
        return job, [("JobCreated", fields)]

    def set_job_status(
        self, job_id: str, status: str, *, error: str | None = None, at: datetime | None = None
    ) -> Published:
        """Move a job to ``status`` ``at`` (default now); ``KeyError`` / ``ValueError``
        for bad input."""
        if status not in JOB_STATUSES:
            raise ValueError(f"unknown job status {status!r}; use one of {sorted(JOB_STATUSES)}")
        job = self.jobs[job_id]
        moment = self.now() if at is None else _aware(at)
        old = job.status
        if old == status:
            return []
        tick = self.clock()
        job.wall_durations = job.wall_durations or at is not None
        if status in _WAITING and old in ("processing", "failed"):
            job.retry_count += 1
        self._stamp_change(job, status, moment, tick)
        if status in ("failed", "deadletter"):
            job.error = error or job.error or "job failed"
        job.status = status
        base = {"job_id": job.id, "queue_name": job.queue_name}
        events: Published = [("JobStatusChange", {**base, "old_status": old, "new_status": status})]
        if status == "completed":
            events.append(("JobCompleted", {**base, "duration_ms": job.duration_ms(moment, tick)}))
        elif status in ("failed", "deadletter"):
            events.append(
                ("JobFailed", {**base, "error": job.error, "retry_count": job.retry_count})
            )
        return events

    @staticmethod
    def _stamp_change(job: Job, status: str, moment: datetime, tick: float) -> None:
        """The backend's timestamps: a cancel only touches ``updated_at``."""
        job.updated_at = moment
        if status == "scheduled":
            job.scheduled_at = moment
        if status == "processing":
            job.started_at = moment
            job.started_tick = tick
        if status in _FINISHED:
            job.completed_at = moment
        elif status in _RUNNABLE:
            job.completed_at = None

    def cancel_job(self, job_id: str) -> Published:
        """Cancel a job that has not finished; ``ValueError`` if it already has."""
        job = self.jobs[job_id]
        if job.status in TERMINAL_STATUSES:
            raise ValueError(f"job is {job.status}")
        return self.set_job_status(job_id, "cancelled")

    # -- queues -----------------------------------------------------------------

    def queue_counts(self, queue_name: str) -> dict[str, int]:
        """``queue.stats`` counts: pending+scheduled, processing, completed, failed+deadletter."""
        counts = dict.fromkeys(_COUNT_NAMES, 0)
        for job in self.jobs.values():
            if job.queue_name != queue_name:
                continue
            key = {"scheduled": "pending", "deadletter": "failed"}.get(job.status, job.status)
            if key in counts:
                counts[key] += 1
        counts.update(self.count_overrides.get(queue_name, {}))
        return counts

    def set_queue_counts(self, queue_name: str, counts: dict[str, int | None]) -> None:
        unknown = set(counts) - set(_COUNT_NAMES)
        if unknown:
            raise ValueError(f"unknown count names {sorted(unknown)}")
        given = {name: value for name, value in counts.items() if value is not None}
        if given:
            self.count_overrides[queue_name] = given
        else:
            self.count_overrides.pop(queue_name, None)

    def pause_queue(self, queue_name: str, *, paused: bool) -> Published:
        if paused:
            self.paused.add(queue_name)
        else:
            self.paused.discard(queue_name)
        return [("QueuePaused" if paused else "QueueResumed", {"queue_name": queue_name})]

    # -- workers --------------------------------------------------------------

    def register_worker(self, queue_name: str) -> tuple[str, Published]:
        worker_id = str(uuid.uuid4())
        self.workers[worker_id] = queue_name
        return worker_id, [("WorkerRegistered", {"worker_id": worker_id, "queue_name": queue_name})]

    def heartbeat(self, worker_id: str, status: str, current_job_id: str | None) -> Published:
        if worker_id not in self.workers:
            raise KeyError(worker_id)
        fields = {"worker_id": worker_id, "status": status, "current_job_id": current_job_id}
        return [("WorkerHeartbeat", fields)]

    def deregister_worker(self, worker_id: str) -> Published:
        del self.workers[worker_id]
        return [("WorkerDeregistered", {"worker_id": worker_id})]
