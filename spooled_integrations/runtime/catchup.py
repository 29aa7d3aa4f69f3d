"""Catch-up: after every stream gap, and after a restart, deliver what the job list proves.

:class:`CatchUp` runs one thread (``spooled-catch-up``). The runtime tells it when the
stream went away (:meth:`CatchUp.gap_opened`, the moment the last frame arrived) and
when a new stream is live (:meth:`CatchUp.connected`); it then sweeps the job list for
that interval (:mod:`~spooled_integrations.runtime.sweep`) and hands the recovered
events, oldest first, to the dispatcher, which suppresses those whose live twin it
already dispatched. Live events never wait for a sweep.

It also keeps the :mod:`~spooled_integrations.runtime.checkpoint` (at most once a
second) and, for servers whose stream carries no job events, polls:

- ``poll="always"``: a sweep every ``interval`` seconds;
- ``poll="auto"``: a probe sweep every :data:`PROBE_EVERY` seconds; when a sweep
  recovers events the stream never delivered, polling starts; when the stream's own
  job events make a sweep's finds all duplicates, it stops;
- ``poll="off"``: only gaps.

A failed sweep is retried with backoff; its interval is merged with any later gap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from spooled_integrations._redact import redact
from spooled_integrations.client.backoff import Backoff, BackoffPolicy
from spooled_integrations.errors import SpooledConnectionError, SpooledError
from spooled_integrations.protocol import Event, format_timestamp
from spooled_integrations.protocol.timestamps import format_optional
from spooled_integrations.runtime.checkpoint import MAX_RECENT, Checkpoint, CheckpointStore
from spooled_integrations.runtime.sweep import (
    Interest,
    JobSource,
    SweepResult,
    clip,
    retrying,
    sweep,
)

__all__ = ["PROBE_EVERY", "SKEW", "CatchUp", "CatchUpSettings"]

logger = logging.getLogger(__name__)

SKEW = 5.0
"""Seconds each side of a gap swept on top of it: clocks and in-flight events differ."""
PROBE_EVERY = 30.0
"""``poll="auto"``: seconds between probe sweeps while the stream looks quiet."""
SETTLE = 1.0
"""A poll sweeps up to this many seconds ago, so live twins have had time to arrive."""
CHECKPOINT_EVERY = 1.0
REFUSED_RETRY = 300.0
"""Seconds before a sweep the server refused (401, 403, 404) is tried again."""
_REQUEST_ATTEMPTS = 4
_REQUEST_BACKOFF = BackoffPolicy(base=0.5, cap=10.0, jitter=0.0)  # within one sweep
_RECOVERED_KEPT = 50_000  # a few polls' worth at a high job rate

PollMode = Literal["off", "auto", "always"]


@dataclass(frozen=True)
class CatchUpSettings:
    max_age: float = 3600.0
    max_requests: int = 200
    poll: PollMode = "auto"
    interval: float = 5.0


@dataclass
class _Gap:
    since: float  # wall-clock seconds
    until: float | None = None  # None: the stream is still away
    holds: int = 0  # duplicate-window holds to release once swept
    kind: str = "gap"  # "start": from start() (exact: nothing before it is owed);
    # "restart": from a checkpoint's position

    @property
    def lower(self) -> float:
        return self.since if self.kind == "start" else self.since - SKEW


class CatchUp:
    """See the module docstring. Thread-safe; ``start``/``stop`` idempotent.

    ``deliver(events, done, fleet_done_before)`` queues recovered events for the
    dispatch thread, which calls ``done(new, duplicates)`` (a count, the suppressed
    events) once they are dispatched.
    ``interest()`` says what to look for now (receivers may connect late);
    ``may_sweep()`` is False on a lease standby (the leader sweeps and keeps the
    checkpoint). ``hold``/``release`` pause the duplicate window's expiry across a gap.
    ``on_swept(info)`` runs on the dispatch thread after each sweep's events.

    ``fleet``: the checkpoint is shared by a claim fleet. Its position then says how far
    *some* node had dispatched everything (a node writes only while caught up), so a
    recovered event older than it skips its ``once`` targets: the fleet ran them while
    this node was away, even longer ago than a claim lives.
    """

    def __init__(
        self,
        settings: CatchUpSettings,
        *,
        jobs: Callable[[], JobSource],
        interest: Callable[[], Interest],
        deliver: Callable[[list[Event], Callable[[int, list[Event]], None], datetime | None], None],
        hold: Callable[[], None],
        release: Callable[[], None],
        remember: Callable[[tuple[str, ...]], None] = lambda keys: None,
        store: CheckpointStore | None = None,
        may_sweep: Callable[[], bool] = lambda: True,
        fleet: bool = False,
        on_swept: Callable[[dict[str, Any]], None] = lambda info: None,
        count_requests: Callable[[int], None] = lambda n: None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._jobs_factory = jobs
        self._jobs: JobSource | None = None
        self._interest = interest
        self._deliver = deliver
        self._hold, self._release, self._remember = hold, release, remember
        self.store = store
        self._may_sweep = may_sweep
        self._fleet = fleet
        self._on_swept = on_swept
        self._count_requests = count_requests
        self._now = wall_clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._gaps: list[_Gap] = []
        self._connected = False
        self._polling = settings.poll == "always"
        # Whether the stream carries job events, which decides what the position follows;
        # "auto" finds out from its probes (None until then).
        self._stream_carries_jobs: bool | None = {"off": True, "always": False}.get(settings.poll)
        self._next_poll: float | None = None
        self._polled_until: float | None = None
        # How far the job list's transitions have been dispatched without a hole, by
        # polls and gap sweeps: a stream without job events has no other measure.
        self._swept_through = 0.0
        self._horizons: list[tuple[float, float, str]] = []  # see Checkpoint.horizon
        self._recovered: dict[str, None] = {}  # bases recently recovered, in order
        self._backoff = Backoff(1.0, 300.0)
        self._retry_at = 0.0
        self._in_flight = 0  # sweeps handed to the dispatcher, not yet dispatched
        self._to_write: Checkpoint | None = None
        self._written_at = 0.0
        self.last_sweep: dict[str, Any] | None = None
        self.last_error: str | None = None

    # -- runtime hooks (any thread) ---------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            # From start to the first connection is a gap too; a checkpoint, once read,
            # moves its beginning back to where the previous run stopped.
            self._gaps.append(_Gap(since=self._now(), kind="start", holds=1))
            self._hold()
            self._thread = threading.Thread(target=self._run, name="spooled-catch-up", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        close = getattr(self._jobs, "close", None)
        if close is not None:
            close()
        if self.store is not None:
            self.store.close()

    def gap_opened(self, last_frame_at: float) -> None:
        """The stream went away; it was last known to deliver at ``last_frame_at``."""
        self._hold()
        with self._lock:
            self._connected = False
            self._gaps.append(_Gap(since=last_frame_at, holds=1))

    def connected(self) -> None:
        """A stream is live: every open gap ends now and is swept."""
        now = self._now()
        with self._lock:
            self._connected = True
            for gap in self._gaps:
                if gap.until is None:
                    gap.until = now
            if self._next_poll is None:  # the first connection: polls cover from here on
                self._polled_until = self._swept_through = now
                self._next_poll = now + (self.settings.interval if self._polling else PROBE_EVERY)
        self._wake.set()

    def checkpoint_due(self, now_mono: float) -> bool:
        return self.store is not None and now_mono - self._written_at >= CHECKPOINT_EVERY

    def offer_checkpoint(self, position: float, recent: list[str], now_mono: float) -> None:
        """From the dispatch thread: a new position to write, unless a gap is unswept."""
        self._written_at = now_mono
        if not self._may_sweep():
            return  # a lease standby: the leader's position is the fleet's
        with self._lock:
            if self._gaps or self._in_flight or not self._connected:
                return
            carries = self._stream_carries_jobs
            if carries is False:
                # Job transitions go out only through polls: the stream's frames (pings)
                # say nothing about them.
                position = self._swept_through
            elif carries is None:  # not known yet: the lesser of the two
                position = min(position, self._swept_through)
            horizon = self._horizons[-1] if self._horizons else None
            self._to_write = Checkpoint(position, tuple(recent[:MAX_RECENT]), horizon)
        self._wake.set()

    def status(self) -> dict[str, Any]:
        with self._lock:
            gaps = len(self._gaps)
        return {
            "poll": self.settings.poll,
            "polling": self._polling,
            "checkpoint": self.store.where if self.store is not None else None,
            "unswept_gaps": gaps,
            "last_sweep": self.last_sweep,
            "last_error": self.last_error,
        }

    # -- the catch-up thread -----------------------------------------------------------

    def _run(self) -> None:
        if self.store is not None:
            self._load()
        while not self._stopping.is_set():
            self._write_checkpoint()
            delay = self._step()
            self._wake.wait(delay)
            self._wake.clear()
        self._write_checkpoint()

    def _load(self) -> None:
        assert self.store is not None
        try:
            found = self.store.load()
        except Exception as exc:
            found = None
            logger.warning(
                "Spooled catch-up: could not read the checkpoint at %s (%s); the downtime "
                "before this start is not swept",
                self.store.where,
                _error(exc),
            )
        with self._lock:
            start = next((g for g in self._gaps if g.kind == "start"), None)
            if start is not None and found is not None:
                start.since, start.kind = found.position, "restart"
                self._horizons = [found.horizon] if found.horizon else []
        if found is not None:
            self._remember(found.recent)
            logger.info(
                "Spooled catch-up: checkpoint at %s says events were dispatched up to %s; "
                "the downtime since is swept once connected",
                self.store.where,
                format_optional(found.position),
            )

    def _step(self) -> float:
        """Do what is due; return seconds until something may be due again."""
        now = self._now()
        with self._lock:
            ready = [g for g in self._gaps if g.until is not None]
            connected = self._connected
        if ready and connected and now >= self._retry_at:
            self._sweep_gaps(ready)
            return 0.0
        if connected and self._next_poll is not None and self.settings.poll != "off":
            if now >= self._next_poll:
                self._poll(now)
                return 0.0
            return min(self._next_poll - now, CHECKPOINT_EVERY)
        if ready and now < self._retry_at:
            return min(self._retry_at - now, CHECKPOINT_EVERY)
        return CHECKPOINT_EVERY

    def _sweep_gaps(self, gaps: list[_Gap]) -> None:
        since = min(g.lower for g in gaps)
        until = max(g.until or 0.0 for g in gaps) + SKEW
        if not self._may_sweep():
            logger.debug("Spooled catch-up: not the lease leader; the leader sweeps")
            self._finish(gaps)
            return
        kinds = {g.kind for g in gaps}
        kind = next(k for k in ("restart", "start", "gap") if k in kinds)
        outcome = self._run_sweep(since, until, kind=kind)
        if outcome is None:  # failed: retried with backoff, the gaps stay
            return
        self._backoff.reset()
        with self._lock:
            for gap in gaps:
                self._gaps.remove(gap)
        holds = sum(g.holds for g in gaps)
        if self._polled_until is not None and since <= self._polled_until:
            # The next poll goes on from what this sweep listed.
            self._polled_until = max(self._polled_until, _reach(outcome[0]))
        self._hand_over(outcome, holds, self._fleet_done_before(since))

    def _poll(self, now: float) -> None:
        until = now - SETTLE
        since = (self._polled_until if self._polled_until is not None else until) - SKEW
        if self._may_sweep():
            outcome = self._run_sweep(since, until, kind="poll")
            if outcome is not None:
                self._polled_until = until
                self._hand_over(outcome, 0, None)
        else:
            self._polled_until = until
        period = self.settings.interval if self._polling else PROBE_EVERY
        with self._lock:
            self._next_poll = self._now() + period

    def _run_sweep(
        self, since: float, until: float, *, kind: str
    ) -> tuple[SweepResult, str] | None:
        interest = self._interest()
        if interest.empty:
            return SweepResult(_dt(since), _dt(until)), kind
        now = self._now()
        start, clipped = clip(_dt(since), _dt(now), self.settings.max_age)
        horizon = now - self.settings.max_age
        for valid_from, oldest, scope in self._horizons:
            if scope == interest.scope and valid_from <= start.timestamp():
                horizon = max(horizon, oldest)  # server time, as created_at
        try:
            jobs = self._jobs if self._jobs is not None else self._jobs_factory()
            self._jobs = jobs
            result = sweep(
                jobs,
                interest,
                start,
                _dt(until),
                horizon=_dt(horizon),
                max_requests=self.settings.max_requests,
                request=retrying(
                    _REQUEST_ATTEMPTS,
                    _REQUEST_BACKOFF.delay,
                    self._stopping.wait,
                    self._count_requests,
                ),
                # Where later sweeps may start: anywhere after this one, at the next poll,
                # after a gap that begins once this sweep is done.
                open_after=(start, _dt(until - SKEW), _dt(now - SKEW)),
            )
        except (SpooledError, OSError) as exc:
            self._failed(since, until, kind, exc)
            return None
        except Exception as exc:  # a bug, or the client closed by stop(): never kill the thread
            if not self._stopping.is_set():
                logger.exception("Spooled catch-up: the sweep failed unexpectedly")
            self._failed(since, until, kind, exc)
            return None
        if clipped:
            result.complete = False
            result.reason = result.reason or "max_age"
        if result.complete:
            learned = [
                (moment.timestamp(), oldest.timestamp() if oldest else now, interest.scope)
                for moment, oldest in result.oldest_open.items()
            ]
            self._horizons = [*self._horizons[-6:], *learned]
        self.last_error = None
        return result, kind

    def _failed(self, since: float, until: float, kind: str, exc: BaseException) -> None:
        if self._stopping.is_set():
            logger.debug("Spooled catch-up: sweep ended by stop(): %s", _error(exc))
            return
        error = _error(exc)
        self.last_error = error
        if isinstance(exc, SpooledConnectionError) and exc.status in (401, 403, 404):
            # Refused, not failing: retrying soon would not help, and the operator must act.
            self._retry_at = self._now() + REFUSED_RETRY
            logger.error(
                "Spooled catch-up: the job list refused the sweep for %s..%s (%s): check the "
                "base URL and that the API key may list jobs; retrying in %.0fs",
                format_optional(since),
                format_optional(until),
                error,
                REFUSED_RETRY,
            )
            return
        delay = self._backoff.next_delay()
        self._retry_at = self._now() + delay
        level = logging.WARNING if self._backoff.failures >= 3 or kind != "poll" else logging.INFO
        logger.log(
            level,
            "Spooled catch-up: sweeping the job list for %s..%s failed (%s); retrying in %.0fs",
            format_optional(since),
            format_optional(until),
            error,
            delay,
        )

    def _fleet_done_before(self, since: float) -> datetime | None:
        """With a fleet checkpoint: before when the fleet dispatched everything."""
        if not self._fleet or self.store is None:
            return None
        try:
            found = self.store.load()
        except Exception as exc:
            logger.info("Spooled catch-up: could not read the fleet checkpoint: %s", _error(exc))
            return None
        if found is None or found.position - SKEW <= since:
            return None
        return _dt(found.position - SKEW)

    def _hand_over(
        self, outcome: tuple[SweepResult, str], holds: int, fleet_done_before: datetime | None
    ) -> None:
        result, kind = outcome
        with self._lock:
            self._in_flight += 1

        def done(new: int, duplicates: list[Event]) -> None:
            if result.since.timestamp() <= self._swept_through:  # no hole before it
                self._swept_through = max(self._swept_through, _reach(result))
            with self._lock:
                self._in_flight -= 1
            for _ in range(holds):
                self._release()
            self._swept(result, kind, new, duplicates)

        self._deliver(result.events, done, fleet_done_before)

    def _swept(self, result: SweepResult, kind: str, new: int, suppressed: list[Event]) -> None:
        """On the dispatch thread, once the sweep's events are dispatched."""
        duplicates = len(suppressed)
        info = {
            "kind": kind,
            "since": format_timestamp(result.since),
            "until": format_timestamp(result.until),
            "at": format_optional(self._now()),
            "found": len(result.events),
            "recovered": new,
            "duplicates": duplicates,
            "requests": result.requests,
            "complete": result.complete,
            "reason": result.reason,
        }
        self.last_sweep = info
        if kind != "poll" or new or not result.complete:
            log = logger.warning if kind != "poll" and not result.complete else logger.info
            log(
                "Spooled catch-up (%s %s..%s): %d event(s) recovered, %d already delivered, "
                "%d request(s)%s",
                kind,
                info["since"],
                info["until"],
                new,
                duplicates,
                result.requests,
                ""
                if result.complete
                else f"; INCOMPLETE ({result.reason}): events in this interval may be missing",
            )
        if kind == "poll":  # a gap's finds say nothing about what the live stream carries
            # Polls overlap: a twin an earlier sweep recovered says nothing of the stream.
            live = [e for e in suppressed if e.identity_base not in self._recovered]
            self._adjust_polling(new, len(live))
        self._remember_recovered(result.events, suppressed)
        self._on_swept(info)

    def _remember_recovered(self, events: list[Event], suppressed: list[Event]) -> None:
        """Keep the bases this runtime recovered (dispatched) lately, oldest dropped first."""
        skipped = {e.identity_base for e in suppressed}
        recovered = self._recovered
        for event in events:
            base = event.identity_base
            if base not in skipped:
                recovered[base] = None
        while len(recovered) > _RECOVERED_KEPT:
            del recovered[next(iter(recovered))]

    def _adjust_polling(self, new: int, duplicates: int) -> None:
        if self.settings.poll != "auto":
            return
        if new or duplicates:
            self._stream_carries_jobs = not new
        if new and not self._polling:
            self._polling = True
            logger.warning(
                "Spooled catch-up: the stream did not carry %d job event(s) the job list "
                "shows (a self-hosted Spooled publishes none on its stream); polling the job "
                "list every %gs until the stream carries job events",
                new,
                self.settings.interval,
            )
            with self._lock:
                self._next_poll = self._now() + self.settings.interval
        elif self._polling and not new and duplicates:
            self._polling = False
            logger.info("Spooled catch-up: the stream carries job events again; polling stops")

    def _finish(self, gaps: list[_Gap]) -> None:
        """Forget gaps without sweeping them (nothing to look for, or not ours)."""
        with self._lock:
            for gap in gaps:
                if gap in self._gaps:
                    self._gaps.remove(gap)
        for _ in range(sum(g.holds for g in gaps)):
            self._release()

    def _write_checkpoint(self) -> None:
        with self._lock:
            checkpoint, self._to_write = self._to_write, None
        if checkpoint is None or self.store is None:
            return
        try:
            self.store.save(checkpoint)
        except Exception as exc:
            logger.warning(
                "Spooled catch-up: could not write the checkpoint to %s: %s",
                self.store.where,
                _error(exc),
            )


def _reach(result: SweepResult) -> float:
    """How far a sweep proved the job list: its end, or when it listed if that was
    earlier (a gap's sweep reaches past the reconnect, into what was not there yet)."""
    return min(result.until, result.listed_at).timestamp()


def _error(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)
