"""Fleet figures: one routed task per event across a fleet, with and without a node killed.

Scenarios (each with ``lease`` and ``claim`` coordination, each once undisturbed and
once with a node SIGKILLed halfway through the feed):

- Celery: 3 ``celery worker`` nodes (prefork, ``-c 2``, distinct ``-n``), each running
  the Spooled listener in its main process; the killed node is the lease leader
  (lease) or the node that won the last claim (claim); its whole process group dies.
- Dramatiq: 2 runs of ``dramatiq -p 2``; the listener is each run's fork process
  (``mode="fork"``); the killed process is the leader's (lease) or a claimer's listener.
  ``--dramatiq-mode every_process`` runs a listener in each of the four worker
  processes instead (undisturbed scenarios only: Dramatiq stops a run whose worker
  process dies).

One Redis (a private ``redis-server`` unless ``--redis-url``) is broker and coordinator.
The emulator in this process publishes ``--events`` ``job.completed`` events at
``--rate`` per second, each with ``seq`` in its data. Every node counts in Redis what it
published (Celery ``after_task_publish`` / a Dramatiq ``after_enqueue`` middleware),
what ran (the task/actor) and what the runtime dropped (``event_dropped``), so the
table shows duplicates and losses at both levels, and whether each lost event was
counted by a surviving node.

    python bench/fleet.py                    # full size: 10,000 events per scenario
    python bench/fleet.py --events 2000      # quicker
    python bench/fleet.py --only celery --strategies claim

Not part of the test run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from spooled_integrations.testing import Emulator

HERE = Path(__file__).resolve().parent
APPS = HERE / "fleet_apps"
BIN = Path(sys.executable).parent


@dataclass
class Scenario:
    framework: str  # celery | dramatiq
    strategy: str  # lease | claim
    kill: bool

    @property
    def name(self) -> str:
        return f"{self.framework}/{self.strategy}{' +SIGKILL' if self.kill else ''}"


@dataclass
class Result:
    scenario: Scenario
    events: int
    published: int = 0
    published_unique: int = 0
    ran: int = 0
    ran_unique: int = 0
    counted: dict[str, int] = field(default_factory=dict)
    lost_uncounted: int = 0
    takeover: float | None = None
    killed: str = ""
    feed_seconds: float = 0.0
    settle_seconds: float = 0.0
    listeners: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def pub_dup(self) -> int:
        return self.published - self.published_unique

    @property
    def pub_lost(self) -> int:
        return self.events - self.published_unique

    @property
    def ran_dup(self) -> int:
        return self.ran - self.ran_unique

    @property
    def ran_lost(self) -> int:
        return self.events - self.ran_unique


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found; pass --redis-url")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Fleet:
    """The worker processes of one scenario."""

    def __init__(self, scenario: Scenario, env: dict[str, str], logdir: Path) -> None:
        self.scenario = scenario
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        count = 3 if scenario.framework == "celery" else 2
        for index in range(count):
            log = logdir / f"{scenario.framework}-{scenario.strategy}-{index}.log"
            self.logs.append(log)
            if scenario.framework == "celery":
                cmd = [
                    str(BIN / "celery"),
                    "-A",
                    "fleet_celery_app",
                    "worker",
                    "-n",
                    f"node{index}@%h",
                    "-P",
                    "prefork",
                    "-c",
                    "2",
                    "-Q",
                    env["BENCH_QUEUE"],
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-l",
                    "WARNING",
                ]
            else:
                cmd = [
                    str(BIN / "dramatiq"),
                    "fleet_dramatiq_app",
                    "-p",
                    "2",
                    "-t",
                    "2",
                    "-Q",
                    env["BENCH_QUEUE"],
                ]
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        cmd,
                        env=env,
                        cwd=APPS,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

        self.per_run = 2 if env.get("BENCH_DRAMATIQ_MODE") == "every_process" else 1

    @property
    def listeners(self) -> int:
        if self.scenario.framework == "celery":
            return len(self.procs)
        return len(self.procs) * self.per_run

    def alive(self) -> bool:
        return all(proc.poll() is None for proc in self.procs)

    def kill_listener(self, pid: int) -> str:
        """SIGKILL the listener process ``pid`` (Celery: its whole node)."""
        if self.scenario.framework == "celery":
            for proc in self.procs:
                if proc.pid == pid:
                    os.killpg(proc.pid, signal.SIGKILL)
                    return f"celery node pid {pid} (process group)"
            raise RuntimeError(f"pid {pid} is no worker node of this fleet")
        os.kill(pid, signal.SIGKILL)
        return f"dramatiq listener fork pid {pid}"

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def pid_of(token: str | None) -> int | None:
    if not token:
        return None
    parts = token.split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


def run(scenario: Scenario, args: argparse.Namespace, redis_url: str, logdir: Path) -> Result:
    run_id = uuid.uuid4().hex[:8]
    namespace = f"bench-{run_id}"
    queue = f"bench-{run_id}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    coordination: dict[str, Any] = {
        "strategy": scenario.strategy,
        "redis_url": redis_url,
        "namespace": namespace,
        "lease_ttl": args.lease_ttl,
        "renew_interval": args.renew_interval,
    }
    result = Result(scenario, args.events)
    with Emulator(ping_interval=5.0) as emu:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOOLED_", "CELERY_"))}
        env.update(
            SPOOLED_BASE_URL=emu.base_url,
            SPOOLED_API_KEY=emu.api_key,
            BENCH_REDIS=redis_url,
            BENCH_RUN=run_id,
            BENCH_QUEUE=queue,
            BENCH_COORDINATION=json.dumps(coordination),
            PYTHONPATH=os.pathsep.join([str(APPS), env.get("PYTHONPATH", "")]),
            PYTHONUNBUFFERED="1",
            BENCH_DRAMATIQ_MODE=args.dramatiq_mode,
        )
        fleet = Fleet(scenario, env, logdir)
        result.listeners = fleet.listeners
        lease_key = f"spooled:lease:{namespace}"
        try:
            if not emu.wait_for_connections(fleet.listeners, timeout=90):
                raise RuntimeError(f"only {emu.connections_current()} listener(s) connected")
            if scenario.strategy == "lease":
                _wait(lambda: client.get(lease_key) is not None, 30, "no lease holder")
            time.sleep(1.0)  # let every node settle (the prefork pools, the lease)
            result.feed_seconds = _feed(emu, fleet, scenario, args, client, namespace, result)
            started = time.monotonic()
            _settle(client, run_id, args.events, args.settle_timeout)
            result.settle_seconds = time.monotonic() - started
        finally:
            fleet.stop()
    _collect(client, run_id, result)
    for key in client.scan_iter(f"bench:{run_id}:*"):
        client.delete(key)
    for key in client.scan_iter(f"spooled:*:{namespace}*"):
        client.delete(key)
    client.delete(queue, f"dramatiq:{queue}", f"dramatiq:{queue}.msgs")
    return result


def _feed(
    emu: Emulator,
    fleet: Fleet,
    scenario: Scenario,
    args: argparse.Namespace,
    client: redis.Redis,
    namespace: str,
    result: Result,
) -> float:
    interval = 1.0 / args.rate
    started = time.monotonic()
    kill_at = args.events // 2 if scenario.kill else -1
    lease_key = f"spooled:lease:{namespace}"
    killed_at: float | None = None
    victim: str | None = None
    for seq in range(args.events):
        target = started + seq * interval
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        emu.publish("job.completed", job_id=f"job-{seq}", queue_name="q", duration_ms=1, seq=seq)
        if seq == kill_at:
            if scenario.strategy == "lease":
                victim = client.get(lease_key)
            else:
                victim = client.get(f"spooled:claim:{namespace}:job.completed:job-{seq - 50}")
            pid = pid_of(victim)
            if pid is None:
                result.problems.append(f"no process to kill (token {victim!r})")
            else:
                result.killed = fleet.kill_listener(pid)
                killed_at = time.monotonic()
        if killed_at is not None and result.takeover is None and scenario.strategy == "lease":
            holder = client.get(lease_key)
            if holder is not None and holder != victim:
                result.takeover = time.monotonic() - killed_at
    if killed_at is not None and result.takeover is None and scenario.strategy == "lease":
        with contextlib.suppress(RuntimeError):
            _wait(lambda: client.get(lease_key) not in (None, victim), 30, "")
            result.takeover = time.monotonic() - killed_at
    return time.monotonic() - started


def _settle(client: redis.Redis, run_id: str, events: int, timeout: float) -> None:
    """Wait until every publish ran, or nothing changed for a few seconds."""
    deadline = time.monotonic() + timeout
    last: tuple[int, int] = (-1, -1)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        now = (client.hlen(f"bench:{run_id}:pub"), client.hlen(f"bench:{run_id}:exec"))
        if now[1] >= events and now[0] >= events:
            time.sleep(1.0)  # a late duplicate would show up here
            return
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since > 6.0:
            return
        time.sleep(0.2)


def _collect(client: redis.Redis, run_id: str, result: Result) -> None:
    pub = {int(k): int(v) for k, v in client.hgetall(f"bench:{run_id}:pub").items()}
    ran = {int(k): int(v) for k, v in client.hgetall(f"bench:{run_id}:exec").items()}
    result.published, result.published_unique = sum(pub.values()), len(pub)
    result.ran, result.ran_unique = sum(ran.values()), len(ran)
    counted: set[int] = set()
    for key in client.scan_iter(f"bench:{run_id}:drops:*"):
        reason = key.rsplit(":", 1)[1]
        seqs = {int(k) for k in client.hkeys(key)}
        result.counted[reason] = len(seqs)
        counted |= seqs
    lost = set(range(result.events)) - set(pub)
    result.lost_uncounted = len(lost - counted)


def _wait(condition: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise RuntimeError(message)


def _table(results: list[Result]) -> str:
    head = (
        "scenario",
        "events",
        "published",
        "pub dup",
        "pub lost",
        "counted drops",
        "lost uncounted",
        "task runs",
        "run dup",
        "run lost",
        "takeover s",
        "feed s",
    )
    rows = [head]
    for r in results:
        counted = ", ".join(f"{k}={v}" for k, v in sorted(r.counted.items())) or "-"
        rows.append(
            (
                r.scenario.name,
                str(r.events),
                str(r.published),
                str(r.pub_dup),
                str(r.pub_lost),
                counted,
                str(r.lost_uncounted),
                str(r.ran),
                str(r.ran_dup),
                str(r.ran_lost),
                f"{r.takeover:.2f}" if r.takeover is not None else "-",
                f"{r.feed_seconds:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--only", choices=["celery", "dramatiq"])
    parser.add_argument("--strategies", default="lease,claim")
    parser.add_argument("--kill", choices=["both", "yes", "no"], default="both")
    parser.add_argument(
        "--dramatiq-mode",
        choices=["fork", "every_process"],
        default="fork",
        help="every_process: a listener in each of the 2 x 2 worker processes (kill: no)",
    )
    parser.add_argument("--lease-ttl", type=float, default=3.0)
    parser.add_argument("--renew-interval", type=float, default=0.25)
    parser.add_argument("--settle-timeout", type=float, default=120.0)
    parser.add_argument("--redis-url", help="use this Redis instead of a private redis-server")
    parser.add_argument("--logs", help="keep worker logs in this directory")
    args = parser.parse_args()

    frameworks = [args.only] if args.only else ["celery", "dramatiq"]
    kills = {"both": [False, True], "yes": [True], "no": [False]}[args.kill]
    scenarios = [
        Scenario(fw, strategy, kill)
        for fw in frameworks
        for strategy in args.strategies.split(",")
        for kill in kills
    ]
    workdir = Path(tempfile.mkdtemp(prefix="spooled-fleet-"))
    logdir = Path(args.logs) if args.logs else workdir
    logdir.mkdir(parents=True, exist_ok=True)
    server = None if args.redis_url else RedisServer(workdir)
    redis_url = args.redis_url or (server.url if server else "")
    results: list[Result] = []
    try:
        for scenario in scenarios:
            print(f"running {scenario.name} ...", flush=True)
            try:
                result = run(scenario, args, redis_url, logdir)
            except Exception as exc:  # report and go on with the next scenario
                print(f"  FAILED: {type(exc).__name__}: {exc} (logs in {logdir})", flush=True)
                continue
            results.append(result)
            extra = f"; killed {result.killed}" if result.killed else ""
            print(
                f"  done: feed {result.feed_seconds:.1f}s, settle {result.settle_seconds:.1f}s"
                f"{extra}{'; ' + '; '.join(result.problems) if result.problems else ''}",
                flush=True,
            )
    finally:
        if server is not None:
            server.stop()
    print()
    print(
        f"{args.events} events per scenario at {args.rate:g}/s; lease_ttl {args.lease_ttl:g}s, "
        f"renew every {args.renew_interval:g}s; Celery: 3 prefork nodes (-c 2), Dramatiq: "
        "2 runs of dramatiq -p 2 (fork listener)"
    )
    print(_table(results))
    print()
    print(
        "published = tasks/actor messages the fleet's runtimes sent; 'pub lost' = events no "
        "node published;\n'counted drops' = events a surviving runtime dropped and signalled "
        "(by reason); 'lost uncounted' = pub-lost events no runtime counted;\n"
        "run lost - pub lost = messages lost with a killed Celery node's own prefetch "
        "(a Celery matter, not Spooled's)."
    )
    return 0 if results and all(r.pub_dup == 0 and r.lost_uncounted == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
