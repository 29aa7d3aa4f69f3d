"""Fixtures for the Dramatiq integration: stub brokers, in-process workers, ``dramatiq`` runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from spooled_integrations.client import ConnectionOptions
from spooled_integrations.dramatiq import SpooledMiddleware
from spooled_integrations.testing import Emulator

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DRAMATIQ = str(Path(sys.executable).with_name("dramatiq"))

FAST = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.2, "connect_timeout": 2.0}


@pytest.fixture(autouse=True)
def _no_spooled_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SPOOLED_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("SPOOLED_"):
            monkeypatch.delenv(name)


def fast_connection(emu: Emulator, **overrides: Any) -> ConnectionOptions:
    return ConnectionOptions(base_url=emu.base_url, api_key=emu.api_key, **{**FAST, **overrides})


@pytest.fixture
def make_broker() -> Iterator[Callable[..., tuple[StubBroker, SpooledMiddleware]]]:
    """``make_broker(**middleware_kwargs)``: a StubBroker with a SpooledMiddleware.

    ``process_boot`` is emitted by hand, as the ``dramatiq`` command would.
    """
    made: list[StubBroker] = []

    def factory(**kwargs: Any) -> tuple[StubBroker, SpooledMiddleware]:
        broker = StubBroker()
        middleware = SpooledMiddleware(**kwargs)
        broker.add_middleware(middleware)
        broker.emit_after("process_boot")
        made.append(broker)
        return broker, middleware

    yield factory
    for broker in made:
        broker.close()


@pytest.fixture
def start_worker() -> Iterator[Callable[[dramatiq.Broker], dramatiq.Worker]]:
    """``start_worker(broker)``: a started ``dramatiq.Worker``, stopped at teardown."""
    workers: list[dramatiq.Worker] = []

    def factory(broker: dramatiq.Broker) -> dramatiq.Worker:
        worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=2)
        worker.start()
        workers.append(worker)
        return worker

    yield factory
    for worker in workers:
        worker.stop()


# -- the real dramatiq command ---------------------------------------------------------


@dataclass
class DramatiqRun:
    """One ``dramatiq`` command in its own session (process group), with its log file."""

    process: subprocess.Popen[bytes]
    log: Path
    output: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        """What the test actor wrote, one dict per run of the actor."""
        if not self.output.exists():
            return []
        return [json.loads(line) for line in self.output.read_text().splitlines() if line]

    def wait_records(self, count: int, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.records()
            if len(records) >= count or self.process.poll() is not None:
                return records
            time.sleep(0.05)
        return self.records()

    def terminate(self, timeout: float) -> tuple[int | None, float]:
        """SIGTERM the main process; ``(exit code or None on timeout, seconds taken)``."""
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - began

    def group_alive(self) -> bool:
        """Whether any process of the run (workers, forks) is still there."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - a reused pgid of someone else
            return False
        return True

    def kill(self) -> None:
        for _ in range(50):
            if not self.group_alive():
                return
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        self.process.poll()


@pytest.fixture
def run_dramatiq(tmp_path: Path) -> Iterator[Callable[..., DramatiqRun]]:
    """``run_dramatiq(module, env, *args, cwd=...)``: start ``dramatiq``; killed at teardown."""
    runs: list[DramatiqRun] = []

    def factory(
        module: str, env: dict[str, str], *args: str, cwd: Path = HERE, processes: int = 2
    ) -> DramatiqRun:
        index = len(runs)
        log = tmp_path / f"dramatiq-{index}.log"
        output = tmp_path / f"records-{index}.jsonl"
        full_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")},
            "SPOOLED_TEST_OUTPUT": str(output),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        command = [DRAMATIQ, module, "--path", str(cwd), "-p", str(processes), "-t", "2", *args]
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run = DramatiqRun(process, log, output)
        runs.append(run)
        return run

    yield factory
    for run in runs:
        run.kill()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """An emulator pinging every second, for the tests that run the dramatiq command."""
    with Emulator(ping_interval=1.0) as emu:
        yield emu


@pytest.fixture
def redis_broker(redis_url: str, unique_name: str) -> Iterator[dict[str, str]]:
    import redis

    yield {
        "SPOOLED_TEST_BROKER": "redis",
        "SPOOLED_TEST_BROKER_URL": redis_url,
        "SPOOLED_TEST_QUEUE": unique_name,
    }
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"dramatiq:{unique_name}*"))
    if keys:
        client.delete(*keys)
    client.close()
