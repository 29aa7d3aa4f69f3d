"""Fixtures for the Celery tests: real ``celery worker`` subprocesses and a Spooled emulator.

Each worker runs in its own session (process group) with its output in a log file;
teardown sends SIGTERM, waits, then SIGKILLs the group it started, and prints the log
of a failed test. Queues are unique per test and deleted afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations.testing import Emulator

HERE = Path(__file__).parent
WORKER_APP_DIR = HERE / "worker_app"
REPO = HERE.parents[2]
VENV_BIN = Path(sys.executable).parent
CELERY = str(VENV_BIN / "celery")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(ping_interval=1.0, keepalive_interval=0.5) as emu:
        yield emu


class WorkerProcess:
    """One ``celery worker`` subprocess and the file its tasks append to."""

    def __init__(
        self, proc: subprocess.Popen[bytes], log: Path, out: Path, node: str, env: dict[str, str]
    ) -> None:
        self.proc = proc
        self.env = env
        self.log = log
        self.out = out
        self.node = node

    def records(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def wait_records(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` tasks ran; fails with the worker log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.records()
            if len(records) >= count:
                return records
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(
            f"expected {count} task runs, saw {len(self.records())} "
            f"(worker exit code {self.proc.poll()})\n{self.output()}"
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait for Celery's ``<node> ready.`` line (the consumer is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"{self.node} ready." in self.output():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"worker {self.node} never became ready\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def terminate(self, timeout: float = 20.0, signum: int = signal.SIGTERM) -> float:
        """SIGTERM (warm) or SIGQUIT (cold shutdown); seconds until the process exited."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            self.proc.wait(timeout)
        return time.monotonic() - started

    def kill(self, grace: float = 3.0) -> None:
        """SIGTERM, then SIGKILL for the whole group after ``grace`` seconds.

        The grace is short on purpose: a solo/threads worker on RabbitMQ takes ~9 s to
        exit after a warm shutdown even with the listener off (Celery/py-amqp, not us).
        """
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # The prefork children share the session we created for this worker.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


StartWorker = Callable[..., WorkerProcess]


def worker_env(
    emu: Emulator | None, *, broker: str, queue: str, out: Path, mode: str, **settings: Any
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SPOOLED_", "CELERY_", "SPTEST_"))
    }
    env.update(
        SPTEST_MODE=mode,
        SPTEST_QUEUE=queue,
        SPTEST_OUT=str(out),
        SPTEST_BROKER=broker,
        SPTEST_SETTINGS=json.dumps(settings),
        PYTHONPATH=os.pathsep.join([str(WORKER_APP_DIR), str(REPO / "examples")]),
        PYTHONUNBUFFERED="1",
    )
    if emu is not None:
        # install mode reads credentials from the SPOOLED_* fallback; the others
        # put them in their settings.
        env.update(
            SPOOLED_BASE_URL=emu.base_url,
            SPOOLED_API_KEY=emu.api_key,
            SPTEST_BASE_URL=emu.base_url,
            SPTEST_API_KEY=emu.api_key,
        )
    return env


def _delete_queues(broker: str, queues: list[str]) -> None:
    """Delete the test's queues (and, on Redis, kombu's per-exchange binding keys)."""
    from kombu import Connection

    try:
        with Connection(broker, connect_timeout=2) as conn:
            channel = conn.default_channel
            for queue in queues:
                with contextlib.suppress(Exception):
                    channel.queue_delete(queue)
    except Exception:
        pass
    if broker.startswith("redis://"):
        import redis

        with contextlib.suppress(Exception), redis.Redis.from_url(broker) as client:
            client.delete(*(f"_kombu.{table}.{queue}" for queue in queues for table in _BINDINGS))


_BINDINGS = ("binding", "binding_permanent")


@pytest.fixture
def start_worker(
    tmp_path: Path, unique_name: str, request: pytest.FixtureRequest
) -> Iterator[StartWorker]:
    """``start_worker(broker, emu, pool=..., args=[...], mode=..., **settings)``.

    ``queue``: the Celery queue (and node name) to use instead of a new one, so a test
    can start a worker again as the same node on the same queue (a restart).
    """
    started: list[tuple[WorkerProcess, str, str]] = []

    def start(
        broker: str,
        emu: Emulator | None,
        *,
        pool: str = "solo",
        concurrency: int = 2,
        args: tuple[str, ...] = (),
        mode: str = "install",
        command: tuple[str, ...] = (CELERY,),
        app: str = "spooled_testapp",
        env: dict[str, str] | None = None,
        queue: str | None = None,
        **settings: Any,
    ) -> WorkerProcess:
        index = len(started)
        queue = queue or f"{unique_name}-{index}"
        node = f"{queue}@localhost"
        out = tmp_path / f"records-{index}.jsonl"
        log = tmp_path / f"worker-{index}.log"
        full_env = worker_env(emu, broker=broker, queue=queue, out=out, mode=mode, **settings)
        full_env["CELERY_APP_QUEUE"] = queue  # examples/celery_app's queue
        full_env.update(env or {})
        argv = [
            *command,
            "-A",
            app,
            "worker",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-Q",
            queue,
            "-n",
            node,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
            *args,
        ]
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                argv,
                env=full_env,
                cwd=tmp_path,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(proc, log, out, node, full_env)
        started.append((worker, broker, queue))
        return worker

    yield start

    failed = getattr(request.node, "rep_call", None)
    for worker, broker, queue in started:
        worker.kill()
        if failed is not None and failed.failed:
            print(f"--- worker log {worker.node} ---\n{worker.output()}")
        _delete_queues(broker, [queue, f"{queue}.unrouted"])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def _inspect_status(broker: str, node: str, timeout: float = 3.0) -> dict[str, Any]:
    from celery import Celery

    import spooled_integrations.celery  # noqa: F401  (registers the command name)

    client = Celery("spooled-test-client", broker=broker)
    try:
        replies = client.control.inspect(destination=[node], timeout=timeout)._request(
            "spooled_status"
        )
    finally:
        client.close()
    assert replies and node in replies, f"no spooled_status reply from {node}: {replies!r}"
    reply: dict[str, Any] = replies[node]
    return reply


@pytest.fixture
def inspect_status() -> Callable[..., dict[str, Any]]:
    """``inspect_status(broker, node)``: ``inspect spooled_status`` of one node."""
    return _inspect_status
