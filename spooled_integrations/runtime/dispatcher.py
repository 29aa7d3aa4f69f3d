"""The dispatch stage: a bounded queue and one thread between the reader and the targets.

The network reader calls :meth:`Dispatcher.submit_frames` once per socket read with the
frames that read completed, undecoded (:meth:`Dispatcher.submit_many` takes events, and
a catch-up sweep's :meth:`Dispatcher.submit_recovered` goes through the same queue); no
submitter ever blocks: what does not fit in the queue is dropped, counted and signalled, so a
slow receiver or a slow broker can never stall reading (and with it the connection's
liveness). The dispatch thread takes frames in order, decodes each into its events
(so an event's objects are made and let go on one thread) and, for each event:

1. drops it if older than the global ``max_age`` (server timestamp);
2. with a ``coalesce_window``, lets the first form of a ``job.completed`` /
   ``job.failed`` wait (and the events behind it, keeping their order) until its twin,
   the other form of that transition, arrives; then one event carrying both goes on
   (:mod:`~spooled_integrations.runtime.coalesce`). The thread's wait on an empty
   queue ends when that wait does;
3. drops it if it repeats a job transition inside the duplicate window;
4. sends :data:`~spooled_integrations.runtime.signals.spooled_signal`, receiver by
   receiver;
5. routes it and publishes to each matching target, retrying failed publishes with
   the package's one backoff policy inside a bounded budget (``publish_with_retry``
   in :mod:`~spooled_integrations.runtime.publisher`); when the budget runs out the
   publish is dropped, counted and signalled.

With a :class:`~spooled_integrations.runtime.coordination.Coordinator`, step 5 hands
``delivery="once"`` targets to it instead (it publishes them only if this node should,
through the same retrying publish); ``every_node`` targets are published as before.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, NamedTuple

from spooled_integrations.protocol import Event, EventType
from spooled_integrations.protocol.timestamps import parse_timestamp
from spooled_integrations.runtime.coalesce import TWIN_TYPES, Coalescer, Ready
from spooled_integrations.runtime.coordination.base import Coordinator, DispatchHooks
from spooled_integrations.runtime.dedupe import DuplicateFilter
from spooled_integrations.runtime.metrics import Metrics
from spooled_integrations.runtime.publisher import (
    LastPublished,
    Publisher,
    RetryPolicy,
    publish_with_retry,
)
from spooled_integrations.runtime.router import Router
from spooled_integrations.runtime.signals import (
    event_dropped,
    event_published,
    send_event,
    send_isolated,
)
from spooled_integrations.runtime.subscriptions import Subscription
from spooled_integrations.runtime.tracing import Tracing

__all__ = ["DEFAULT_QUEUE_SIZE", "Batch", "Dispatcher", "DrainReport", "RetryPolicy"]

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 10_000

_PING = EventType.PING.value
_WAKE = object()  # queued by stop() to wake a thread blocked on an empty queue
_TICK_EVERY = 0.5  # seconds: the tick runs at least this often


class Batch(NamedTuple):
    """What one submit queues: frames (or events) in arrival order, and how to decode
    them (``None``: they are events already)."""

    received_at: float
    """``time.monotonic()`` when they were submitted (the duplicate window's clock)."""
    items: list[Any]
    decode: Callable[[Any], list[Event]] | None


@dataclass(frozen=True)
class DrainReport:
    """What :meth:`Dispatcher.stop` managed: events handled while draining, events left."""

    drained: int
    left: int
    timed_out: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Dispatcher:
    """Bounded queue + one dispatch thread (see the module docstring).

    ``signal_sender`` is the sender of :data:`event_dropped` and
    :data:`~spooled_integrations.runtime.signals.event_published` (the runtime passes
    itself). ``wall_clock`` (seconds since the epoch) judges event age; inject it in
    tests. ``coalesce_window`` (seconds; 0, the default here, turns it off) is how long
    the first form of a transition waits for its twin (step 2).
    """

    def __init__(
        self,
        router: Router,
        *,
        publisher: Publisher | None = None,
        metrics: Metrics | None = None,
        dedupe: DuplicateFilter | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        retry: RetryPolicy | None = None,
        max_age: float | None = None,
        signal_sender: Any = None,
        wall_clock: Callable[[], float] = time.time,
        coordinator: Coordinator | None = None,
        skip_ping: bool = False,
        tick: Callable[[], None] | None = None,
        coalesce_window: float = 0.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self._router = router
        self._publisher = publisher
        self.metrics = metrics if metrics is not None else Metrics()
        self._dedupe = dedupe
        # SimpleQueue of Batch items (and control callables): no mutex shared by the
        # submitting threads and the dispatcher (bench/README.md). The size limit counts
        # frames (or events): submitters add under _submit_lock, the dispatch thread alone
        # adds to _taken, so their difference is the number waiting.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._queue_size = queue_size
        self._submitted = self._taken = 0
        self._submit_lock = threading.Lock()
        self._retry = retry or RetryPolicy()
        self._max_age = max_age
        # Parsing a timestamp costs more than most steps of an event: only when some
        # max_age needs the age.
        self._needs_age = max_age is not None or any(
            s.max_age is not None for s in router.subscriptions
        )
        self._sender = self if signal_sender is None else signal_sender
        self._skip_ping = skip_ping  # frames that decode to a ping are not events to us
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._stop_lock = threading.Lock()  # one stop() at a time; the rest get its report
        self._thread: threading.Thread | None = None
        self._accepting = False
        self._stopping = False
        self._abandon = threading.Event()  # stop() timed out: finish nothing more
        self._in_flight = False
        self._drained = 0
        self._report: DrainReport | None = None
        self._overflow_logged_at = 0.0
        self._overflow_unlogged = 0
        self._coordinator = coordinator
        self._tick = tick
        self._coalescer = Coalescer(coalesce_window, self.metrics) if coalesce_window > 0 else None
        self._last_done: tuple[float, Event | None] = (time.monotonic(), None)
        self._counts: dict[str, int] = {}  # the dispatch thread's metrics table (see _run)
        self.last_published = LastPublished()
        self._tracing = Tracing()  # OpenTelemetry spans, when installed and configured
        self.age_observers: tuple[Callable[[float], None], ...] = ()
        """Called with each dispatched event's age in seconds (server timestamp to
        dispatch, never below 0), on the dispatch thread: a metrics histogram. Empty
        (the default): no timestamp is parsed for it."""
        if coordinator is not None:
            coordinator.attach(
                DispatchHooks(
                    publish=self._publish_once,
                    drop=self._drop_quietly,
                    progress=self.progress,
                    backlog=self._pending,
                )
            )

    @property
    def depth(self) -> int:
        """Frames (or events) waiting in the queue."""
        return self._pending()

    @property
    def last_event_at(self) -> float | None:
        """When the last event dispatched was received (``time.time()``), or ``None``."""
        received_at, event = self._last_done
        if event is None:
            return None
        return time.time() - (time.monotonic() - received_at)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the dispatch thread (idempotent; a stopped dispatcher cannot restart)."""
        with self._lock:
            if self._thread is not None:
                if self._stopping:
                    raise RuntimeError("a stopped dispatcher cannot be restarted")
                return
            self._accepting = True
            self._thread = threading.Thread(target=self._run, name="spooled-dispatch", daemon=True)
            self._thread.start()

    def submit(self, event: Event) -> bool:
        """Queue ``event`` without blocking; False if it was dropped (full or stopped)."""
        return self.submit_many([event]) == 1

    def submit_many(self, events: list[Event]) -> int:
        """Queue decoded ``events`` (kept by the dispatcher); how many were queued
        (:meth:`submit_frames` without the decoding). Any thread."""
        self.metrics.incr("received", len(events))
        return self._submit(events, None)

    def submit_recovered(
        self,
        events: list[Event],
        done: Callable[[int, list[Event]], None],
        fleet_done_before: datetime | None = None,
    ) -> None:
        """Queue events a catch-up sweep recovered; any thread, never refused for size.

        They are dispatched in order, after what is queued, like live events, except
        that one whose transition the duplicate window holds at any age is suppressed,
        and one older than ``fleet_done_before`` (the fleet had dispatched everything
        before it) skips its ``once`` targets. ``done(new, duplicates)`` (a count, the
        suppressed events) then runs on
        the dispatch thread. A sweep's batch is bounded by its request cap, so it
        bypasses ``queue_size``.
        """
        self.call_soon(lambda: done(*self._dispatch_recovered(events, fleet_done_before)))

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the dispatch thread after what is queued now (any thread)."""
        self._queue.put(fn)

    def submit_frames(self, frames: list[Any], decode: Callable[[Any], list[Event]]) -> int:
        """Queue undecoded ``frames`` (kept by the dispatcher); how many were queued.

        The dispatch thread turns each into its events with ``decode`` just before
        dispatching them. The reader hands over what one socket read completed: one
        queue hand-off per read. Frames that do not fit are decoded here so that each of
        their events is dropped, counted and signalled. Any thread.
        """
        return self._submit(frames, decode)

    def _submit(self, items: list[Any], decode: Callable[[Any], list[Event]] | None) -> int:
        """The one way in for frames and events: a :class:`Batch`, or a counted refusal."""
        refused: list[Any] = []
        with self._submit_lock:  # one per read: room, count and order agree across threads
            if not self._accepting:
                refused, items, reason = items, [], "stopped"
            else:
                room = self._queue_size - (self._submitted - self._taken)
                if room < len(items):
                    refused, items, reason = (
                        items[max(0, room) :],
                        items[: max(0, room)],
                        "overflow",
                    )
                if items:
                    self._submitted += len(items)
                    self._queue.put(Batch(time.monotonic(), items, decode))
        if refused:
            detail = (
                "the runtime is stopping or not started"
                if reason == "stopped"
                else f"dispatch queue full ({self._queue_size} frames or events)"
            )
            self._refuse(refused, decode, reason, detail)
        return len(items)

    def _refuse(
        self,
        items: list[Any],
        decode: Callable[[Any], list[Event]] | None,
        reason: str,
        detail: str,
    ) -> None:
        """Drop what could not be queued, event by event."""
        events = items
        if decode is not None:
            events = [event for item in items for event in self._events_of(item, decode)]
            self.metrics.incr("received", len(events))
        for event in events:
            self._drop(event, reason, detail)
            if reason == "overflow":
                self._log_overflow()

    def stop(self, timeout: float = 10.0) -> DrainReport:
        """Stop accepting, dispatch what is queued within ``timeout``, report the rest.

        Events still queued (or mid-publish) at the deadline are counted as
        ``dropped{"stopped"}`` and signalled once on ``event_dropped`` with
        ``event=None``. Idempotent: later calls return the first report. Called from a
        receiver (the dispatch thread itself), it cannot wait for the queue: the rest
        is left and the thread ends after the current event.
        """
        with self._stop_lock:
            if self._report is None:
                self._report = self._stop(timeout)
            return self._report

    def _stop(self, timeout: float) -> DrainReport:
        with self._lock:
            self._accepting = False
            self._stopping = True
            thread = self._thread
        if thread is None:
            return DrainReport(drained=0, left=0, timed_out=False)
        coalescer = self._coalescer
        if thread is threading.current_thread():
            self._abandon.set()
            held = len(coalescer) if coalescer is not None else 0
            report = DrainReport(drained=0, left=self._pending() + held, timed_out=False)
        else:
            self._queue.put(_WAKE)
            thread.join(max(0.0, timeout))
            with self._lock:
                timed_out = thread.is_alive()
                if timed_out:
                    self._abandon.set()
                left = self._pending() + (1 if timed_out and self._in_flight else 0)
                if timed_out and coalescer is not None:
                    left += len(coalescer)
                report = DrainReport(drained=self._drained, left=left, timed_out=timed_out)
            if not timed_out:
                self._discard_pending()
        if report.left:
            self.metrics.drop("stopped", report.left)
            logger.warning(
                "stopped with %d event(s) not dispatched (drained %d)", report.left, report.drained
            )
            send_isolated(
                event_dropped,
                self._sender,
                event=None,
                reason="stopped",
                detail=f"{report.left} event(s) not dispatched before the stop timeout",
            )
        return report

    # -- dispatch thread -----------------------------------------------------------

    def progress(self) -> tuple[float, str | None]:
        """``(t, key)``: every event received before monotonic ``t`` has been handled
        (events are handled in arrival order); ``key`` is the identity key of the last one.

        While a transition waits for its twin, ``t`` is when it was received and ``key``
        is ``None``: later events were dispatched before it."""
        received_at, event = self._last_done  # one tuple, replaced whole
        coalescer = self._coalescer
        oldest = coalescer.oldest if coalescer is not None else None
        if oldest is not None and oldest <= received_at:
            return oldest, None
        return received_at, event.identity_key if event is not None else None

    def _run(self) -> None:
        self._counts = self.metrics.thread_counts()  # _dispatch runs on this thread only
        coordinator = self._coordinator
        tick = self._tick
        timeout = coordinator.poll_interval if coordinator is not None else None
        if tick is not None:
            timeout = min(timeout or _TICK_EVERY, _TICK_EVERY)
        coalescer = self._coalescer
        while True:
            wait = timeout
            if coalescer is not None and coalescer.oldest is not None:
                wait = _until_deadline(coalescer, timeout)
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if item.__class__ is Batch:
                if coalescer is not None and coalescer.oldest is not None:
                    # What waited in vain goes before what was received after its wait.
                    self._deliver_ready(coalescer.due(item.received_at))
                self._dispatch_batch(item)
            elif item is not None and item is not _WAKE:
                self._call_control(item)
            elif item is None and coalescer is not None and coalescer.oldest is not None:
                # The queue stayed empty: nothing received before now is still to come.
                self._deliver_ready(coalescer.due(time.monotonic()))
            if tick is not None:
                self._call_control(tick)
            # After the batch: what waits for the queue to empty (claims) goes at once,
            # even when the batch ended with frames that are not events (pings).
            if coordinator is not None and not self._abandon.is_set():
                self._poll(coordinator)
            if self._stopping and (self._abandon.is_set() or self._queue.empty()):
                if coalescer is not None:
                    self._flush_at_stop(coalescer)
                return

    def _flush_at_stop(self, coalescer: Coalescer) -> None:
        """Everything received is dispatched: no twin can come, held events go now."""
        while not self._abandon.is_set():
            ready = coalescer.pop_oldest()
            if ready is None:
                return
            self._in_flight = True
            self._deliver_ready([ready])
            self._finish_while_stopping()

    def _deliver_ready(self, ready: Ready) -> None:
        """Dispatch what the coalescer released, each failure isolated."""
        for event, received_at in ready:
            try:
                self._deliver(event, received_at, self._age(event) if self._needs_age else None)
            except Exception:
                logger.exception("dispatching %s failed", event.type)

    def _dispatch_batch(self, batch: Batch) -> None:
        received_at, items, decode = batch
        # Only this thread writes _taken, _in_flight and _last_done; the others read
        # them under the GIL. Until stop() begins there is nothing to agree on, so no
        # lock per event.
        # Popped from the end: each frame and event is let go as soon as it is done,
        # not when the whole batch is, so the garbage collector does not promote (and
        # later rescan) finished events; that halved the time spent in the collector.
        counts = self._counts
        items.reverse()
        while items:
            item = items.pop()
            if self._stopping and self._abandon.is_set():  # set only once stopping
                return  # the rest is counted as left by stop()
            self._taken += 1
            self._in_flight = True
            events: list[Event] | tuple[Event]
            if decode is None:
                events = (item,)
            else:
                events = self._events_of(item, decode)
                counts["received"] += len(events)
            for event in events:
                try:
                    self._dispatch(event, received_at)
                except Exception:  # never let one event kill the thread
                    logger.exception("dispatching %s failed", getattr(event, "type", event))
                self._last_done = (received_at, event)
            if self._stopping:
                self._finish_while_stopping()
            else:
                self._in_flight = False

    def _call_control(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            logger.exception("a runtime task on the dispatch thread failed")

    def _dispatch_recovered(
        self, events: list[Event], fleet_done_before: datetime | None
    ) -> tuple[int, list[Event]]:
        """Dispatch a sweep's events; ``(new, the duplicates suppressed)``."""
        dedupe = self._dedupe
        if events and self._coalescer is not None:  # they come after what was live
            self._deliver_ready(self._coalescer.flush())
        received_at = time.monotonic()
        new = 0
        duplicates: list[Event] = []
        for event in events:
            if self._abandon.is_set():
                break
            if dedupe is not None and dedupe.seen_ever(event):
                duplicates.append(event)
                self.metrics.incr("duplicates_suppressed")
                continue
            new += 1
            moment = event.timestamp
            fleet_done = (
                fleet_done_before is not None and moment is not None and moment < fleet_done_before
            )
            try:
                self._dispatch(event, received_at, fleet_done)
            except Exception:
                logger.exception("dispatching recovered %s failed", event.type)
        self.metrics.incr("caught_up", new)
        return new, duplicates

    def _events_of(self, frame: Any, decode: Callable[[Any], list[Event]]) -> list[Event]:
        """A frame's events, pings skipped; a broken decoder loses the frame, not the
        thread (logged, counted as ``protocol_errors{decode_failed}``)."""
        try:
            events = decode(frame)
        except Exception:
            logger.exception("decoding a frame failed; it is skipped")
            self.metrics.protocol_error("decode_failed")
            return []
        if events and self._skip_ping and events[0].type == _PING:
            return []  # a ping frame is one event
        return events

    def _finish_while_stopping(self) -> None:
        # Under the lock, so stop() counts this event either as drained or as left.
        with self._lock:
            self._in_flight = False
            if not self._abandon.is_set():
                self._drained += 1

    def _poll(self, coordinator: Coordinator) -> None:
        try:
            coordinator.poll()
        except Exception:
            logger.exception("fleet coordination failed; retrying")

    def _dispatch(self, event: Event, received_at: float, fleet_done: bool = False) -> None:
        age = None
        if self._needs_age:
            age = self._age(event)
            if self._max_age is not None and age is not None and age > self._max_age:
                self._drop(event, "stale", f"{age:.1f}s old (max_age {self._max_age}s)")
                return
        coalescer = self._coalescer
        if coalescer is not None and (coalescer.oldest is not None or event.type in TWIN_TYPES):
            ready = coalescer.offer(event, received_at)
            if ready is not None:
                self._deliver_ready(ready)
                return
        self._deliver(event, received_at, age, fleet_done)

    def _deliver(
        self, event: Event, received_at: float, age: float | None, fleet_done: bool = False
    ) -> None:
        """Steps 3 to 5: the duplicate window, signals, routes."""
        if self._dedupe is not None and self._dedupe.is_duplicate(event, received_at):
            self.metrics.incr("duplicates_suppressed")
            logger.debug("duplicate suppressed: %s", event.identity_key)
            return
        if self.age_observers:
            self._observe_age(event, age)
        span = self._tracing.dispatch(event)
        if span is None:
            self._signal_and_route(event, age, received_at, fleet_done)
        else:
            with span:
                self._signal_and_route(event, age, received_at, fleet_done)

    def _signal_and_route(
        self, event: Event, age: float | None, received_at: float, fleet_done: bool
    ) -> None:
        """Steps 4 and 5 (inside the event's span when tracing)."""
        failed = send_event(event)
        counts = self._counts
        counts["signals_sent"] += 1
        if failed:
            counts["receiver_failures"] += failed
        matched = self._router.match(event)
        if matched:
            self._route(event, matched, age, received_at, fleet_done)
        counts["dispatched"] += 1

    def _route(
        self,
        event: Event,
        matched: tuple[Subscription, ...],
        age: float | None,
        received_at: float,
        fleet_done: bool = False,
    ) -> None:
        """``fleet_done``: a recovered event the fleet already handled; its ``once``
        targets are skipped (this node only missed it for its own receivers)."""
        once: list[Subscription] = []
        for subscription in matched:
            if subscription.target is None:
                continue
            limit = subscription.max_age
            if limit is not None and age is not None and age > limit:
                self._drop(
                    event, "stale", f"{_label(subscription)}: {age:.1f}s old (max_age {limit}s)"
                )
                continue
            if self._coordinator is not None and subscription.delivery == "once":
                if not fleet_done:
                    once.append(subscription)
                continue
            self._publish(subscription, event)
        if once and self._coordinator is not None:
            self._coordinator.dispatch(event, once, received_at)

    def _publish_once(self, subscription: Subscription, event: Event) -> None:
        """A coordinated publish, maybe later than the event arrived: check max_age again."""
        limit = subscription.max_age
        age = self._age(event)
        if limit is not None and age is not None and age > limit:
            self._drop(event, "stale", f"{_label(subscription)}: {age:.1f}s old (max_age {limit}s)")
            return
        span = self._tracing.publish(event)  # published later than its dispatch: its own span
        if span is None:
            self._publish(subscription, event)
        else:
            with span:
                self._publish(subscription, event)

    def _publish(self, subscription: Subscription, event: Event) -> None:
        label = _label(subscription)
        if self._publisher is None:
            self._drop(event, "publish_failed", f"{label}: no publisher configured")
            return
        payload = subscription.build_payload(event)

        def retrying(attempt: int, delay: float, error: str) -> None:
            self.metrics.incr("publish_retries")
            logger.warning(
                "publishing %s to %s failed (attempt %d), retrying in %.2fs: %s",
                event.type,
                label,
                attempt,
                delay,
                error,
            )

        outcome = publish_with_retry(
            self._publisher,
            subscription,
            payload,
            event,
            self._retry,
            wait=self._abandon.wait,
            on_retry=retrying,
        )
        if outcome.published:
            self.metrics.incr("published")
            self.last_published.record(subscription, event, outcome.message_id)
            if self._tracing.active is not None:
                self._tracing.published(subscription, outcome.message_id)
            send_isolated(
                event_published,
                self._sender,
                event=event,
                subscription=subscription,
                target=subscription.target,
                message_id=outcome.message_id,
                attempts=outcome.attempts,
            )
        elif not outcome.abandoned:  # abandoned: stop() gave up on us; counted as left there
            logger.error(
                "publishing %s to %s failed after %d attempt(s) in %.1fs: %s",
                event.type,
                label,
                outcome.attempts,
                outcome.spent,
                outcome.error,
            )
            if self._tracing.active is not None:
                self._tracing.failed(subscription, outcome.error or "")
            self._drop(
                event,
                "publish_failed",
                f"{label}: {outcome.error} (after {outcome.attempts} attempts)",
            )

    # -- helpers -------------------------------------------------------------------

    def _observe_age(self, event: Event, age: float | None) -> None:
        if age is None:
            moment = _epoch_seconds(event.raw_timestamp)
            if moment is None:  # no server timestamp: no age to tell
                return
            age = self._wall_clock() - moment
        age = max(0.0, age)  # a server clock ahead of ours
        for observe in self.age_observers:
            try:
                observe(age)
            except Exception:
                logger.exception("an event age observer failed")

    def _age(self, event: Event) -> float | None:
        moment = event.timestamp
        if moment is None:
            return None
        return self._wall_clock() - moment.timestamp()

    def _drop_quietly(self, event: Event | None, reason: str, detail: str) -> None:
        """Count and signal without a log line (the caller logs a summary)."""
        self.metrics.drop(reason)
        send_isolated(event_dropped, self._sender, event=event, reason=reason, detail=detail)

    def _drop(self, event: Event | None, reason: str, detail: str) -> None:
        self.metrics.drop(reason)
        if reason != "overflow":
            logger.warning("dropped %s (%s): %s", event.type if event else "events", reason, detail)
        send_isolated(event_dropped, self._sender, event=event, reason=reason, detail=detail)

    def _log_overflow(self) -> None:
        # One line per 10 s at most: an overflow usually comes as a burst.
        now = time.monotonic()
        with self._lock:
            self._overflow_unlogged += 1
            if now - self._overflow_logged_at < 10.0 and self._overflow_logged_at:
                return
            count, self._overflow_unlogged = self._overflow_unlogged, 0
            self._overflow_logged_at = now
        logger.warning(
            "dispatch queue full (%d events): dropped %d event(s); receivers or the broker "
            "are slower than the event rate",
            self._queue_size,
            count,
        )

    def _pending(self) -> int:
        """Events submitted and not yet taken for dispatch."""
        return self._submitted - self._taken

    def _discard_pending(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()


def _until_deadline(coalescer: Coalescer, timeout: float | None) -> float:
    """How long the queue wait may last: until the oldest hold ends, at most ``timeout``."""
    deadline = coalescer.next_deadline()
    left = 0.0 if deadline is None else max(0.0, deadline - time.monotonic())
    return left if timeout is None else min(timeout, left)


_SECONDS: dict[str, float] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch seconds, dispatch thread only


def _epoch_seconds(raw: str | None) -> float | None:
    """An event's server time in epoch seconds, for the age observers: the backend's
    form (UTC, ``Z``) from a cache of whole seconds (a third of parsing a datetime, the
    most of an observer's cost), any other through :attr:`Event.timestamp`'s parser."""
    if raw is None:
        return None
    if len(raw) >= 20 and raw[-1] in "Zz" and (len(raw) == 20 or raw[19] == "."):
        fraction = raw[20:-1]
        if fraction.isdigit() or not fraction:
            base = _SECONDS.get(raw[:19])
            if base is None:
                try:
                    base = parse_timestamp(raw[:19] + "Z").timestamp()
                except ValueError:
                    return None
                if len(_SECONDS) >= 4096:
                    _SECONDS.clear()
                _SECONDS[raw[:19]] = base
            return base + float("0." + fraction) if fraction else base
    try:
        return parse_timestamp(raw).timestamp()
    except ValueError:
        return None


def _label(subscription: Subscription) -> str:
    target = subscription.target or "signals"
    return f"{subscription.name} ({target})" if subscription.name else target
