"""The Celery app ``bench/celery_latency.py`` runs in a prefork worker, configured from the env.

Spooled is enabled by configuration only (``imports`` + ``spooled_enabled``), so the
worker runs our bootstep exactly as a user's would. Two subscriptions route
``job.completed`` by the event's queue: ``latency`` events to ``bench.started`` (runs
here), ``throughput`` events to ``bench.sink`` on a queue nobody consumes (the bench
counts the messages). Every task that runs notes when its body started.

A receiver of the (made-up) ``bench.rawloop`` event runs a raw ``send_task`` loop right
here, on the listener's dispatch thread in the worker main process: the reference for
P4 measured in the same process and thread that publish the routed tasks. A receiver
of ``bench.pause`` holds that thread for a while, so the bench can queue events first
and time the dispatch alone.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

from spooled_integrations.celery import spooled_signal

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


def results() -> redis.Redis:
    client = _results.get(os.getpid())
    if client is None:
        client = _results[os.getpid()] = redis.Redis.from_url(os.environ["BENCH_RESULTS"])
    return client


def note_start(ident: str) -> None:
    """Push ``"<ident> <time.time()>"`` to the results list."""
    started = time.time()
    results().rpush("bench:starts", f"{ident} {started!r}")


def event_payload(ident: str, queue: str = "latency") -> dict[str, Any]:
    """What the runtime sends a task for a ``job.completed`` (the whole event)."""
    return {
        "type": "job.completed",
        "wire_type": "JobCompleted",
        "timestamp": "2025-12-13T01:02:03.123456789Z",
        "derived_from": None,
        "data": {"job_id": ident, "queue_name": queue, "duration_ms": 1},
        "id": ident,
    }


@spooled_signal.connect_via("bench.pause")
def pause(sender: str, event: Any, **kwargs: Any) -> None:
    """Hold the dispatch thread so events pile up in its queue; note when it lets go."""
    time.sleep(event.data["seconds"])
    results().rpush("bench:resumed", repr(time.time()))


@spooled_signal.connect_via("bench.rawloop")
def raw_loop(sender: str, event: Any, **kwargs: Any) -> None:
    count, round_no = event.data["count"], event.data["round"]
    payloads = [event_payload(f"w{round_no}-{i}", "throughput") for i in range(count)]
    send = app.send_task
    started = time.perf_counter()
    for payload in payloads:
        send("bench.sink", args=[payload], queue="bench-sink-raw")
    results().rpush("bench:rawloop", repr(time.perf_counter() - started))


@app.task(name="bench.started")
def started(event: dict[str, Any]) -> None:
    note_start(event["data"]["job_id"])


@app.task(name="bench.raw")
def raw(payload: dict[str, Any]) -> None:
    note_start(payload["id"])


@app.task(name="bench.sink")
def sink(payload: Any) -> None:  # never consumed: the bench counts queued messages
    pass
