"""Jobs, queues and workers the emulator knows, and the events their changes mean.

Methods return the events a production server would publish for an action as
``(name, fields)`` pairs; the emulator decides whether to send them (default mode)
or not (strict mode, like the public backend source).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spooled_integrations.protocol.vocabulary import TERMINAL_STATUSES

__all__ = ["JOB_STATUSES", "Job", "State"]

JOB_STATUSES = frozenset(
    {"pending", "scheduled", "processing", "completed", "failed", "deadletter", "cancelled"}
)
_WAITING = frozenset({"pending", "scheduled"})
_COUNT_NAMES = ("pending", "processing", "completed", "failed")

Published = list[tuple[str, dict[str, Any]]]


@dataclass
class Job:
    id: str
    queue_name: str
    payload: Any
    priority: int
    status: str = "pending"
    retry_count: int = 0
    error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "queue_name": self.queue_name,
            "status": self.status,
            "payload": self.payload,
            "priority": self.priority,
            "retry_count": self.retry_count,
            "last_error": self.error,
        }


@dataclass
class State:
    """The emulator's little database."""

    clock: Callable[[], float] = time.monotonic
    jobs: dict[str, Job] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)  # worker id -> queue name
    paused: set[str] = field(default_factory=set)
    count_overrides: dict[str, dict[str, int]] = field(default_factory=dict)
    database_ok: bool = True
    redis_ok: bool = True
    db_error: bool = False

    # -- jobs -----------------------------------------------------------------

    def create_job(
        self, queue_name: str, payload: Any = None, priority: int = 0
    ) -> tuple[Job, Published]:
        job = Job(str(uuid.uuid4()), queue_name, payload, priority, created_at=self.clock())
        self.jobs[job.id] = job
        fields = {"job_id": job.id, "queue_name": queue_name, "priority": priority}
        return job, [("JobCreated", fields)]

    def set_job_status(self, job_id: str, status: str, *, error: str | None = None) -> Published:
        """Move a job to ``status``; raises ``KeyError`` / ``ValueError`` for bad input."""
        if status not in JOB_STATUSES:
            raise ValueError(f"unknown job status {status!r}; use one of {sorted(JOB_STATUSES)}")
        job = self.jobs[job_id]
        old = job.status
        if old == status:
            return []
        now = self.clock()
        if status in _WAITING and old in ("processing", "failed"):
            job.retry_count += 1
        if status == "processing":
            job.started_at = now
        if status in ("failed", "deadletter"):
            job.error = error or job.error or "job failed"
        job.status = status
        base = {"job_id": job.id, "queue_name": job.queue_name}
        events: Published = [("JobStatusChange", {**base, "old_status": old, "new_status": status})]
        if status == "completed":
            started = job.started_at if job.started_at is not None else job.created_at
            events.append(("JobCompleted", {**base, "duration_ms": int((now - started) * 1000)}))
        elif status in ("failed", "deadletter"):
            events.append(
                ("JobFailed", {**base, "error": job.error, "retry_count": job.retry_count})
            )
        return events

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
