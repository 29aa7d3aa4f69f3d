"""A fresh venv with only ``.[all]`` runs real workers: the extras declare what they import.

The venv is built once for this module, the way the README says (``python -m venv``,
then ``pip install -e ".[all]"``, no dev extras), through pip's configured index and
cache. Its ``celery`` and ``dramatiq`` commands then run real workers, as subprocesses,
on Redis and on RabbitMQ; each must run its task or actor for a job completed on the
package's emulator. A transport that imports a package no extra brings (kombu's Redis
transport and ``packaging``, Dramatiq's RabbitMQ broker and ``pika``) fails here, not in
a user's first deploy. The demo runs in the fresh venv too (the README's first command).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations.testing import Emulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # the first test builds the venv

REPO = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "fresh_apps"
DEV_ONLY = ("pytest", "hypothesis", "mypy")  # what the dev extra brings and [all] must not
SPOOLED_QUEUE = "emails"
STOP_GRACE = 20.0  # seconds a worker gets to stop after SIGTERM before it is killed
BROKERS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
]


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without its venv, paths or Spooled/Celery settings."""
    dropped = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(("SPOOLED_", "CELERY_", "FRESH_"))
    }
    env.update(PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1", **extra)
    return env


def _run(argv: list[str], what: str, timeout: float, cwd: Path) -> None:
    try:
        done = subprocess.run(
            argv,
            env=_clean_env(),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what} took more than {timeout:g} s\n{exc.stdout}\n{exc.stderr}")
    if done.returncode != 0:
        pytest.fail(f"{what} exited {done.returncode}\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with ``-e .[all]`` installed, and nothing of the dev extra."""
    root = tmp_path_factory.mktemp("fresh-install") / "venv"
    _run([sys.executable, "-m", "venv", str(root)], "python -m venv", 60, root.parent)
    python = str(root / "bin" / "python")
    install = [python, "-m", "pip", "install", "--quiet", "--editable", f"{REPO}[all]"]
    _run(install, 'pip install -e ".[all]"', 200, root.parent)
    # Else the test would pass on what the dev extra brought.
    probe = f"import importlib.util as u; print([n for n in {DEV_ONLY!r} if u.find_spec(n)])"
    found = subprocess.run(
        [python, "-c", probe],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert found.stdout.strip() == "[]", f"dev packages in the fresh venv: {found.stdout}"
    return root


class Worker:
    """A worker subprocess of the fresh venv, in a session of its own, its output in a log."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, out: Path) -> None:
        self.log = log
        self.out = out
        with log.open("wb") as sink:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=log.parent,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def wait_record(self, timeout: float = 30.0) -> dict[str, Any]:
        """The first record the task wrote; fails if none came or the worker died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if records := self.records():
                return records[0]
            time.sleep(0.05)
        pytest.fail(f"no task ran (worker exit code {self.proc.poll()})")

    def stop(self) -> None:
        """SIGTERM and a bounded wait, then SIGKILL for whatever is left of the session."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_GRACE)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # children (pool, listener) included
        self.proc.wait(10)


@contextlib.contextmanager
def running(
    argv: list[str], tmp_path: Path, emu: Emulator, broker_url: str, queue: str
) -> Iterator[Worker]:
    """Run ``argv`` with the test app's settings; its log is printed if the test fails."""
    env = _clean_env(
        PYTHONPATH=str(APPS),
        FRESH_BROKER_URL=broker_url,
        FRESH_QUEUE=queue,
        FRESH_SPOOLED_QUEUE=SPOOLED_QUEUE,
        FRESH_OUT=str(tmp_path / "records.jsonl"),
        SPOOLED_BASE_URL=emu.base_url,
        SPOOLED_API_KEY=emu.api_key,
    )
    worker = Worker(argv, env, tmp_path / "worker.log", tmp_path / "records.jsonl")
    try:
        yield worker
    except BaseException:
        print(f"--- worker log ({' '.join(argv[:2])}) ---\n{worker.output()}")
        raise
    finally:
        worker.stop()
        with contextlib.suppress(Exception):  # best effort: the names are unique anyway
            _delete_queues(broker_url, queue)


def _delete_queues(broker_url: str, queue: str) -> None:
    """Remove what the worker left on the broker: the keys, queues and exchange named after
    ``queue`` (unique to the test)."""
    if broker_url.startswith("redis://"):
        import redis

        with redis.Redis.from_url(broker_url) as client:
            keys = list(client.scan_iter(match=f"*{queue}*"))
            if keys:
                client.delete(*keys)
        return
    from kombu import Connection

    with Connection(broker_url, connect_timeout=2) as conn:
        channel = conn.default_channel
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):  # Dramatiq's delay and dead queues
            with contextlib.suppress(Exception):
                channel.queue_delete(name)
        with contextlib.suppress(Exception):
            channel.exchange_delete(queue)  # Celery's exchange for its default queue


def _route_one_event(worker: Worker, emu: Emulator) -> None:
    """Complete a job once the worker listens; its task must run with that job's data."""
    deadline = time.monotonic() + 60
    while not emu.wait_for_connections(1, timeout=0.2):
        if worker.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the listener never connected (worker exit code {worker.proc.poll()})")
    job_id = emu.run_job(SPOOLED_QUEUE)
    record = worker.wait_record()
    assert (record["job_id"], record["queue_name"]) == (job_id, SPOOLED_QUEUE)


@pytest.mark.parametrize("broker", BROKERS)
def test_celery_worker_runs_a_task_for_a_spooled_event(
    venv: Path, broker: str, request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> None:
    broker_url: str = request.getfixturevalue(f"{broker}_url")
    argv = [
        str(venv / "bin" / "celery"),
        *("-A", "fresh_celery", "worker", "-P", "prefork", "-c", "1", "-Q", unique_name),
        *("-n", f"{unique_name}@localhost", "--without-gossip", "--without-mingle"),
        *("--without-heartbeat", "-l", "info"),
    ]
    with Emulator() as emu, running(argv, tmp_path, emu, broker_url, unique_name) as worker:
        _route_one_event(worker, emu)


@pytest.mark.parametrize("broker", BROKERS)
def test_dramatiq_worker_runs_an_actor_for_a_spooled_event(
    venv: Path, broker: str, request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
) -> None:
    broker_url: str = request.getfixturevalue(f"{broker}_url")
    argv = [
        str(venv / "bin" / "dramatiq"),
        *("fresh_dramatiq", "--processes", "1", "--threads", "1", "--queues", unique_name),
    ]
    with Emulator() as emu, running(argv, tmp_path, emu, broker_url, unique_name) as worker:
        _route_one_event(worker, emu)


def test_demo_runs_in_the_fresh_venv(venv: Path) -> None:
    """``pip install -e ".[all]" && spooled-integrations demo``, the README's first command."""
    demo = [str(venv / "bin" / "spooled-integrations"), "demo"]
    _run(demo, "spooled-integrations demo", 120, venv.parent)
