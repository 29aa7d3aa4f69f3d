"""P3 latency and P4 throughput: Spooled events -> Celery tasks vs raw ``send_task``, same broker.

Starts its own Redis (a private ``redis-server`` on a free port), the emulator (in this
process) and a prefork ``celery worker`` whose Spooled listener is enabled by config
(``bench/celery_bench_app.py``). Not a test.

- P3: one probe at a time, the two kinds interleaved: *event* = ``emulator.publish`` of a
  ``job.completed`` -> our listener in the worker routes it -> ``send_task`` -> a prefork
  child starts the task body; *raw* = ``app.send_task`` from here -> the same worker
  starts the task body. Latency is publish call -> first line of the task body
  (``time.time()`` on both sides, one machine). Prints p50/p99 of each and the gaps.
  ``--forms both``: each probe is the status change (``completed``) and then the direct
  ``JobCompleted``, as the emulator's default mode sends a transition (the coalescing
  wait for the twin is on the measured path); ``direct`` (default): ``JobCompleted`` alone.
- P4: ``--events`` events routed to a task on a queue nobody consumes, timed from the
  first publish until all messages are in the broker; vs a raw ``send_task`` loop of the
  same payloads to the same broker, run both in the worker main process (on the
  listener's dispatch thread, where our publishes run: the reference) and in this
  process. Rounds interleaved; medians.

    python bench/celery_latency.py [--probes 500] [--events 2000] [--rounds 5] [--transport ws]
                                   [--forms direct|both] [--no-throughput]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from spooled_integrations.testing import Emulator

HERE = Path(__file__).parent


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """A throwaway ``redis-server`` on a free port: nothing else shares its queues."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def celery_worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    argv = [
        str(Path(sys.executable).with_name("celery")),
        *("-A", "celery_bench_app", "worker", "-P", "prefork", "-c", "2", "-Q", "bench"),
        *("-n", "bench@localhost", "--without-gossip", "--without-mingle"),
        *("--without-heartbeat", "-l", "warning"),
    ]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            argv, env=env, cwd=HERE, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class Bench:
    def __init__(
        self,
        emu: Emulator,
        app: Any,
        broker: redis.Redis,
        results: redis.Redis,
        payload: Callable[..., dict[str, Any]],
        forms: str = "direct",
    ) -> None:
        self.payload = payload
        self.forms = forms
        self.emu = emu
        self.app = app
        self.broker = broker
        self.results = results
        self.publish_times: list[float] = []  # the emulator's share of flood_events

    def _started_at(self, ident: str) -> float:
        item = self.results.blpop(["bench:starts"], timeout=15)
        if item is None:
            raise RuntimeError(f"task for {ident} never started (see the worker log)")
        got, started = item[1].decode().split()
        if got != ident:
            raise RuntimeError(f"expected {ident}, got {got}")
        return float(started)

    def probe_event(self, ident: str) -> float:
        sent = time.time()
        if self.forms == "both":
            self.emu.publish(
                "job.status",
                job_id=ident,
                queue_name="latency",
                old_status="processing",
                new_status="completed",
            )
        self.emu.publish("job.completed", job_id=ident, queue_name="latency", duration_ms=1)
        return self._started_at(ident) - sent

    def probe_raw(self, ident: str) -> float:
        sent = time.time()
        self.app.send_task("bench.raw", args=[self.payload(ident)])
        return self._started_at(ident) - sent

    def queued(self, queue: str) -> int:
        return int(self.broker.llen(queue))  # kombu's list for priority 0 (we set none)

    def flood_events(self, round_no: int, count: int) -> float:
        started = time.perf_counter()
        for i in range(count):
            self.emu.publish(
                "job.completed", job_id=f"t{round_no}-{i}", queue_name="throughput", duration_ms=1
            )
        self.publish_times.append(time.perf_counter() - started)
        deadline = time.monotonic() + 60
        # Poll gently: a busy poll would take CPU and Redis time from the path measured.
        while self.queued("bench-sink") < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.queued('bench-sink')} of {count} tasks sent")
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        self.broker.delete("bench-sink")
        return elapsed

    def flood_queued_events(self, round_no: int, count: int) -> float:
        """Events queued while the dispatch thread is held, timed from its release."""
        self.emu.publish("bench.pause", seconds=1.0)
        for i in range(count):
            self.emu.publish(
                "job.completed", job_id=f"q{round_no}-{i}", queue_name="throughput", duration_ms=1
            )
        item = self.results.blpop(["bench:resumed"], timeout=30)
        if item is None:
            raise RuntimeError("the pause never ended")
        while self.queued("bench-sink") < count:
            time.sleep(0.005)
        elapsed = time.time() - float(item[1])
        self.broker.delete("bench-sink")
        return elapsed

    def flood_raw_in_worker(self, round_no: int, count: int) -> float:
        self.emu.publish("bench.rawloop", count=count, round=round_no)
        item = self.results.blpop(["bench:rawloop"], timeout=60)
        if item is None:
            raise RuntimeError("the raw loop in the worker never reported")
        assert self.queued("bench-sink-raw") == count
        self.broker.delete("bench-sink-raw")
        return float(item[1])

    def flood_raw(self, round_no: int, count: int) -> float:
        payloads = [self.payload(f"r{round_no}-{i}", "throughput") for i in range(count)]
        send = self.app.send_task
        started = time.perf_counter()
        for payload in payloads:
            send("bench.sink", args=[payload], queue="bench-sink-raw")
        elapsed = time.perf_counter() - started
        assert self.queued("bench-sink-raw") == count
        self.broker.delete("bench-sink-raw")
        return elapsed


def latency(bench: Bench, probes: int, warmup: int) -> None:
    samples: dict[str, list[float]] = {"event": [], "raw": []}
    kinds: list[tuple[str, Callable[[str], float]]] = [
        ("event", bench.probe_event),
        ("raw", bench.probe_raw),
    ]
    for i in range(warmup + probes):
        for kind, probe in kinds if i % 2 else kinds[::-1]:  # alternate who goes first
            value = probe(f"{kind[0]}{i}")
            if i >= warmup:
                samples[kind].append(value * 1000)
    print(f"\nP3 latency, publish -> task body starts: {probes} probes each (ms)")
    print(f"  {'path':<44} {'p50':>7} {'p99':>7} {'mean':>7}")
    stats = {}
    for kind, label in (
        ("raw", "raw send_task [ref]"),
        ("event", "emulator event -> our listener -> task"),
    ):
        values = samples[kind]
        stats[kind] = (statistics.median(values), percentile(values, 99))
        print(
            f"  {label:<44} {stats[kind][0]:7.2f} {stats[kind][1]:7.2f} "
            f"{statistics.fmean(values):7.2f}"
        )
    gap50 = stats["event"][0] - stats["raw"][0]
    gap99 = stats["event"][1] - stats["raw"][1]
    print(f"  target: p50 gap <= 2 ms: {gap50:+.2f} ms ({'met' if gap50 <= 2 else 'NOT met'})")
    print(f"  target: p99 gap <= 10 ms: {gap99:+.2f} ms ({'met' if gap99 <= 10 else 'NOT met'})")


def throughput(bench: Bench, count: int, rounds: int) -> None:
    floods: dict[str, Callable[[int, int], float]] = {
        "raw send_task loop, worker main process [ref]": bench.flood_raw_in_worker,
        "raw send_task loop, bench process": bench.flood_raw,
        "emulator events -> our listener -> send_task": bench.flood_events,
        "the same, events queued first (dispatch alone)": bench.flood_queued_events,
    }
    names = list(floods)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_no in range(rounds):
        shift = round_no % len(names)  # rotate the order
        for name in names[shift:] + names[:shift]:
            samples[name].append(floods[name](round_no, count))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    reference = medians[names[0]]
    print(f"\nP4 throughput: {count} tasks x {rounds} rounds (median)")
    print(f"  {'path':<48} {'s':>7} {'tasks/s':>8} {'speed':>6}")
    for name in names:
        median = medians[name]
        print(f"  {name:<48} {median:7.3f} {count / median:8.0f} {reference / median:5.2f}x")
    publish = statistics.median(bench.publish_times)
    print(f"  (the emulator's publish calls took {publish:.3f} s of the events' time)")
    ours = medians[names[2]]
    print(
        f"  our dispatch alone (events already queued): "
        f"{medians[names[0]] / medians[names[3]]:.2f}x the reference"
    )
    for name in names[:2]:
        ratio = medians[name] / ours
        verdict = "met" if ratio >= 0.8 else "NOT met"
        print(f"  target: events >= 0.8x {name.split(',')[1].strip()}: {ratio:.2f}x ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--transport", choices=("ws", "sse"), default="ws")
    parser.add_argument("--forms", choices=("direct", "both"), default="direct")
    parser.add_argument("--no-throughput", action="store_true", help="P3 only")
    parser.add_argument("--log", type=Path, default=Path("/tmp/celery_bench_worker.log"))
    args = parser.parse_args()

    with redis_server() as port, Emulator() as emu:
        broker_url = f"redis://127.0.0.1:{port}/0"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SPOOLED_", "CELERY_"))},
            "BENCH_BROKER": broker_url,
            "BENCH_RESULTS": f"redis://127.0.0.1:{port}/1",
            "BENCH_SPOOLED_URL": emu.base_url,
            "BENCH_SPOOLED_KEY": emu.api_key,
            "BENCH_TRANSPORT": args.transport,
            "PYTHONPATH": str(HERE),
        }
        os.environ.update({k: env[k] for k in env if k.startswith("BENCH_")})
        sys.path.insert(0, str(HERE))
        from celery_bench_app import app, event_payload

        with celery_worker(env, args.log):
            if not emu.wait_for_connections(1, transport=args.transport, timeout=60):
                raise SystemExit(f"the worker's listener never connected; see {args.log}")
            bench = Bench(
                emu,
                app,
                redis.Redis(port=port, db=0),
                redis.Redis(port=port, db=1),
                event_payload,
                args.forms,
            )
            latency(bench, args.probes, args.warmup)
            if not args.no_throughput:
                throughput(bench, args.events, args.rounds)


if __name__ == "__main__":
    main()
