"""Shared fixtures: brokers on localhost.

Tests that need Redis or RabbitMQ skip with a clear message when the service does not
answer, except under ``CI=true``, where a missing service is a failure.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator

import pytest

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _require(name: str, host: str, port: int) -> None:
    if _answers(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: the service must run; .ci/run starts it)")
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture
def redis_url() -> str:
    """A Redis URL on a database of its own; skips (or fails under CI) without Redis."""
    _require("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
def rabbitmq_url() -> str:
    """An AMQP URL; skips (or fails under CI) without RabbitMQ."""
    _require("RabbitMQ", RABBIT_HOST, RABBIT_PORT)
    return f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/%2F"  # kombu and pika alike


@pytest.fixture
def unique_name() -> str:
    """A name no other test (or earlier run) uses: for queues and Redis keys."""
    return f"spooled-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """Undo what an in-process Celery worker does to the root logger (level ERROR)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers
