"""P1: a burst of events from the socket to one handler, WebSocket and SSE, every contender.

A server in its own process (``bench/frame_server.py``) sends ``--events`` pre-serialized
backend-shaped ``JobCompleted`` frames as fast as the client reads them. Each contender
connects, takes every event, and is timed from connect to the last event in its
handler. Contenders run interleaved, ``--rounds`` times, in one run; the table shows
medians and speed relative to the raw-library reference of that transport (higher is
faster). Needs ``pip install -r bench/requirements.txt`` for the official SDK. Not a test.

    python bench/stream.py [--events 100000] [--rounds 5] [--only ws|sse] [--select TEXT] [--no-gc]

The ``gc us/event`` column is the time the garbage collector ran during a contender's
run (``gc.callbacks``), per event; ``--no-gc`` shows what the run costs without it.
Before each run the garbage left by earlier runs is collected (not timed), so no
contender pays for another's.

Contenders (``ref`` marks the reference each ratio is taken against):

- raw websocket-client ``recv()`` + ``json.loads`` (UTF-8 check skipped, as ours does) [ref]
- raw httpx ``stream`` + ``iter_lines()`` + ``json.loads`` of each ``data:`` line [ref]
- ours, bare client: ``WebSocketClient``/``SSEClient`` with one ``on_event`` handler
- ours, runtime: ``SpooledRuntime`` with one ``spooled_signal`` receiver (what a worker runs)
- the official ``spooled`` SDK's ``WebSocketClient`` (handler) and ``SSEClient`` (``events()``)
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import websocket

from spooled_integrations.client import ConnectionOptions, SSEClient, WebSocketClient
from spooled_integrations.runtime import RuntimeConfig, SpooledRuntime, spooled_signal

sys.path.insert(0, str(Path(__file__).parent))
from frame_server import TOKEN

WAIT = 120.0  # seconds one contender may take before the run is declared broken


class Server:
    """``frame_server.py`` in a child process (so it never competes for our GIL)."""

    def __init__(self, events: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("frame_server.py")),
                "--events",
                str(events),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"frame server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


class GcMeter:
    """Time spent in the garbage collector while a contender runs (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started

    def measure(self, contender: Contender, server: Server, n: int) -> tuple[float, float]:
        """``(elapsed, seconds in the collector)`` of one run of ``contender``.

        The garbage of earlier runs is collected first (outside the timing): a full
        collection takes ~12 ms here, and whichever contender happened to trigger it
        would pay for the others' garbage.
        """
        gc.collect()
        self.seconds = 0.0
        gc.callbacks.append(self)
        try:
            return contender(server, n), self.seconds
        finally:
            gc.callbacks.remove(self)


class Counter:
    """Counts calls; notes the time of the ``n``-th and wakes the waiter."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.finished_at = 0.0
        self.done = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.count += 1
        if self.count == self.n:
            self.finished_at = time.perf_counter()
            self.done.set()

    def wait(self, started: float) -> float:
        if not self.done.wait(WAIT):
            raise RuntimeError(f"only {self.count} of {self.n} events within {WAIT} s")
        return self.finished_at - started


Contender = Callable[[Server, int], float]


def _options(server: Server) -> ConnectionOptions:
    return ConnectionOptions(base_url=server.base_url, token=TOKEN, liveness_timeout=30)


# -- WebSocket -----------------------------------------------------------------------


def raw_ws(server: Server, n: int) -> float:
    started = time.perf_counter()
    ws = websocket.create_connection(
        f"{server.ws_url}/api/v1/ws?token={TOKEN}",
        header=[f"Authorization: Bearer {TOKEN}"],
        skip_utf8_validation=True,
    )
    loads, recv = json.loads, ws.recv
    for _ in range(n):
        loads(recv())
    elapsed = time.perf_counter() - started
    ws.close()
    return elapsed


def ours_ws_client(server: Server, n: int) -> float:
    return _ours_client(WebSocketClient(_options(server)), n)


def ours_sse_client(server: Server, n: int) -> float:
    return _ours_client(SSEClient(_options(server)), n)


def _ours_client(client: WebSocketClient | SSEClient, n: int) -> float:
    counter = Counter(n)
    client.on_event(counter)
    started = time.perf_counter()
    client.connect()
    try:
        return counter.wait(started)
    finally:
        client.disconnect()


def ours_ws_runtime(server: Server, n: int) -> float:
    return _ours_runtime(server, n, "ws")


def ours_sse_runtime(server: Server, n: int) -> float:
    return _ours_runtime(server, n, "sse")


def _ours_runtime(server: Server, n: int, transport: str) -> float:
    counter = Counter(n)
    # The frame server has no job list to catch up from (and no gap to sweep): the live
    # path alone is measured.
    config = RuntimeConfig(
        connection=_options(server), transport=transport, queue_size=n + 1000, catch_up=False
    )
    runtime = SpooledRuntime(config)
    spooled_signal.connect(counter, weak=False)
    try:
        started = time.perf_counter()
        runtime.start()
        elapsed = counter.wait(started)
        runtime.stop(timeout=5)
        dropped = runtime.metrics.get("dropped")
        if dropped:
            raise RuntimeError(f"runtime dropped {dropped} events")
        return elapsed
    finally:
        spooled_signal.disconnect(counter)


def sdk_ws(server: Server, n: int) -> float:
    from spooled.realtime import WebSocketClient as SdkWebSocketClient
    from spooled.realtime import WebSocketConnectionOptions

    client = SdkWebSocketClient(
        WebSocketConnectionOptions(ws_url=server.ws_url, token=TOKEN, auto_reconnect=False)
    )
    counter = Counter(n)
    client.on_event(counter)
    started = time.perf_counter()
    client.connect()
    try:
        return counter.wait(started)
    finally:
        client.disconnect()


# -- SSE -----------------------------------------------------------------------------


def raw_sse(server: Server, n: int) -> float:
    started = time.perf_counter()
    count = 0
    loads = json.loads
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
    with (
        httpx.Client(timeout=30) as http,
        http.stream("GET", f"{server.base_url}/api/v1/events", headers=headers) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data:"):
                loads(line[5:])
                count += 1
                if count == n:
                    return time.perf_counter() - started
    raise RuntimeError(f"stream ended after {count} events")


def raw_sse_bytes(server: Server, n: int) -> float:
    """The leanest hand loop: raw bytes split on newlines, no text decoding."""
    started = time.perf_counter()
    count = 0
    loads = json.loads
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
    with (
        httpx.Client(timeout=30) as http,
        http.stream("GET", f"{server.base_url}/api/v1/events", headers=headers) as response,
    ):
        pending = b""
        for chunk in response.iter_raw():
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                if line.startswith(b"data:"):
                    loads(line[5:])
                    count += 1
                    if count == n:
                        return time.perf_counter() - started
    raise RuntimeError(f"stream ended after {count} events")


def sdk_sse(server: Server, n: int) -> float:
    from spooled.realtime import SSEClient as SdkSSEClient

    client = SdkSSEClient(server.base_url, TOKEN, auto_reconnect=False)
    counter = Counter(n)
    client.on_event(counter)
    started = time.perf_counter()
    try:
        for _ in client.events():
            if counter.done.is_set():
                return counter.finished_at - started
    finally:
        client.close()
    raise RuntimeError(f"stream ended after {counter.count} events")


CONTENDERS: dict[str, dict[str, Contender]] = {
    "ws": {
        "raw websocket-client recv + json.loads [ref]": raw_ws,
        "ours: WebSocketClient + on_event": ours_ws_client,
        "ours: SpooledRuntime + spooled_signal": ours_ws_runtime,
        "spooled SDK WebSocketClient": sdk_ws,
    },
    "sse": {
        "raw httpx iter_lines + json.loads [ref]": raw_sse,
        "raw httpx iter_raw + bytes split + json.loads": raw_sse_bytes,
        "ours: SSEClient + on_event": ours_sse_client,
        "ours: SpooledRuntime + spooled_signal": ours_sse_runtime,
        "spooled SDK SSEClient": sdk_sse,
    },
}

TARGETS = {
    # transport: (ours-vs-raw-ref minimum, ours-vs-SDK minimum), ours = the runtime row
    "ws": (1.0, 1.5),
    "sse": (0.8, 2.5),
}


def run(transport: str, server: Server, n: int, rounds: int, select: str | None) -> None:
    contenders = {
        name: fn
        for name, fn in CONTENDERS[transport].items()
        if select is None or select in name or "[ref]" in name
    }
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    in_gc: dict[str, list[float]] = {name: [] for name in contenders}
    meter = GcMeter()
    names = list(contenders)
    for round_no in range(rounds):
        # Rotate the order each round so no contender always runs first (or last).
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed, collecting = meter.measure(contenders[name], server, n)
            samples[name].append(elapsed)
            in_gc[name].append(collecting)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    reference = next(name for name in names if "[ref]" in name)
    ref_time = medians[reference]
    print(
        f"\n{transport.upper()}: {n:,} events x {rounds} rounds (median; speed = ref time / time)"
    )
    print(
        f"  {'contender':<48} {'median s':>9} {'events/s':>10} {'us/event':>9} {'speed':>7}"
        f" {'gc us/event':>12}"
    )
    for name in names:
        median = medians[name]
        collecting = statistics.median(in_gc[name])
        print(
            f"  {name:<48} {median:9.3f} {n / median:10,.0f} {median / n * 1e6:9.2f} "
            f"{ref_time / median:6.2f}x {collecting / n * 1e6:12.2f}"
        )
    runtime = next((name for name in names if "SpooledRuntime" in name), None)
    sdk = next((name for name in names if "SDK" in name), None)
    if runtime is None:
        return
    want_raw, want_sdk = TARGETS[transport]
    vs_raw = ref_time / medians[runtime]
    verdict = "met" if vs_raw >= want_raw else "NOT met"
    print(f"  target: runtime >= {want_raw}x raw: {vs_raw:.2f}x ({verdict})")
    if sdk is not None:
        vs_sdk = medians[sdk] / medians[runtime]
        verdict = "met" if vs_sdk >= want_sdk else "NOT met"
        print(f"  target: runtime >= {want_sdk}x SDK: {vs_sdk:.2f}x ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=("ws", "sse"))
    parser.add_argument("--select", help="run only contenders whose name contains this (+ refs)")
    parser.add_argument(
        "--no-gc", action="store_true", help="what-if: run with the garbage collector disabled"
    )
    args = parser.parse_args()
    if args.no_gc:
        gc.disable()
    server = Server(args.events)
    try:
        for transport in ("ws", "sse"):
            if args.only in (None, transport):
                run(transport, server, args.events, args.rounds, args.select)
    finally:
        server.close()


if __name__ == "__main__":
    main()
