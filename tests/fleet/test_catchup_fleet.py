"""A 3-node Celery claim fleet restarted node by node under load: every job once.

Three real ``celery worker`` nodes (solo pool, Redis broker, one shared Celery queue)
run the Celery test app (``tests/integrations/celery/worker_app``) with a ``once``
rule for ``job.completed`` on queue ``emails`` and claim coordination on Redis (one
namespace of the test's own; the catch-up checkpoint is the coordination Redis, shared
by the fleet). A background thread creates and completes ~200 jobs a second in the
emulator (default mode: the stream carries job events) for the whole test while each
node in turn is stopped (SIGTERM, warm shutdown) and started again, then the whole fleet
at once. Every job completed from the moment the first node heard the stream until the
load stopped must have run its task exactly once across the fleet; those completed
while the whole fleet was down, from a replayed event.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spooled_integrations.testing import Emulator

pytestmark = [pytest.mark.slow, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
WORKER_APP_DIR = REPO / "tests" / "integrations" / "celery" / "worker_app"
CELERY = str(Path(sys.executable).parent / "celery")
RATE = 200.0  # jobs completed per second
NODES = 3
BOOT = 45.0  # a node's start, connection and restart sweep on a busy machine
RESTART_SWEPT = re.compile(r"Spooled catch-up \(restart [^)]*\): (\d+) event\(s\) recovered")


class Load:
    """Creates and completes jobs on ``emails`` at ``RATE`` a second, in a thread.

    ``jobs`` lists ``(job id, heard)`` in completion order; ``heard`` is whether an
    open stream took the completion (the emulator's ``undelivered`` counter did not
    move), so the test can start counting from the first job a node heard.
    """

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.jobs: list[tuple[str, bool]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        assert not self._thread.is_alive(), "the load thread did not stop"

    def _run(self) -> None:
        emu = self.emu
        started = time.monotonic()
        done = 0
        try:
            while not self._stop.is_set():
                due = int((time.monotonic() - started) * RATE)
                while done < due and not self._stop.is_set():
                    job = emu.create_job("emails")
                    before = emu.counters["undelivered"]
                    emu.set_job_status(job, "completed")
                    self.jobs.append((job, emu.counters["undelivered"] == before))
                    done += 1
                self._stop.wait(0.01)
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.errors.append(exc)


class Node:
    """One ``celery worker`` process of the fleet; ``start`` again after ``stop``."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path, queue: str) -> None:
        self.name = name
        self.env = env
        self.workdir = workdir
        self.queue = queue
        self.node = f"{name}@localhost"
        self.lives = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}-{self.lives}.log"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def all_output(self) -> str:
        parts = []
        for life in range(1, self.lives + 1):
            path = self.workdir / f"{self.name}-{life}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- {self.name} life {life} ---\n{text}")
        return "\n".join(parts)

    def start(self) -> None:
        self.lives += 1
        argv = [
            CELERY,
            "-A",
            "spooled_testapp",
            "worker",
            "-P",
            "solo",
            "-Q",
            self.queue,
            "-n",
            self.node,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
        ]
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.workdir,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(self.proc)

    def terminate(self) -> None:
        """SIGTERM: warm shutdown (the runtime drains, then writes the checkpoint)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> None:
        assert self.proc is not None
        self.proc.wait(60)
        assert self.proc.returncode == 0, self.output()
        assert "Spooled runtime stopped" in self.output(), self.output()

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def wait_for(condition: Callable[[], bool], what: str, nodes: list[Node], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    if condition():
        return
    logs = "\n".join(quiet(node.all_output())[-20_000:] for node in nodes)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")


def quiet(log: str) -> str:
    """A worker log without Celery's two lines per task run."""
    return "\n".join(line for line in log.splitlines() if "Task spooled_testapp." not in line)


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    # Six logins in a few seconds: above the default limit of five a minute.
    with Emulator(ping_interval=1.0, keepalive_interval=0.5, login_limit=100) as emu:
        yield emu


@pytest.fixture
def fleet_keys(redis_url: str, namespace: str) -> Iterator[str]:
    """The fleet's namespace; its ``spooled:*`` keys and Celery queue keys go afterwards."""
    import redis

    yield namespace
    with redis.Redis.from_url(redis_url) as client:
        keys = [
            *client.scan_iter(f"spooled:*{namespace}*"),
            *client.scan_iter(f"*{namespace}*"),
        ]
        if keys:
            client.delete(*set(keys))


def test_a_claim_fleet_restarted_node_by_node_under_load_runs_each_job_once(
    emulator: Emulator, redis_url: str, fleet_keys: str, tmp_path: Path
) -> None:
    out = tmp_path / "records.jsonl"
    queue = f"fleet-{fleet_keys}"
    settings = {
        "spooled_subscriptions": [
            {
                "events": ["job.completed"],
                "queue": "emails",
                "task": "spooled_testapp.record",
                "delivery": "once",
            }
        ],
        "spooled_coordination": {
            "strategy": "claim",
            "redis_url": redis_url,
            "namespace": fleet_keys,
        },
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOOLED_", "SPTEST_"))}
    env.update(
        SPTEST_MODE="install",
        SPTEST_QUEUE=queue,
        SPTEST_OUT=str(out),
        SPTEST_BROKER=redis_url,
        SPTEST_SETTINGS=json.dumps(settings),
        SPOOLED_BASE_URL=emulator.base_url,
        SPOOLED_API_KEY=emulator.api_key,
        PYTHONPATH=str(WORKER_APP_DIR),
        PYTHONUNBUFFERED="1",
    )
    nodes = [Node(f"{fleet_keys}-{i}", env, tmp_path, queue) for i in range(NODES)]
    load = Load(emulator)

    def swept(node: Node) -> Callable[[], bool]:
        return lambda: RESTART_SWEPT.search(node.output()) is not None

    def load_for_a_second() -> None:
        mark = len(load.jobs)
        wait_for(lambda: len(load.jobs) >= mark + RATE, "a second of load", nodes, 30)

    try:
        load.start()
        began = time.monotonic()
        for node in nodes:
            node.start()
        wait_for(lambda: emulator.connections_current() == NODES, "three connections", nodes, BOOT)
        load_for_a_second()
        # Rolling restart: one node down at a time.
        for node in nodes:
            node.terminate()
            node.wait_stopped()
            node.start()
            wait_for(swept(node), f"{node.name}'s restart sweep", nodes, BOOT)
            load_for_a_second()
        # The whole fleet down at once: only the catch-up delivers what completes now.
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.wait_stopped()
        load_for_a_second()
        for node in nodes:
            node.start()
        for node in nodes:
            wait_for(swept(node), f"{node.name}'s restart sweep", nodes, BOOT)
        load_for_a_second()
        load.stop()
        loaded_for = time.monotonic() - began
        assert not load.errors, load.errors

        heard = [index for index, (_, was_heard) in enumerate(load.jobs) if was_heard]
        assert heard, "no node ever heard the stream"
        counted = load.jobs[heard[0] :]
        expected = {job for job, _ in counted}

        def ran_ids() -> set[str]:
            return {r["payload"]["data"]["job_id"] for r in read_records(out)}

        wait_for(lambda: expected <= ran_ids(), f"{len(expected)} task runs", nodes, 60)
        # Anything dispatched twice was enqueued before these and runs before them.
        barrier = [emulator.create_job("emails") for _ in range(3)]
        for job in barrier:
            emulator.set_job_status(job, "completed")
        wait_for(lambda: set(barrier) <= ran_ids(), "the barrier jobs", nodes, 60)
    finally:
        load.stop()
        for node in nodes:
            node.kill()

    records = [r for r in read_records(out) if r["payload"]["data"]["job_id"] not in barrier]
    ran = Counter(r["payload"]["data"]["job_id"] for r in records)
    twice = {job: n for job, n in ran.items() if n > 1}
    missing = [job for job, _ in counted if job not in ran]
    origin = {r["payload"]["data"]["job_id"]: r["payload"]["derived_from"] for r in records}
    unheard = [job for job, was_heard in counted if not was_heard]
    replayed = [job for job in expected if origin.get(job) == "catch_up"]
    sweeps = [int(n) for node in nodes for n in RESTART_SWEPT.findall(node.all_output())]
    print(
        f"\nfleet: {len(load.jobs)} jobs completed in {loaded_for:.1f}s "
        f"({len(load.jobs) / loaded_for:.0f}/s); {len(counted)} from the first one a node "
        f"heard, {len(unheard)} of them while the whole fleet was down; "
        f"{len(replayed)} ran from a replayed event; {len(sweeps)} restart sweeps found "
        f"{sum(sweeps)} events new to the sweeping node (claims let each run once); "
        f"{len(ran) - len(expected & set(ran))} jobs from before the first was heard ran "
        f"too (a node's first start found the first node's checkpoint)"
    )
    assert not twice, f"{len(twice)} job(s) ran more than once: {list(twice.items())[:5]}"
    assert not missing, f"{len(missing)} of {len(counted)} job(s) never ran: {missing[:5]}"
    assert unheard, "the load did not run while the whole fleet was down"
    assert {origin[job] for job in unheard} == {"catch_up"}
    checkpoint = f"checkpoint at {redis_url} key spooled:checkpoint:{fleet_keys} says"
    assert all(checkpoint in node.output() for node in nodes)
    assert all(r["payload"]["type"] == "job.completed" for r in records)
    assert len(expected) >= RATE * 5  # the load really ran throughout
