"""Soak: a million events through one runtime over a real WebSocket; does memory stay flat?

The emulator runs in a child process (so its memory is not measured) and publishes
``--events`` distinct ``job.completed`` events (every job id new, as in production, so
the duplicate window fills to its cap) as fast as it can or at ``--rate`` per second.
This process runs a :class:`SpooledRuntime` whose subscription routes every event to a
publisher that only counts, and samples its own resident memory (``VmRSS``) every half
second. Reported: RSS after the warm-up (``--warmup`` events: the duplicate window's
tables, the dispatch queue and the allocator's arenas reach their steady size),
RSS at the end, the growth between the two (target: < 20 MB), and the runtime's
counters (every event must be received and published; drops are shown).

    python bench/soak.py                       # 1,000,000 events
    python bench/soak.py --events 200000 --warmup 120000
    python bench/soak.py --coordination lease  # with a lease on a private redis-server

Not part of the test run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spooled_integrations.client import ConnectionOptions, ConnectionState
from spooled_integrations.protocol import Event
from spooled_integrations.runtime import RuntimeConfig, SpooledRuntime, Subscription


class CountingPublisher:
    """A publisher that keeps only a count (a RecordingPublisher without the list)."""

    name = "counting"

    def __init__(self) -> None:
        self.count = 0

    def validate(self, subscriptions: Sequence[Subscription]) -> list[str]:
        return []

    def publish(self, subscription: Subscription, payload: Any, event: Event) -> None:
        self.count += 1


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def serve(events: int, rate: float) -> None:
    """The child: an emulator that publishes ``events`` events after ``GO`` on stdin."""
    from spooled_integrations.testing import Emulator

    with Emulator(ping_interval=5.0) as emu:
        print(json.dumps({"base_url": emu.base_url, "api_key": emu.api_key}), flush=True)
        if sys.stdin.readline().strip() != "GO":
            return
        started = time.monotonic()
        for seq in range(events):
            if rate:
                delay = started + seq / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            emu.publish(
                "job.completed",
                job_id=f"soak-{seq:08d}",
                queue_name="q",
                duration_ms=seq % 997,
                seq=seq,
            )
        print(json.dumps({"published": events, "seconds": time.monotonic() - started}), flush=True)
        sys.stdin.readline()  # stay up until the parent has read everything


def private_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
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
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s (0: as fast as possible)")
    parser.add_argument("--coordination", choices=["lease", "claim"])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.events, args.rate)
        return 0

    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            "--events",
            str(args.events),
            "--rate",
            str(args.rate),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    address = json.loads(child.stdout.readline())
    redis_proc = None
    extra: dict[str, Any] = {}
    if args.coordination:
        redis_proc, url = private_redis(Path(tempfile.mkdtemp(prefix="spooled-soak-")))
        extra["coordination"] = {
            "strategy": args.coordination,
            "redis_url": url,
            "namespace": "soak",
        }
    publisher = CountingPublisher()
    config = RuntimeConfig(
        connection=ConnectionOptions(base_url=address["base_url"], api_key=address["api_key"]),
        subscriptions=[{"events": ["job.completed"], "task": "soak.count"}],
        **extra,
    )
    runtime = SpooledRuntime(config, publisher)
    samples: list[tuple[float, int, float]] = []  # (t, received, rss)
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.wait(0.5):
            samples.append((time.monotonic() - started, runtime.metrics.get("received"), rss_mb()))

    try:
        gc.collect()
        baseline = rss_mb()
        runtime.start()
        deadline = time.monotonic() + 10
        while runtime.state != ConnectionState.CONNECTED and time.monotonic() < deadline:
            time.sleep(0.01)
        if args.coordination == "lease":
            while (runtime.status()["coordination"] or {}).get("role") != "leader":
                time.sleep(0.01)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        child.stdin.write("GO\n")
        child.stdin.flush()
        fed = json.loads(child.stdout.readline())
        deadline = time.monotonic() + 60
        while runtime.metrics.get("dispatched") + runtime.metrics.get("dropped") < args.events:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(1.0)
        stop.set()
        sampler.join()
        elapsed = time.monotonic() - started
        status = runtime.status()
    finally:
        runtime.stop(timeout=5)
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(10)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)

    warm = next((s for s in samples if s[1] >= args.warmup), samples[-1])
    end = samples[-1]
    peak = max(s[2] for s in samples)
    growth = end[2] - warm[2]
    counters = status["counters"]
    print(
        f"events: {args.events:,} over a real WebSocket from the emulator (child process), "
        f"fed in {fed['seconds']:.1f}s ({args.events / fed['seconds']:,.0f}/s); runtime "
        f"done in {elapsed:.1f}s"
    )
    if args.coordination:
        print(f"coordination: {args.coordination} on a private redis-server")
    print(
        f"received {counters['received']:,}, dispatched {counters['dispatched']:,}, "
        f"published {publisher.count:,}, dropped {counters['dropped'] or 0}, "
        f"duplicates suppressed {counters['duplicates_suppressed']:,}"
    )
    print(
        f"RSS before start {baseline:.1f} MB; after warm-up ({warm[1]:,} events, "
        f"t={warm[0]:.0f}s) {warm[2]:.1f} MB; at the end {end[2]:.1f} MB; peak {peak:.1f} MB"
    )
    print(f"growth after warm-up: {growth:+.1f} MB (target < 20 MB)")
    step = max(1, len(samples) // 12)
    print(
        "samples (t s, received, RSS MB):",
        ", ".join(f"({t:.0f}, {n:,}, {r:.1f})" for t, n, r in samples[::step]),
    )
    ok = growth < 20 and publisher.count + sum((counters["dropped"] or {}).values()) >= args.events
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
