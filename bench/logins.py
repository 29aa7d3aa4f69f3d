"""Logins: 20 listener processes on 5 simulated nodes start together; how long until all
are connected, and how many logins did it take?

The emulator (in this process) enforces the backend's login limiter: 5 logins a minute
per key prefix. Each listener is a separate Python process running a
:class:`SpooledRuntime` (WebSocket); a *node* is a token cache directory, shared by its
4 processes as a node's processes share ``~/.cache``. Modes:

- ``reference``: the same 20 processes against an emulator without a login limit and
  with the token cache off: the cost of starting 20 processes and connecting them;
- ``per-process``: the limit on, the token cache off: every process logs in itself
  (the behaviour before the shared cache);
- ``node``: the limit on, the default cache: one login per node;
- ``fleet``: the limit on, the default cache plus fleet coordination on Redis: one
  login for the fleet.

Reported per mode: seconds from spawning to the last process connected (median over
``--rounds``), that time as a ratio to the reference, logins the emulator answered (429s
included) and how many processes connected within ``--timeout``.

    python bench/logins.py [--processes 20] [--nodes 5] [--rounds 3] [--timeout 150]

Needs Redis on 127.0.0.1:6379 for ``fleet``. Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from spooled_integrations.testing import Emulator

LISTENER = """
import sys, time
from spooled_integrations import ConnectionState
from spooled_integrations.client import ConnectionOptions
from spooled_integrations.runtime import RuntimeConfig, SpooledRuntime

base_url, api_key, cache, redis_url, namespace = sys.argv[1:6]
coordination = (
    {"strategy": "lease", "redis_url": redis_url, "namespace": namespace} if redis_url else None
)
options = ConnectionOptions(base_url=base_url, api_key=api_key, token_cache=cache)
runtime = SpooledRuntime(RuntimeConfig(connection=options, coordination=coordination))
runtime.start()
while runtime.status()["state"] != ConnectionState.CONNECTED.value:
    time.sleep(0.02)
print(f"connected {time.time():.3f}", flush=True)
sys.stdin.read()  # until the bench closes our stdin
runtime.stop(timeout=2)
"""


def run_mode(mode: str, args: argparse.Namespace, workdir: Path) -> tuple[float, int, int]:
    limited = mode != "reference"
    emu = Emulator(login_limit=5 if limited else 1_000_000, login_window=60.0).start()
    namespace = f"bench-logins-{uuid.uuid4().hex[:8]}"
    processes = []
    started = time.time()
    try:
        for index in range(args.processes):
            node = index % args.nodes
            cache = "off" if mode in ("reference", "per-process") else str(workdir / f"n{node}")
            redis_url = args.redis if mode == "fleet" else ""
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        LISTENER,
                        emu.base_url,
                        emu.api_key,
                        cache,
                        redis_url,
                        namespace,
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    env={**os.environ, "PYTHONWARNINGS": "ignore"},
                )
            )
        connected_at = _connected_times(processes, started + args.timeout)
        last = max(connected_at) - started if connected_at else float("nan")
        return last, emu.login_count, len(connected_at)
    finally:
        for process in processes:
            if process.stdin:
                process.stdin.close()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        emu.stop()


def _connected_times(processes: list[subprocess.Popen[str]], deadline: float) -> list[float]:
    """When each process said it was connected, read as the lines come, until all did or
    ``deadline`` passed."""
    selector = selectors.DefaultSelector()
    for process in processes:
        assert process.stdout is not None
        selector.register(process.stdout, selectors.EVENT_READ)
    times: list[float] = []
    while len(times) < len(processes) and (remaining := deadline - time.time()) > 0:
        for key, _ in selector.select(remaining):
            line = key.fileobj.readline()  # type: ignore[union-attr]
            selector.unregister(key.fileobj)
            if line.startswith("connected "):
                times.append(float(line.split()[1]))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=150.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--modes", default="reference,node,fleet,per-process", help="comma-separated"
    )
    args = parser.parse_args()
    modes = args.modes.split(",")
    results: dict[str, list[tuple[float, int, int]]] = {mode: [] for mode in modes}
    for round_ in range(args.rounds):
        for mode in modes:  # interleaved, so the machine's mood touches every mode
            if mode == "per-process" and round_ > 0:
                continue  # minutes long and always the same shape: once is enough
            with tempfile.TemporaryDirectory() as workdir:
                results[mode].append(run_mode(mode, args, Path(workdir)))
            print(f"round {round_ + 1} {mode}: {results[mode][-1]}", file=sys.stderr)
    reference = statistics.median(r[0] for r in results.get("reference", [(1.0, 0, 0)]))
    print(f"\n{args.processes} processes on {args.nodes} nodes, login limit 5/min")
    print(
        f"{'mode':<12} {'all connected (s)':>18} {'x reference':>12} {'logins':>7} {'connected':>10}"
    )
    for mode, runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        logins = max(r[1] for r in runs)
        connected = min(r[2] for r in runs)
        print(
            f"{mode:<12} {seconds:>18.2f} {seconds / reference:>12.2f} {logins:>7} "
            f"{connected:>5}/{args.processes}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
