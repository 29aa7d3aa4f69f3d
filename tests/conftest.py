"""Shared fixtures: brokers on localhost.

Tests that need Redis or RabbitMQ skip with a clear message when the service does not
answer, except under ``CI=true``, where a missing service is a failure.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from spooled_integrations.client import ConnectionOptions
from spooled_integrations.runtime import RuntimeConfig, SpooledRuntime

if TYPE_CHECKING:
    from spooled_integrations.testing import Emulator

FAST_RECONNECT: dict[str, Any] = {
    "reconnect_delay": 0.05,
    "max_reconnect_delay": 0.2,
    "healthy_after": 0.5,
    "connect_timeout": 2.0,
}
"""Connection options that make reconnect tests take milliseconds, not seconds."""

RuntimeFactory = Callable[..., SpooledRuntime]

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


@pytest.fixture(autouse=True)
def _own_token_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test (and the workers it starts) gets its own JWT cache directory: the
    default, ``~/.cache/spooled-integrations``, would carry logins and refusals from
    one test to the next."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at each of ``cuts`` (taken modulo ``len(data) + 1``): a stream in pieces."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def fast_options(emu: Emulator, **overrides: Any) -> ConnectionOptions:
    """Options aimed at ``emu`` with :data:`FAST_RECONNECT`; ``overrides`` win."""
    values: dict[str, Any] = {"base_url": emu.base_url, "api_key": emu.api_key, **FAST_RECONNECT}
    values.update(overrides)
    return ConnectionOptions(**values)


@pytest.fixture
def make_options() -> Callable[..., ConnectionOptions]:
    """``make_options(emu, **overrides)``: fast reconnect settings aimed at ``emu``."""
    return fast_options


@pytest.fixture
def make_runtime() -> Iterator[RuntimeFactory]:
    """``make_runtime(emu, publisher=None, connection={...}, **config)``; stopped at teardown."""
    made: list[SpooledRuntime] = []

    def factory(
        emu: Emulator,
        publisher: Any = None,
        connection: dict[str, Any] | None = None,
        **config: Any,
    ) -> SpooledRuntime:
        options = fast_options(emu, **(connection or {}))
        runtime = SpooledRuntime(RuntimeConfig(connection=options, **config), publisher)
        made.append(runtime)
        return runtime

    yield factory
    for runtime in made:
        runtime.stop(timeout=2)


def run_health(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``spooled-integrations health --file PATH ARGS`` as a probe runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    return subprocess.run(
        [sys.executable, "-m", "spooled_integrations", "health", "--file", str(path), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def wait_health(path: Path, wanted: str, timeout: float = 30.0) -> bool:
    """Wait until the health file at ``path`` says ``wanted``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(path.read_text())["health"] == wanted:
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    return False
