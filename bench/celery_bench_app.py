"""The Celery app ``bench/celery_latency.py`` runs in a prefork worker, configured from the env.

Spooled is enabled by configuration only (``imports`` + ``spooled_enabled``), so the
worker runs our bootstep exactly as a user's would. Two subscriptions route
``job.completed`` by the event's queue: ``latency`` events to ``bench.started`` (runs
here), ``throughput`` events to ``bench.sink`` on a queue nobody consumes (the bench
counts the messages). Every task that runs notes when its body started.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

app = Celery("celery_bench_app")
app.conf.update(
    broker_url=os.environ["BENCH_BROKER"],
    broker_connection_retry_on_startup=True,
    task_default_queue="bench",
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    imports=["spooled_integrations.celery"],
    spooled_enabled=True,
    spooled_base_url=os.environ.get("BENCH_SPOOLED_URL", ""),
    spooled_api_key=os.environ.get("BENCH_SPOOLED_KEY", ""),
    spooled_transport=os.environ.get("BENCH_TRANSPORT", "ws"),
    spooled_subscriptions=[
        {
            "name": "latency",
            "events": ["job.completed"],
            "queue": "latency",
            "task": "bench.started",
            "delivery": "every_node",
        },
        {
            "name": "throughput",
            "events": ["job.completed"],
            "queue": "throughput",
            "task": "bench.sink",
            "delivery": "every_node",
            "options": {"queue": "bench-sink"},
        },
    ],
)

_results: dict[int, redis.Redis] = {}  # one client per (forked) process


def note_start(ident: str) -> None:
    """Push ``"<ident> <time.time()>"`` to the results list."""
    started = time.time()
    client = _results.get(os.getpid())
    if client is None:
        client = _results[os.getpid()] = redis.Redis.from_url(os.environ["BENCH_RESULTS"])
    client.rpush("bench:starts", f"{ident} {started!r}")


@app.task(name="bench.started")
def started(event: dict[str, Any]) -> None:
    note_start(event["data"]["job_id"])


@app.task(name="bench.raw")
def raw(payload: dict[str, Any]) -> None:
    note_start(payload["id"])


@app.task(name="bench.sink")
def sink(payload: Any) -> None:  # never consumed: the bench counts queued messages
    pass
