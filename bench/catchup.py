"""Catch-up: jobs completed through a drop, a stall, an outage and a restart; all once?

The emulator runs in a child process with the load: a thread that moves ``--jobs``
jobs on queue ``bench`` through created -> processing -> completed at ``--rate`` per
second (default mode: every move is published on the stream, as production does;
``--strict``: nothing is, as in the backend source, and the runtime polls the job
list with ``catch_up_poll="always"``). This process runs a :class:`SpooledRuntime`
(WebSocket, or ``--transport sse``; liveness timeout ``--liveness`` s; a checkpoint
file in a temporary directory; otherwise the defaults: reconnect backoff 1-30 s,
``catch_up_poll="auto"``) whose one subscription routes
``job.completed`` on ``bench`` to a publisher that records the job id, whether the
event was ``replayed`` (recovered by a catch-up sweep) and when it was dispatched.

While the load runs, four faults, each at a fixed share of the load and never before
the previous one's sweep was dispatched:

1. drop: every socket is aborted and the next ``--refuse`` reconnects get a 503
   (one: the stream is away ~2-3 s with the default backoff);
2. stall: the server keeps the socket open but sends nothing (events are dropped)
   until the runtime's liveness timeout notices; it talks again before the reconnect;
3. outage: the emulator stops listening for ``--outage`` s and starts again on the same
   port. The load goes on meanwhile: the emulator keeps its jobs across stop/start and
   its control methods work while it is stopped (the events they publish reach no
   stream), as workers finishing jobs while the API is unreachable;
4. restart: ``runtime.stop()``, and ``--restart-pause`` s later a new runtime on the
   same checkpoint file (same publisher: one count across both lives).

Then it waits until every completed job's event was dispatched (or ``--timeout``).
Reported: jobs, delivered, lost (never dispatched), duplicated (dispatched more than
once), recovered by catch-up; per fault, the time from the reconnect (state CONNECTED)
to the last event its sweep recovered and to the sweep's ``caught_up`` signal, and
the sweep's figures (``found``, ``recovered``, ``duplicates``, REST ``requests`` and
the pages its finds alone fill, ``complete``); every sweep; the total wall time.

    python bench/catchup.py                    # 10,000 jobs at 200/s over WebSocket
    python bench/catchup.py --transport sse
    python bench/catchup.py --strict           # no job events on the stream: polling

Exit status 1 if any job's event was lost or dispatched more than once. Not part of
the test run.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from spooled_integrations.client import ConnectionOptions, ConnectionState
from spooled_integrations.protocol import Event
from spooled_integrations.runtime import RuntimeConfig, SpooledRuntime, Subscription
from spooled_integrations.runtime.signals import caught_up, connection_state_changed

QUEUE = "bench"
PAGE = 100  # jobs per job-list request (the backend's largest page)
FAULTS = (("drop", 0.10), ("stall", 0.25), ("outage", 0.35), ("restart", 0.75))
"""Each fault and the share of the load after which it starts (unless still busy)."""


# -- the child: emulator and load ------------------------------------------------------


class Load:
    """Moves jobs through created -> processing -> completed at a fixed rate."""

    def __init__(self, emu: Any, jobs: int, rate: float) -> None:
        self.emu, self.jobs, self.rate = emu, jobs, rate
        self.done: list[tuple[str, float]] = []  # (job id, wall-clock time completed)
        self.seconds: float | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="load", daemon=True)

    def _run(self) -> None:
        emu = self.emu
        started = time.monotonic()
        try:
            for seq in range(self.jobs):
                delay = started + seq / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                job = emu.create_job(QUEUE)
                emu.set_job_status(job, "processing")
                emu.set_job_status(job, "completed")
                self.done.append((job, time.time()))
        except Exception as exc:  # reported to the parent, which fails the run
            self.error = f"{type(exc).__name__}: {exc}"
        self.seconds = time.monotonic() - started


def serve(strict: bool, jobs: int, rate: float) -> None:
    """The child: answers one JSON line on stdout per JSON command line on stdin."""
    from spooled_integrations.testing import Emulator

    # Pings/keep-alives every second: quiet moments (before and after the load) must
    # not look like a stall to a 3 s liveness timeout.
    emu = Emulator(strict=strict, ping_interval=1.0, keepalive_interval=1.0).start()
    load = Load(emu, jobs, rate)
    down_from = down_jobs = 0

    def reply(**fields: Any) -> None:
        print(json.dumps(fields), flush=True)

    reply(base_url=emu.base_url, api_key=emu.api_key)
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "go":
            load.thread.start()
        elif op == "drop":
            emu.reject_next(command["refuse"], 503)
            emu.drop_connections()
        elif op == "stall":
            emu.stall(command["on"])
        elif op == "stop":
            emu.stop()
            down_from = len(load.done)
        elif op == "start":
            down_jobs += len(load.done) - down_from
            emu.start()
        elif op == "quit":
            break
        state: dict[str, Any] = {
            "completed": len(load.done),
            "finished": load.seconds is not None,
            "error": load.error,
        }
        if op == "result":
            state.update(done=load.done, seconds=load.seconds, down_jobs=down_jobs)
        if op == "counters":
            state.update(counters=emu.counters)
        reply(**state)
    emu.stop()


class Child:
    """The parent's handle on the child process."""

    def __init__(self, args: argparse.Namespace) -> None:
        command = [sys.executable, __file__, "--serve", f"--jobs={args.jobs}"]
        command += [f"--rate={args.rate}"] + (["--strict"] if args.strict else [])
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.address = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the emulator process ended")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(10)


# -- the listener: what it dispatched and when ---------------------------------------------


class RecordingPublisher:
    """Keeps (monotonic time, job id, replayed) per publish; appends only (GIL-safe)."""

    name = "bench"

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, bool]] = []

    def validate(self, subscriptions: Sequence[Subscription]) -> list[str]:
        return []

    def publish(self, subscription: Subscription, payload: Any, event: Event) -> None:
        self.calls.append((time.monotonic(), event.job_id or "", event.replayed))


class Observer:
    """Connection states and sweeps of every runtime, with the monotonic time seen."""

    def __init__(self) -> None:
        self.states: list[tuple[float, Any, ConnectionState]] = []
        self.sweeps: list[tuple[float, Any, dict[str, Any]]] = []
        self._cond = threading.Condition()
        connection_state_changed.connect(self._state, weak=False)
        caught_up.connect(self._swept, weak=False)

    def _state(self, sender: Any, *, state: ConnectionState, **_: Any) -> None:
        with self._cond:
            self.states.append((time.monotonic(), sender, state))
            self._cond.notify_all()

    def _swept(self, sender: Any, **info: Any) -> None:
        with self._cond:
            self.sweeps.append((time.monotonic(), sender, info))
            self._cond.notify_all()

    def state_at(
        self,
        runtime: Any,
        after: float,
        want: Callable[[ConnectionState], bool],
        timeout: float,
    ) -> float | None:
        """When ``runtime`` first entered a wanted state after ``after`` (waits for it)."""

        def find() -> float | None:
            return next(
                (t for t, r, s in self.states if r is runtime and t > after and want(s)), None
            )

        with self._cond:
            self._cond.wait_for(lambda: find() is not None, timeout)
            return find()

    def swept_at(self, runtime: Any, after: float, timeout: float) -> float | None:
        """When ``runtime``'s first sweep of a gap (not a poll) after ``after`` was dispatched."""

        def find() -> float | None:
            sweeps = self.sweeps
            kinds = ("gap", "restart", "start")
            return next(
                (t for t, r, i in sweeps if r is runtime and t > after and i["kind"] in kinds), None
            )

        with self._cond:
            self._cond.wait_for(lambda: find() is not None, timeout)
            return find()

    def close(self) -> None:
        connection_state_changed.disconnect(self._state)
        caught_up.disconnect(self._swept)


def connected(state: ConnectionState) -> bool:
    return state == ConnectionState.CONNECTED


def disconnected(state: ConnectionState) -> bool:
    return state != ConnectionState.CONNECTED


def make_runtime(
    args: argparse.Namespace,
    address: dict[str, Any],
    checkpoint: Path,
    publisher: RecordingPublisher,
) -> SpooledRuntime:
    config: dict[str, Any] = {}
    if args.strict:
        config.update(catch_up_poll="always", catch_up_interval=args.poll_interval)
    return SpooledRuntime(
        RuntimeConfig(
            connection=ConnectionOptions(
                base_url=address["base_url"],
                api_key=address["api_key"],
                liveness_timeout=args.liveness,
            ),
            transport=args.transport,
            subscriptions=[
                {
                    "events": ["job.completed"],
                    "queue": QUEUE,
                    "task": "bench.count",
                    "delivery": "every_node",
                }
            ],
            checkpoint=str(checkpoint),
            **config,
        ),
        publisher,
    )


# -- the run -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    wall_started = time.monotonic()
    child = Child(args)
    observer = Observer()
    publisher = RecordingPublisher()
    checkpoint = Path(tempfile.mkdtemp(prefix="spooled-catchup-")) / "checkpoint.json"
    runtimes: list[SpooledRuntime] = []
    faults: list[dict[str, Any]] = []
    try:
        runtime = make_runtime(args, child.address, checkpoint, publisher)
        runtimes.append(runtime)
        runtime.start()
        if observer.state_at(runtime, 0.0, connected, 15) is None:
            raise SystemExit("the runtime did not connect")
        child.call("go")
        go = time.monotonic()
        duration = args.jobs / args.rate
        for name, share in FAULTS:
            time.sleep(max(0.0, go + share * duration - time.monotonic()))
            began = time.monotonic()
            fault: dict[str, Any] = {"name": name, "began": began - go}
            if name == "drop":
                child.call("drop", refuse=args.refuse)
            elif name == "stall":
                child.call("stall", on=True)
                noticed = observer.state_at(runtime, began, disconnected, args.liveness + 10)
                child.call("stall", on=False)
                fault["noticed"] = None if noticed is None else noticed - began
            elif name == "outage":
                child.call("stop")
                time.sleep(args.outage)
                back = time.monotonic()
                child.call("start")
                fault["server back"] = back - began
            else:
                runtime.stop(timeout=10)
                fault["stop took"] = time.monotonic() - began
                time.sleep(args.restart_pause)
                runtime = make_runtime(args, child.address, checkpoint, publisher)
                runtimes.append(runtime)
                runtime.start()
            reconnected = observer.state_at(runtime, began, connected, 60)
            fault["reconnected"] = reconnected
            if reconnected is not None:
                fault["swept"] = observer.swept_at(runtime, reconnected, 60)
            faults.append(fault)

        while not child.call("progress")["finished"]:
            time.sleep(0.5)
        result = child.call("result")
        if result["error"]:
            print(f"the load failed: {result['error']}")
        expected = {job for job, _ in result["done"]}
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            if expected <= {job for _, job, _ in publisher.calls}:
                break
            time.sleep(0.1)
        time.sleep(args.settle)  # anything dispatched twice late is counted too
        statuses = [rt.status() for rt in runtimes]
        emu = child.call("counters")["counters"]
    finally:
        for rt in runtimes:
            rt.stop(timeout=5)
        observer.close()
        child.close()
        shutil.rmtree(checkpoint.parent, ignore_errors=True)
    wall = time.monotonic() - wall_started
    return report(args, result, emu, publisher, observer, faults, statuses, go, wall)


# -- the report ------------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    result: dict[str, Any],
    emu: dict[str, int],
    publisher: RecordingPublisher,
    observer: Observer,
    faults: list[dict[str, Any]],
    statuses: list[dict[str, Any]],
    go: float,
    wall: float,
) -> int:
    done = dict(result["done"])
    calls = list(publisher.calls)
    runs = Counter(job for _, job, _ in calls)
    lost = [job for job in done if job not in runs]
    duplicated = {job: n for job, n in runs.items() if n > 1}
    strangers = [job for job in runs if job not in done]
    first: dict[str, tuple[float, bool]] = {}  # job id -> its first dispatch: when, replayed
    for t, job, replayed in calls:
        first.setdefault(job, (t, replayed))
    first_replayed = sum(replayed for _, replayed in first.values())
    all_in = max((t for t, _ in first.values()), default=go)

    mode = "strict: no job events on the stream, catch_up_poll=always" if args.strict else "default"
    print(
        f"catch-up: {args.jobs:,} jobs at {args.rate:g}/s over {args.transport}; emulator "
        f"({mode}) in a child process; liveness timeout {args.liveness:g} s"
    )
    print(
        f"load: {len(done):,} jobs completed in {result['seconds']:.1f} s, "
        f"{result['down_jobs']:,} of them during the outage (the emulator's jobs move while "
        f"it is stopped; their events reach no stream)"
    )
    print(
        f"delivered {len(runs):,} of {len(done):,} jobs ({len(runs) - first_replayed:,} live, "
        f"{first_replayed:,} recovered by catch-up), lost {len(lost)}, duplicated "
        f"{len(duplicated)}" + (f", unknown ids {len(strangers)}" if strangers else "")
    )
    for job in lost[:5]:
        print(f"  lost {job}: completed at +{done[job] - _wall(go):.2f} s")
    for job, n in list(duplicated.items())[:5]:
        times = ", ".join(
            f"+{t - go:.2f}{' replayed' if r else ''}" for t, j, r in calls if j == job
        )
        completed = done[job] - _wall(go) if job in done else float("nan")
        print(f"  duplicated {job} x{n}: completed at +{completed:.2f} s, dispatched at {times}")

    print()
    print("per fault (s: seconds; reconnect: from the fault's start to CONNECTED):")
    rows = [
        ("fault", "at s", "reconnect", "->last recovered", "->caught_up", "recovered", "requests")
    ]
    rows += [_fault_row(fault, observer, calls, go) for fault in faults]
    _table(rows)
    notes = [f"stall noticed after {f['noticed']:.1f} s" for f in faults if f.get("noticed")]
    notes += [f"server back after {f['server back']:.1f} s" for f in faults if "server back" in f]
    notes += [
        f"restart: stop() took {f['stop took']:.2f} s, then {args.restart_pause:g} s until the "
        "new runtime started"
        for f in faults
        if "stop took" in f
    ]
    print("(" + "; ".join(notes) + ")")

    print()
    print("every sweep (window: until - since, 5 s of skew each side included; pages: what its")
    print("finds alone fill, 100 a page):")
    rows = [("kind", "at s", "window s", "found", "recovered", "duplicates", "requests", "pages")]
    rows[0] += ("complete",)
    for t, _, info in observer.sweeps:
        window = _seconds(info["until"]) - _seconds(info["since"])
        rows.append(
            (
                info["kind"],
                f"{t - go:.1f}",
                f"{window:.1f}",
                f"{info['found']:,}",
                f"{info['recovered']:,}",
                f"{info['duplicates']:,}",
                f"{info['requests']}",
                f"{math.ceil(info['found'] / PAGE)}",
                "yes" if info["complete"] else f"NO ({info['reason']})",
            )
        )
    _table(rows)

    counters: Counter[str] = Counter()
    names = ("received", "dispatched", "duplicates_suppressed", "caught_up", "catch_up_requests")
    for status in statuses:
        for name in (*names, "reconnects"):
            counters[name] += status["counters"][name]
    dropped = [s["counters"]["dropped"] for s in statuses if s["counters"]["dropped"]]
    swept = sum(info["requests"] for _, _, info in observer.sweeps)
    print()
    print(
        "runtime counters (both lives): "
        + ", ".join(f"{name} {value:,}" for name, value in counters.items())
        + (f", dropped {dropped}" if dropped else "")
    )
    print(
        f"job-list requests: {swept:,} in the {len(observer.sweeps)} sweeps above; "
        f"{emu['rest_list']:,} answered by the emulator"
    )
    print(
        f"emulator: stalled_drops {emu['stalled_drops']:,}, undelivered {emu['undelivered']:,}, "
        f"rejected_by_fault {emu['rejected_by_fault']}"
    )
    print(
        f"load done at +{result['seconds']:.1f} s, "
        f"{'the last job seen first' if lost else 'every job seen'} at +{all_in - go:.1f} s; "
        f"wall time {wall:.1f} s"
    )
    ok = not lost and not duplicated and not result["error"]
    print("OK" if ok else "FAILED: lost or duplicated events")
    return 0 if ok else 1


def _fault_row(
    fault: dict[str, Any], observer: Observer, calls: list[tuple[float, str, bool]], go: float
) -> tuple[str, ...]:
    """One fault: reconnect delay, then its sweep's figures (the first gap/restart sweep
    after the reconnect; its recovered events are the replayed ones dispatched after the
    previous sweep's signal and up to its own)."""
    reconnected, swept = fault["reconnected"], fault.get("swept")
    head = (fault["name"], f"{fault['began']:.1f}")
    if reconnected is None:
        return (*head, "never")
    back = f"{reconnected - go - fault['began']:.2f}"
    if swept is None:
        return (*head, back, "no sweep in 60 s")
    info = next(info for t, _, info in observer.sweeps if t == swept)
    before = max((t for t, _, _ in observer.sweeps if t < swept), default=0.0)
    replayed = [t for t, _, r in calls if r and before < t <= swept]
    last = f"{max(replayed) - reconnected:.2f}" if replayed else "-"
    return (
        *head,
        back,
        last,
        f"{swept - reconnected:.2f}",
        f"{info['recovered']:,}",
        str(info["requests"]),
    )


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ]
        print("  " + "  ".join(cells).rstrip())


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _wall(mono: float) -> float:
    """A monotonic moment of this process as wall-clock seconds."""
    return time.time() - (time.monotonic() - mono)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0, help="jobs completed per second")
    parser.add_argument("--transport", choices=["ws", "sse"], default="ws")
    parser.add_argument("--strict", action="store_true", help="backend-source emulator; polling")
    parser.add_argument("--liveness", type=float, default=3.0, help="liveness timeout (s)")
    parser.add_argument("--refuse", type=int, default=1, help="reconnects refused after the drop")
    parser.add_argument("--outage", type=float, default=10.0, help="server outage (s)")
    parser.add_argument("--restart-pause", type=float, default=3.0, help="worker down (s)")
    parser.add_argument(
        "--poll-interval", type=float, default=5.0, help="--strict: s between polls"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="wait for the last event (s)")
    parser.add_argument("--settle", type=float, default=2.0, help="then wait for repeats (s)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.strict, args.jobs, args.rate)
        return 0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
