"""``spooled-integrations demo``: Spooled events run Celery tasks, all in this process.

Starts the embedded emulator (a local Spooled look-alike, default mode: it publishes
job events when jobs change) and a Celery worker on the in-memory broker, enables the
Spooled integration with ``install(app)``, routes ``job.completed`` on the Spooled
queue ``emails`` to a local task and connects a ``spooled_signal`` receiver to
``job.failed``. It then moves jobs through the emulator one step at a time, waits for
and prints each event and each task run; cuts the connection and finishes two more jobs
while it is down, which the catch-up sweep of the REST job list recovers; checks that
every expected reaction happened exactly once, and prints a summary with the runtime
status. No Redis, no account, no network beyond 127.0.0.1.

Exit status: 0 when everything expected ran and shutdown left no thread or socket
behind; 1 when something did not happen within ``--timeout`` (the message says what);
2 when Celery or the testing extra is missing.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from spooled_integrations.celery import SpooledStep
    from spooled_integrations.client import ConnectionState
    from spooled_integrations.protocol import Event
    from spooled_integrations.testing import Emulator

__all__ = ["DemoFailed", "add_arguments", "run"]

QUEUE = "emails"
OTHER_QUEUE = "reports"
TASK = "demo.on_email_sent"
BLIP_JOBS = 2  # jobs finished while the connection is down
_STOP_LIMIT = 5.0  # seconds the worker may take to stop
_LEFTOVER_GRACE = 3.0  # seconds threads and sockets get to go away after the stop


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs",
        type=int,
        default=3,
        metavar="N",
        help=f"jobs to complete on the Spooled queue {QUEUE!r} (default 3)",
    )
    parser.add_argument(
        "--transport", choices=("ws", "sse"), default="ws", help="connection type (default ws)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="fail when the jobs' events and tasks have not all happened by then (default 15)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also show the library's INFO log lines"
    )


class DemoFailed(Exception):
    """Something the demo expected did not happen; the message says what."""


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1 or args.timeout <= 0:
        print("spooled-integrations demo: --jobs and --timeout must be positive", file=sys.stderr)
        return 2
    missing = [
        what
        for what, modules in (("Celery", ("celery",)), ("the testing extra", ("aiohttp", "jwt")))
        if any(importlib.util.find_spec(module) is None for module in modules)
    ]
    if missing:
        print(
            f"spooled-integrations demo needs {' and '.join(missing)}: "
            "pip install 'spooled-integrations[celery,testing]' (or -e \".[all]\" in a checkout)",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        _Demo(jobs=args.jobs, transport=args.transport, timeout=args.timeout).run()
    except DemoFailed as exc:
        print(f"\nspooled-integrations demo FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


class _Printer:
    """One readable line per happening, from any thread: elapsed seconds, tag, text."""

    def __init__(self) -> None:
        # Re-entrant: the main thread holds it around an emulator call and its line, so
        # the event lines that call causes (other threads) always come after it.
        self.lock = threading.RLock()
        self._started = time.monotonic()

    def __call__(self, tag: str, message: str) -> None:
        with self.lock:
            print(f"{time.monotonic() - self._started:6.2f}s  {tag:<9} {message}", flush=True)

    def plain(self, text: str = "") -> None:
        with self.lock:
            print(text, flush=True)


class _Tally:
    """Counters that receivers and the task add to and the main thread waits on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._counts: collections.Counter[str] = collections.Counter()

    def add(self, key: str) -> None:
        with self._cond:
            self._counts[key] += 1
            self._cond.notify_all()

    def get(self, key: str) -> int:
        with self._cond:
            return self._counts[key]

    def wait(self, condition: Callable[[], bool], deadline: float) -> bool:
        with self._cond:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))  # also re-checks outside conditions
            return True


class _Demo:
    def __init__(self, *, jobs: int, transport: str, timeout: float) -> None:
        self.jobs = jobs
        self.transport = transport
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.out = _Printer()
        self.tally = _Tally()
        self.event_types: collections.Counter[str] = collections.Counter()
        self.task_jobs: list[str] = []  # job ids the task ran for
        self.failed_jobs: list[str] = []  # job ids the job.failed receiver got
        self.expected_tasks: list[str] = []
        self.expected_failed: list[str] = []
        self.worker_thread: threading.Thread | None = None
        self.worker_stop_seconds = 0.0

    def run(self) -> None:
        from spooled_integrations.testing import Emulator

        sockets_before = _open_sockets()
        self.out.plain(
            "spooled-integrations demo: Spooled events run local Celery tasks\n"
            "(the embedded emulator plays Spooled; Celery runs on the in-memory broker; "
            "all in this process)\n"
        )
        with contextlib.ExitStack() as stack:
            hidden = stack.enter_context(_without_spooled_environment())
            if hidden:
                self.out("note", f"ignoring {', '.join(hidden)}: the demo uses its own emulator")
            emulator = stack.enter_context(Emulator())
            self.out("emulator", f"Spooled emulator listening on {emulator.base_url}")
            stack.enter_context(self._receivers())
            app = self._app(emulator)
            stack.callback(app.close)
            worker, step = stack.enter_context(self._worker(app))
            self._wait_connected(step)
            self._drive(emulator)
            self._blip(emulator, step)
            self._check_exactly_once(step)
            status, source = self._status(app, worker.hostname, step)
            # Unwinds in reverse: worker (and its Spooled listener), app, emulator.
        self._check_nothing_left(sockets_before)
        self._summary(status, source)

    # -- set-up ----------------------------------------------------------------------

    def _app(self, emulator: Emulator) -> Celery:
        from celery import Celery

        from spooled_integrations.celery import install

        app = Celery("spooled_demo", broker="memory://localhost/")
        app.set_default()  # the solo pool looks tasks up in the default app
        app.conf.update(
            spooled_base_url=emulator.base_url,
            spooled_ws_url=emulator.ws_url,
            spooled_api_key=emulator.api_key,
            spooled_transport=self.transport,
            spooled_subscriptions=[
                {
                    "name": "emails-done",
                    "events": ["job.completed"],
                    "queue": QUEUE,
                    "task": TASK,
                    "payload": "data",
                    "delivery": "every_node",  # one listener here; no coordination needed
                }
            ],
            spooled_shutdown_timeout=_STOP_LIMIT,
            broker_connection_retry_on_startup=True,
            # The in-memory transport polls; its default 1 s would delay every task.
            broker_transport_options={"polling_interval": 0.05},
            worker_hijack_root_logger=False,
        )
        tally, out, task_jobs = self.tally, self.out, self.task_jobs

        @app.task(name=TASK, shared=False)
        def on_email_sent(data: dict[str, Any]) -> None:
            job = str(data.get("job_id"))
            task_jobs.append(job)
            keys = ", ".join(sorted(key for key in data if key != "summary"))
            out("task", f"{TASK} ran for job {_short(job)} in the Celery worker (data: {keys})")
            tally.add("task")

        install(app)
        return app

    @contextlib.contextmanager
    def _receivers(self) -> Iterator[None]:
        from spooled_integrations.runtime import (
            connection_state_changed,
            receiver_failed,
            spooled_signal,
        )

        def on_every_event(sender: str, *, event: Event, **kwargs: Any) -> None:
            self.event_types[event.type] += 1
            self.out("event", _describe(event))
            self.tally.add(f"{event.type}:{event.job_id}")

        def on_job_failed(sender: str, *, event: Event, **kwargs: Any) -> None:
            self.failed_jobs.append(str(event.job_id))
            self.out(
                "receiver",
                f"on_job_failed got job.failed for job {_short(event.job_id)} "
                f"(spooled_signal receiver, thread {threading.current_thread().name})",
            )
            self.tally.add("failed")

        def on_state(sender: Any, *, state: ConnectionState, previous: Any, **kw: Any) -> None:
            self.out("spooled", f"connection {previous.value} -> {state.value}")
            self.tally.add(f"state:{state.value}")

        def on_receiver_failed(sender: Any, *, exception: BaseException, **kw: Any) -> None:
            self.out("error", f"a receiver raised {exception!r}")

        # Receivers defined inside a function need weak=False: blinker holds weak refs.
        hooks: list[tuple[Any, Callable[..., Any], str | None]] = [
            (spooled_signal, on_every_event, None),
            (spooled_signal, on_job_failed, "job.failed"),
            (connection_state_changed, on_state, None),
            (receiver_failed, on_receiver_failed, None),
        ]
        for signal, receiver, sender in hooks:
            if sender is None:
                signal.connect(receiver, weak=False)
            else:
                signal.connect(receiver, sender=sender, weak=False)
        try:
            yield
        finally:
            for signal, receiver, sender in hooks:
                if sender is None:
                    signal.disconnect(receiver)
                else:
                    signal.disconnect(receiver, sender=sender)

    @contextlib.contextmanager
    def _worker(self, app: Celery) -> Iterator[tuple[Any, SpooledStep]]:
        """A real ``WorkController`` (solo pool) on a thread, stopped warm on exit."""
        from spooled_integrations.celery import SpooledStep
        from spooled_integrations.errors import ConfigurationError

        ready = threading.Event()
        try:
            worker: Any = app.WorkController(
                hostname="demo@localhost",
                pool="solo",
                concurrency=1,
                without_mingle=True,
                without_gossip=True,
                without_heartbeat=True,
                ready_callback=lambda consumer: ready.set(),
            )
        except ConfigurationError as exc:  # the bootstep checks the settings here
            raise DemoFailed(f"the worker refused the Spooled settings: {exc}") from None
        step: SpooledStep = worker.blueprint.steps[SpooledStep.name]
        thread = threading.Thread(target=worker.start, name="celery-worker", daemon=True)
        self.worker_thread = thread
        thread.start()
        try:
            if not self.tally.wait(lambda: ready.is_set() or not thread.is_alive(), self.deadline):
                raise DemoFailed(f"the Celery worker was not ready within {self.timeout:g}s")
            self._check_worker()
            self.out(
                "worker",
                f"Celery worker {worker.hostname} ready (solo pool, memory:// broker); "
                f"Spooled listener on, enabled by {step.enabled_by}",
            )
            self.out("routing", f"job.completed on Spooled queue {QUEUE!r} -> task {TASK}")
            self.out("routing", "job.failed on any queue -> spooled_signal receiver on_job_failed")
            yield worker, step
        finally:
            self._stop_worker(app, worker, thread)

    def _stop_worker(self, app: Celery, worker: Any, thread: threading.Thread) -> None:
        from celery.worker import state

        worker_state: Any = state
        started = time.monotonic()
        worker_state.should_stop = 0  # a warm shutdown, what SIGTERM asks for
        try:
            # Celery's in-memory loop checks that flag only between messages, then
            # drains once more (2 s each when idle): control messages wake it up.
            while thread.is_alive() and time.monotonic() - started < _STOP_LIMIT:
                with contextlib.suppress(Exception):
                    app.control.broadcast("ping", destination=[worker.hostname], reply=False)
                thread.join(0.05)
        finally:
            worker_state.should_stop = None
        self.worker_stop_seconds = time.monotonic() - started
        if thread.is_alive():
            raise DemoFailed(f"the Celery worker did not stop within {_STOP_LIMIT:g}s")
        self.out("worker", f"stopped (warm shutdown) in {self.worker_stop_seconds:.2f}s")

    def _check_worker(self) -> None:
        thread = self.worker_thread
        if thread is not None and not thread.is_alive():
            raise DemoFailed("the Celery worker stopped unexpectedly (its log is above)")

    # -- the jobs ----------------------------------------------------------------------

    def _wait_connected(self, step: SpooledStep) -> None:
        if not self._wait_for(lambda: self.tally.get("state:connected") > 0):
            self._check_worker()
            status = step.runtime.status() if step.runtime is not None else {}
            raise DemoFailed(
                f"the Spooled listener did not connect to the emulator within {self.timeout:g}s "
                f"(state {status.get('state')}, last error {status.get('last_error')})"
            )

    def _drive(self, emulator: Emulator) -> None:
        """Move each job through the emulator; after each step wait for what it causes.

        Each emails job must run the task, the reports job must run nothing, and the
        failed job must reach the receiver.
        """
        plan = [(QUEUE, "completed")] * self.jobs + [(OTHER_QUEUE, "completed"), (QUEUE, "failed")]
        for queue, outcome in plan:
            tasks_before, failed_before = self.tally.get("task"), self.tally.get("failed")
            with self.out.lock:
                job = emulator.create_job(queue, {"to": "user@example.com"})
                self.out("emulator", f"job {_short(job)} created on queue {queue!r}")
            self._expect(f"job.created:{job}", 1, f"job.created for job {_short(job)}")
            self._move(emulator, job, "processing")
            self._expect(f"job.started:{job}", 1, f"job.started for job {_short(job)}")
            self._move(emulator, job, outcome)
            self._expect(f"job.{outcome}:{job}", 1, f"job.{outcome} for job {_short(job)}")
            if outcome == "failed":
                self.expected_failed.append(job)
                self._expect("failed", failed_before + 1, f"on_job_failed for job {_short(job)}")
            elif queue == QUEUE:
                self.expected_tasks.append(job)
                self._expect("task", tasks_before + 1, f"task {TASK} for job {_short(job)}")

    def _blip(self, emulator: Emulator, step: SpooledStep) -> None:
        """Cut the connection and finish jobs while it is down: the catch-up sweep of the
        REST job list runs their task once each, marked as recovered."""
        runtime = step.runtime
        assert runtime is not None
        connected = self.tally.get("state:connected")
        self.out("emulator", "network blip: every connection dropped, the next reconnect refused")
        emulator.reject_next(1, 503)
        emulator.drop_connections()
        self._expect("state:reconnecting", 1, "the listener noticing the dropped connection")
        for _ in range(BLIP_JOBS):
            with self.out.lock:
                job = emulator.create_job(QUEUE, {"to": "user@example.com"})
                self.out("emulator", f"job {_short(job)} created on queue {QUEUE!r} (unheard)")
            self._move(emulator, job, "processing")
            self._move(emulator, job, "completed")
            self.expected_tasks.append(job)
        self._expect("state:connected", connected + 1, "the reconnect after the blip")
        tasks = len(self.expected_tasks)
        self._expect("task", tasks, f"the tasks of the {BLIP_JOBS} jobs finished during the blip")
        if not self._wait_for(lambda: runtime.metrics.get("caught_up") >= BLIP_JOBS * 3):
            raise DemoFailed(
                f"the catch-up sweep recovered {runtime.metrics.get('caught_up')} event(s) of "
                f"the blip within {self.timeout:g}s; expected {BLIP_JOBS * 3}"
            )

    def _move(self, emulator: Emulator, job: str, status: str) -> None:
        with self.out.lock:
            self.out("emulator", f"job {_short(job)} {status}")
            error = "SMTP timeout" if status == "failed" else None
            emulator.set_job_status(job, status, error=error)

    def _expect(self, key: str, count: int, what: str) -> None:
        if not self._wait_for(lambda: self.tally.get(key) >= count):
            self._check_worker()
            raise DemoFailed(f"{what} did not happen within {self.timeout:g}s")

    def _wait_for(self, condition: Callable[[], bool]) -> bool:
        thread = self.worker_thread
        return self.tally.wait(
            lambda: condition() or (thread is not None and not thread.is_alive()), self.deadline
        ) and (thread is None or thread.is_alive())

    def _check_exactly_once(self, step: SpooledStep) -> None:
        """Wait until every job's second (direct) form was suppressed, then compare runs."""
        runtime = step.runtime
        assert runtime is not None
        finished = self.jobs + 2
        if not self._wait_for(lambda: runtime.metrics.get("duplicates_suppressed") >= finished):
            self._check_worker()
            raise DemoFailed(
                f"expected {finished} duplicates suppressed (the emulator sends each finished "
                f"job twice), saw {runtime.metrics.get('duplicates_suppressed')} within "
                f"{self.timeout:g}s"
            )
        time.sleep(0.2)  # room for a wrong second task run to show up
        if sorted(self.task_jobs) != sorted(self.expected_tasks):
            raise DemoFailed(
                f"task {TASK} ran for jobs {_shorts(self.task_jobs)}; expected exactly once "
                f"for each of {_shorts(self.expected_tasks)}"
            )
        if sorted(self.failed_jobs) != sorted(self.expected_failed):
            raise DemoFailed(
                f"on_job_failed ran for jobs {_shorts(self.failed_jobs)}; expected exactly once "
                f"for {_shorts(self.expected_failed)}"
            )

    def _status(self, app: Celery, hostname: str, step: SpooledStep) -> tuple[dict[str, Any], str]:
        """The node's status the way operators get it: ``inspect spooled_status``."""
        inspect: Any = app.control.inspect(destination=[hostname], timeout=2.0, limit=1)
        replies = inspect._request("spooled_status") or {}
        reply = replies.get(hostname) if isinstance(replies, dict) else None
        if isinstance(reply, dict):
            return reply, "the reply to inspect spooled_status"
        return step.status(), "SpooledStep.status(); inspect got no reply within 2 s"

    # -- after -----------------------------------------------------------------------

    def _check_nothing_left(self, sockets_before: int | None) -> None:
        deadline = time.monotonic() + _LEFTOVER_GRACE
        main = threading.main_thread()
        while True:
            threads = [t.name for t in threading.enumerate() if t is not main and t.is_alive()]
            now = _open_sockets()
            sockets = 0 if now is None or sockets_before is None else now - sockets_before
            if not threads and sockets <= 0:
                return
            if time.monotonic() >= deadline:
                raise DemoFailed(
                    f"shutdown left {len(threads)} thread(s) ({', '.join(sorted(threads))}) "
                    f"and {max(sockets, 0)} socket(s) open"
                )
            time.sleep(0.05)

    def _summary(self, status: dict[str, Any], source: str) -> None:
        counters = status.get("counters", {})
        dropped = sum(counters.get("dropped", {}).values())
        types = ", ".join(f"{name} {count}" for name, count in sorted(self.event_types.items()))
        rows = [
            (
                "jobs",
                f"{self.jobs} completed on {QUEUE!r}, 1 completed on {OTHER_QUEUE!r}, "
                f"1 failed on {QUEUE!r}, {BLIP_JOBS} completed on {QUEUE!r} during a network "
                "blip",
            ),
            ("events received", f"{counters.get('received')} (pings are not counted)"),
            ("events delivered", f"{counters.get('signals_sent')} to spooled_signal: {types}"),
            (
                "duplicates",
                f"{counters.get('duplicates_suppressed')} suppressed: the emulator sends each "
                "finished job twice (JobStatusChange, then JobCompleted or JobFailed), and the "
                "catch-up sweep finds again what had arrived live before the blip",
            ),
            (
                "catch-up",
                f"{counters.get('caught_up')} event(s) of {BLIP_JOBS} jobs finished during the "
                "network blip recovered from the REST job list "
                f"({counters.get('catch_up_requests')} request(s))",
            ),
            (
                "tasks run",
                f"{len(self.task_jobs)} of {len(self.expected_tasks)} expected ({TASK}), "
                f"none for {OTHER_QUEUE!r}",
            ),
            (
                "receiver",
                f"on_job_failed ran {len(self.failed_jobs)} of {len(self.expected_failed)} "
                "expected",
            ),
            (
                "dispatch",
                f"{counters.get('published')} task message(s) sent, {dropped} dropped, "
                f"{counters.get('receiver_failures')} receiver failure(s), "
                f"{counters.get('reconnects')} reconnect(s)",
            ),
            (
                "shutdown",
                f"worker stopped in {self.worker_stop_seconds:.2f}s; no thread or socket left",
            ),
        ]
        width = max(len(label) for label, _ in rows)
        self.out.plain("\nSummary")
        for label, text in rows:
            self.out.plain(f"  {label:<{width}}  {text}")
        self.out.plain(
            f"\nRuntime status before shutdown ({source}; run "
            "`celery -A proj inspect spooled_status` against your own workers):"
        )
        text = json.dumps(status, indent=2, sort_keys=True)
        self.out.plain("\n".join("  " + line for line in text.splitlines()))
        self.out.plain("\nOK: every expected event, task and receiver ran exactly once.")


def _short(value: Any) -> str:
    return str(value)[:8] if value else "-"


def _shorts(jobs: list[str]) -> str:
    return "[" + ", ".join(_short(job) for job in jobs) + "]"


def _describe(event: Event) -> str:
    data = event.data
    parts = [f"{event.type:<14}", f"job {_short(event.job_id)}", f"queue {event.queue_name}"]
    if event.type == "job.status":
        parts.append(f"{data.get('old_status') or '(new)'} -> {data.get('new_status')}")
    parts.extend(
        f"{key}={data[key]}" for key in ("duration_ms", "error", "retry_count") if key in data
    )
    if event.replayed:
        parts.append("(recovered from the job list after the gap)")
    elif event.derived_from:
        parts.append(f"(derived from {event.derived_from})")
    return "  ".join(parts)


@contextlib.contextmanager
def _without_spooled_environment() -> Iterator[list[str]]:
    """Hide ``SPOOLED_*`` variables (they would point the worker elsewhere); restore after."""
    saved = {name: value for name, value in os.environ.items() if name.startswith("SPOOLED_")}
    for name in saved:
        del os.environ[name]
    try:
        yield sorted(saved)
    finally:
        os.environ.update(saved)


def _open_sockets() -> int | None:
    """How many socket descriptors this process holds (Linux); ``None`` elsewhere."""
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        return None
    count = 0
    for name in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            if os.readlink(os.path.join(fd_dir, name)).startswith("socket:"):
                count += 1
    return count
