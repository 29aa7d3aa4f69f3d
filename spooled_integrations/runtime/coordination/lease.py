"""``lease``: one node dispatches ``once`` events; standbys stay connected and take over.

The lease is ``spooled:lease:<namespace>``, its value the holder's fencing token
(``host:pid:random``). One Lua script, run by a background thread, acquires it when
free and renews it only if the value is still this node's token (an atomic
check-and-extend), so a node can never extend a lease someone else took.

Timing (``T`` = ``lease_ttl``):

- the leader renews every ``renew_interval`` (at most ``T/3``, default 0.5 s). Timed
  from the *start* of its last successful renewal, it dispatches for
  ``dispatch_horizon`` (at most ``2T/3``; then it pauses and holds events) and stays
  leader for ``2T/3`` (then it gives up: ``leadership_changed``). A leader cut off from
  Redis has stopped dispatching at least a third of the TTL before anyone can take
  over;
- a standby polls every ``T/3`` and, when it sees the lease's remaining time run
  down, wakes just after it expires: it takes over about ``T`` after the leader's last
  renewal.

Every renewal also writes a *record* (``spooled:lease:<namespace>:last``) with the
leader's progress, in Redis time: ``w`` (every event it received before ``w`` is
dispatched), ``key`` (the identity key of the last event it dispatched) and ``s``
(it dispatches nothing received after ``s``: the end of its horizon, or the moment it
disconnected on a clean stop, with ``final`` set).

A standby keeps the ``once`` events it did not dispatch in a *shadow*, bounded by
``buffer_size`` and by ``max(buffer_max_age, 2T + takeover_skew)`` seconds. On
takeover it splits the shadow with the previous leader's record:

- up to ``key`` (or, when ``key`` is not in the shadow, received before ``w`` minus
  a second): done by the old leader;
- received after ``s`` plus the lag plus ``takeover_skew`` (after ``key`` if
  ``final``): the old leader cannot have dispatched them -- the new leader dispatches
  them now. The lag is measured: how much later this node received the ``key`` event
  than the old leader did (``w``);
- in between: the old leader may or may not have dispatched them before it died. They
  are not dispatched again (no duplicates); each is counted as
  ``dropped{"takeover_window"}`` and sent on ``event_dropped``. This is an upper
  bound on what the takeover lost.

A leader leads only while it *hears*: its stream is connected and a frame arrived on
that connection (a completed handshake alone proves nothing). Every node lists itself
in ``spooled:lease:<namespace>:hearing`` (a sorted set, entries living ``T``) while it
hears and leaves it when it does not, so each tick also learns how many *other* nodes
hear. Then, with ``G`` = ``T``:

- a leader that does not hear while another node does pauses ``once`` dispatch (it
  holds events, as past its horizon) and its renewals promise nothing received after
  its last frame (``s``). When its stream comes back within ``G`` it dispatches what it
  held and keeps the lease: its catch-up sweeps the gap (a blip does not move the
  lease). After ``G`` of deafness it *hands the lease over*: it releases it with a
  final record (``w = s`` = its last frame, ``key`` its last dispatched event,
  ``why = "deaf"``), and a node that hears takes it within ``T/3`` and dispatches
  from its shadow everything after ``key``. So a connected standby dispatches at most
  ``G + renew_interval + T/3`` (about ``1.4 T``) after the leader noticed, which for a
  stream that goes silent without closing is the client's ``liveness_timeout`` after
  the last frame (a refused or closed connection, or one that never sends a frame, is
  noticed at once);
- a node that does not hear (or that handed the lease over less than ``T`` ago) does
  not acquire a free lease while another node hears: the one that hears does;
- when no other node hears, a deaf leader keeps the lease and keeps dispatching what
  its catch-up recovers (nobody could do better, and the holder is the one that sweeps
  the gap once its stream is back); a node that hears nothing may likewise take a
  lease nobody else can use (at start, before any connection).

A standby keeps events a live leader is responsible for at least ``liveness_timeout +
2T`` (``buffer_size`` still bounds it), so a handover after a silent stall still finds
the old leader's last event in the shadow.

A node that sees no live leader (Redis unreachable, or the lease free) marks what it
shadows as pending; a pending event pushed out of the shadow by its bounds (or left at
stop) while still no other leader is known is counted as
``dropped{"coordination_unavailable"}`` (a leader elected since has taken it over).

``status()`` shows ``hearing``, ``deaf_since``, ``other_nodes_hearing``, ``dispatching``
(false while paused) and ``deaf_handovers``.

``leadership_changed`` is sent (sender: the runtime) with ``leader=`` (bool),
``holder=`` (the lease holder's token or ``None``), ``node=`` (this node's token) and
``reason=``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from spooled_integrations.protocol import Event
from spooled_integrations.protocol.timestamps import format_optional
from spooled_integrations.runtime.coordination._redis import RedisClock, as_int
from spooled_integrations.runtime.coordination.base import UNAVAILABLE, Coordinator, StreamHealth
from spooled_integrations.runtime.signals import leadership_changed, send_isolated
from spooled_integrations.runtime.subscriptions import Subscription

__all__ = ["TAKEOVER_WINDOW", "LeaseCoordinator"]

logger = logging.getLogger(__name__)

TAKEOVER_WINDOW = "takeover_window"
"""``dropped`` reason: received around a leader's failure; it may not have run."""

_RECORD_TTL_MS = 24 * 3600 * 1000
_UNMEASURED_SKEW = 1.0  # seconds allowed between two nodes' streams when not measured
_EVICTION_BUCKET = 0.1  # seconds
_HEARING_CHECK = 0.1
"""Seconds between looks at the stream between ticks: a change of hearing ticks at once
(a standby that starts hearing is listed before a deaf leader's catch-up polls, which
look at least a second back, could dispatch what the standby heard)."""

# KEYS: lease, record, hearing. ARGV: token, ttl_ms, s_offset_ms, w_lag_ms, key,
# record_ttl_ms, op ("tick" | "release"), final, hearing ("1" | "0"), acquire ("free":
# when the lease is free; "last": only when no other node hears), why.
# Returns {code, redis_now_ms, pttl_ms, holder, previous, others} with code 1 = held
# (renewed or released), 2 = acquired, 0 = not held (holder '' when the lease is free);
# others = how many other nodes hear their stream.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local hears = ARGV[9] == '1' and ARGV[7] ~= 'release'
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if hears then
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[3], 2 * ttl)
else
  redis.call('ZREM', KEYS[3], ARGV[1])
end
local others = redis.call('ZCARD', KEYS[3])
if hears then others = others - 1 end
local holder = redis.call('GET', KEYS[1])
local function record()
  redis.call('HSET', KEYS[2], 'holder', ARGV[1], 'w', now - tonumber(ARGV[4]),
             'key', ARGV[5], 's', now + tonumber(ARGV[3]), 'final', ARGV[8], 'why', ARGV[11])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
if ARGV[7] == 'release' then
  if holder == ARGV[1] then
    redis.call('DEL', KEYS[1])
    record()
    return {1, now, 0, ARGV[1], {}, others}
  end
  return {0, now, 0, holder or '', {}, others}
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ttl)
  record()
  return {1, now, ttl, ARGV[1], {}, others}
end
if not holder then
  if ARGV[10] == 'free' or others == 0 then
    local previous = redis.call('HGETALL', KEYS[2])
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
    record()
    return {2, now, ttl, ARGV[1], previous, others}
  end
  return {0, now, -2, '', {}, others}
end
return {0, now, redis.call('PTTL', KEYS[1]), holder, {}, others}
"""


@dataclass(frozen=True, slots=True)
class _Shadowed:
    received_at: float
    event: Event
    subscriptions: tuple[Subscription, ...]
    pending: bool  # no live leader was known when it arrived


@dataclass(frozen=True, slots=True)
class _Record:
    """The previous holder's last word, converted to this process's monotonic clock."""

    holder: str
    w: float
    key: str
    s: float
    final: bool
    why: str = ""  # "deaf": handed over because it heard no stream; "stopped"


@dataclass(frozen=True, slots=True)
class _Takeover:
    previous: _Record | None
    own: bool  # the previous holder was this node


class LeaseCoordinator(Coordinator):
    """One leader per namespace (see the module docstring)."""

    strategy = "lease"

    def __init__(self, config: Any, **kwargs: Any) -> None:
        kwargs.setdefault("redis_timeout", min(config.redis_timeout, config.lease_ttl / 6))
        super().__init__(config, **kwargs)
        ttl = self.config.lease_ttl
        self._lease_key = f"spooled:lease:{self.config.namespace}"
        self._record_key = f"{self._lease_key}:last"
        self._hearing_key = f"{self._lease_key}:hearing"
        self._script = self._redis.register_script(_SCRIPT)
        self._ttl_ms = round(ttl * 1000)
        self._keep_for = ttl * 2 / 3  # leadership without a successful renewal
        self._horizon = self.config.effective_dispatch_horizon
        self._renew_every = self.config.effective_renew_interval
        self._poll_every = ttl / 3
        self._grace = ttl  # deafness a leader rides out before it hands the lease over
        self._shadow_age = max(self.config.buffer_max_age, 2 * ttl + self.config.takeover_skew)
        self._rclock = RedisClock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        # Leadership. The lease thread writes these under _lock; the dispatch thread
        # reads _active and _dispatch_until (a leader dispatches while active and
        # before its horizon; it stays leader until _deadline).
        self._lock = threading.Lock()
        self._leader = False
        self._active = False
        self._deadline = 0.0
        self._dispatch_until = 0.0
        self._takeover: _Takeover | None = None
        self._holder: str | None = None
        self._saw_other_holder = False  # leadership after that is a takeover: WARNING
        self._covered_until = 0.0  # events received before this have another live leader
        self._since: datetime | None = None
        self._renewals = 0
        self._renew_failures = 0
        self._takeovers = 0
        self._redispatched = 0
        self._window_dropped = 0
        self._last_lag: float | None = None
        # Hearing. The lease thread writes these; _paused under _lock (the dispatch
        # thread reads it: a deaf leader holds events while another node hears).
        self._paused = False
        self._hearing: bool | None = None  # None: not checked yet
        self._deaf_since: float | None = None  # monotonic, when this node noticed
        self._deaf_since_wall: datetime | None = None
        self._deaf_logged: set[str] = set()  # "paused", "alone": said this deaf spell
        self._others = 0  # other nodes hearing their stream, as of the last tick
        self._led_from = 0.0  # monotonic start of this leadership
        self._yield_until = 0.0  # after a handover: leave the lease to nodes that hear
        self._deaf_handovers = 0
        self._handed_over: tuple[float, float] | None = None  # for the dispatch thread
        # The shadow: dispatch thread only.
        self._shadow: deque[_Shadowed] = deque()
        # Evictions of events a live leader was responsible for, as [start, count]
        # buckets of _EVICTION_BUCKET seconds (receive times): bounded by the shadow age.
        self._evicted: deque[list[float]] = deque()

    # -- queries -------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while this node holds the lease within its dispatch horizon (it is the
        one that sweeps gaps); :attr:`dispatching` also needs it to hear."""
        return self._active and self._clock() < self._dispatch_until

    @property
    def dispatching(self) -> bool:
        """True while this node dispatches ``once`` events: leader, and not paused
        because it hears no stream while another node does."""
        return not self._paused and self.is_leader

    @property
    def holder(self) -> str | None:
        return self._holder

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="spooled-lease", daemon=True)
        self._thread.start()

    def stop(self, *, received_until: float | None = None, drained: bool = True) -> None:
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._redis_timeout + 1.0)
        with self._lock:
            was_leader = self._leader
            self._leader = self._active = False
            self._deadline = self._dispatch_until = 0.0
        if was_leader:
            self._release(received_until, drained, "stopped")
            self._announce(False, None, "stopped")
        else:
            self._leave()
        pending = [item for item in self._shadow if self._unclaimed(item)]
        self._shadow.clear()
        if pending:
            logger.warning(
                "Spooled lease: stopping with %d once-event(s) no leader was known to "
                "dispatch; counted as dropped{%r}",
                len(pending),
                UNAVAILABLE,
            )
            for item in pending:
                self._drop(item.event, UNAVAILABLE, "the runtime stopped while no leader was known")

    # -- dispatch thread ---------------------------------------------------------------

    def dispatch(
        self, event: Event, subscriptions: Sequence[Subscription], received_at: float
    ) -> None:
        if self._handed_over is not None:
            self._count_handed_over()
        if self._takeover is not None:
            self._take_over()
        if self.dispatching:
            if self._shadow:
                self._resume()
            self._publish_all(event, subscriptions)
            return
        self._keep(
            _Shadowed(received_at, event, tuple(subscriptions), received_at >= self._covered_until)
        )

    def poll(self) -> None:
        if self._handed_over is not None:
            self._count_handed_over()
        if self._takeover is not None:
            self._take_over()
        if self._shadow and self.dispatching:
            self._resume()
        self._trim()

    def _resume(self) -> None:
        """Leader again after a pause with the lease never lost: nobody else dispatched
        what this node shadowed meanwhile, so all of it runs now."""
        shadow = list(self._shadow)
        self._shadow.clear()
        self._evicted.clear()
        for item in shadow:
            self._publish_all(item.event, item.subscriptions)
        with self._state_lock:
            self._redispatched += len(shadow)
        logger.info(
            "Spooled lease: dispatching again (renewed, hearing); dispatched %d held event(s)",
            len(shadow),
        )

    def _count_handed_over(self) -> None:
        """After a deaf handover: what this node held that it did not hear live (its
        catch-up recovered it after its last frame) may be unknown to the next leader,
        which dispatches only what it heard. Counted, not dispatched (no duplicates)."""
        with self._lock:
            window, self._handed_over = self._handed_over, None
        if window is None:
            return
        after, before = window
        kept: deque[_Shadowed] = deque()
        counted = 0
        for item in self._shadow:
            if after < item.received_at <= before:
                counted += 1
                self._window_drop(item.event, "recovered by a leader that heard no stream")
            else:
                kept.append(item)
        self._shadow = kept
        if counted:
            logger.warning(
                "Spooled lease: %d once-event(s) this node's catch-up recovered while it heard "
                "no stream were handed over undispatched; the next leader runs them only if "
                "it heard them (counted as dropped{%r})",
                counted,
                TAKEOVER_WINDOW,
            )

    def _keep(self, item: _Shadowed) -> None:
        self._trim()
        if len(self._shadow) >= self.config.buffer_size:
            self._evict(self._shadow.popleft(), "the standby buffer is full")
        self._shadow.append(item)

    @property
    def _covered_age(self) -> float:
        """How long events a live leader is responsible for stay in the shadow: long
        enough for a handover after that leader's stream went silent unnoticed."""
        return max(self._shadow_age, self._silence + 2 * self.config.lease_ttl)

    def _trim(self) -> None:
        now = self._clock()
        covered_age = self._covered_age
        while self._shadow:
            head = self._shadow[0]
            age = self._shadow_age if self._unclaimed(head) else covered_age
            if head.received_at >= now - age:
                break
            self._evict(self._shadow.popleft(), f"no leader dispatched it within {age:g}s")
        while self._evicted and self._evicted[0][0] < now - covered_age:
            self._evicted.popleft()

    def _unclaimed(self, item: _Shadowed) -> bool:
        """Arrived while no leader was known, and none is known now either."""
        return item.pending and self._clock() >= self._covered_until

    def _evict(self, item: _Shadowed, why: str) -> None:
        if self._unclaimed(item):
            self._drop(item.event, UNAVAILABLE, f"no lease holder known and {why}")
        else:
            last = self._evicted[-1] if self._evicted else None
            if last is not None and item.received_at - last[0] < _EVICTION_BUCKET:
                last[1] += 1
            else:
                self._evicted.append([item.received_at, 1])

    def _take_over(self) -> None:
        with self._lock:
            takeover = self._takeover
            if takeover is None or not self._leader:
                return  # lost again before it could start: the next acquisition decides
            if self._paused:
                return  # deaf while another node hears: after it hears again, or never
            self._takeover = None
        shadow = list(self._shadow)
        self._shadow.clear()
        replay, uncertain, unknown = self._split(shadow, takeover)
        self._evicted.clear()
        with self._lock:
            self._active = self._leader
        for item in uncertain:
            self._window_drop(item.event, "received while the previous leader failed")
        for _ in range(unknown):
            self._window_drop(None, "pushed out of the standby buffer before the takeover")
        for item in replay:
            self._publish_all(item.event, item.subscriptions)
        with self._state_lock:
            self._redispatched += len(replay)
        previous = takeover.previous.holder if takeover.previous else None
        if replay or uncertain or unknown:
            deaf = takeover.previous is not None and takeover.previous.why == "deaf"
            logger.log(
                logging.WARNING if uncertain or unknown else logging.INFO,
                "Spooled lease: took over from %s%s: re-dispatched %d event(s) the previous "
                "leader cannot have dispatched; %d received around its failure may not have "
                "run (counted as dropped{%r})",
                "this node" if takeover.own else previous or "nobody",
                " (it heard no stream and handed the lease over)" if deaf else "",
                len(replay),
                len(uncertain) + unknown,
                TAKEOVER_WINDOW,
            )

    def _split(
        self, shadow: list[_Shadowed], takeover: _Takeover
    ) -> tuple[list[_Shadowed], list[_Shadowed], int]:
        """(dispatch now, may have run, evicted with unknown fate) for a takeover."""
        record = takeover.previous
        if record is None or takeover.own:
            # Nobody led for a day (or this node did, and it knows what it shadowed):
            # nothing in the shadow was dispatched.
            return shadow, [], 0
        margin = self.config.takeover_skew
        found = -1
        if record.key:
            for index in range(len(shadow) - 1, -1, -1):
                if shadow[index].event.identity_key == record.key:
                    found = index
                    break
        if found >= 0:
            # Both nodes received that event: how much later this node got it is the
            # lag to allow for, measured instead of guessed.
            done = found + 1
            lag = max(0.0, shadow[found].received_at - record.w)
            self._last_lag = lag
            skew = lag + margin
        else:
            skew = max(_UNMEASURED_SKEW, 4 * margin)
            done = next(
                (i for i, e in enumerate(shadow) if e.received_at >= record.w - skew), len(shadow)
            )
        if record.final and not record.key:
            # It dispatched nothing at all (a leader that never heard its stream): what
            # this node received before it took the lease was an earlier leader's.
            done = next((i for i, e in enumerate(shadow) if e.received_at >= record.w), len(shadow))
            start = done
        elif record.final and found >= 0:
            start = done  # it received nothing after its last dispatched event
        else:
            start = next(
                (i for i, e in enumerate(shadow) if e.received_at > record.s + skew), len(shadow)
            )
            start = max(start, done)
        # Evictions all precede the shadow: when the key was found they precede it too.
        # (a bucket that straddles the edge counts whole: an upper bound)
        since = record.w - skew
        unknown = (
            0
            if found >= 0
            else sum(int(n) for t, n in self._evicted if t + _EVICTION_BUCKET > since)
        )
        return shadow[start:], shadow[done:start], unknown

    def _window_drop(self, event: Event | None, detail: str) -> None:
        with self._state_lock:
            self._window_dropped += 1
        self._drop(event, TAKEOVER_WINDOW, detail)

    # -- lease thread --------------------------------------------------------------------

    def _run(self) -> None:
        wake = self._clock()
        while not self._stop_event.wait(min(max(0.0, wake - self._clock()), _HEARING_CHECK)):
            try:
                if self._clock() < wake and self._stream().hearing == self._hearing:
                    continue
                wake = self._tick()
            except Exception:  # never let the lease thread die
                logger.exception("Spooled lease: unexpected error; retrying")
                self._lose_if_expired("unexpected error in the lease thread")
                wake = self._clock() + self.config.retry_interval

    def _tick(self) -> float:
        now = self._clock()
        health = self._listen(now)
        leader = self._leader
        # A deaf leader that another node can replace promises nothing past its last
        # frame, and holds events from now on (the renewal below may take a while).
        pausing = leader and not health.hearing and self._others > 0
        if pausing:
            with self._lock:
                self._paused = True
        lag_ms, key, s_ms = 0, "", round(self._horizon * 1000)
        if leader:
            done_through, last_key = self._hooks.progress()
            lag_ms = max(0, round((self._clock() - done_through) * 1000))
            key = last_key or ""
            if pausing:
                s_ms = -max(0, round((now - self._received_until(health)) * 1000))
        sent = self._clock()
        free = health.hearing and sent >= self._yield_until
        try:
            reply = self._call("tick", s_ms, lag_ms, key, hearing=health.hearing, free=free)
        except self._errors as exc:
            return self._tick_failed(exc)
        received = self._clock()
        self._redis_ok()
        code, now_ms, pttl, holder = (
            as_int(reply[0]),
            as_int(reply[1]),
            as_int(reply[2]),
            str(reply[3]),
        )
        self._others = others = as_int(reply[5])
        self._rclock.sample(now_ms, sent, received)
        if code == 0:
            return self._standby(sent, holder, pttl)
        wake = self._acquired(sent, _pairs(reply[4])) if code == 2 else self._renewed(sent, leader)
        if health.hearing or others == 0:
            if not pausing:  # this renewal's record promised the full horizon
                with self._lock:
                    self._paused = False
            if not health.hearing:
                self._note_deaf_leader(health, 0)
        else:
            with self._lock:
                self._paused = True
            self._note_deaf_leader(health, others)
            if sent - (self._deaf_since or sent) >= self._grace:
                return self._hand_over(sent, health, others)
        return wake

    def _listen(self, now: float) -> StreamHealth:
        """Ask the stream; note when this node stopped hearing (lease thread only)."""
        health = self._stream()
        back_after = None
        with self._state_lock:
            self._hearing = health.hearing
            if health.hearing:
                if self._deaf_since is not None and self._deaf_logged:
                    back_after = now - self._deaf_since
                self._deaf_since = self._deaf_since_wall = None
            elif self._deaf_since is None:
                self._deaf_since = now
                self._deaf_since_wall = datetime.now(timezone.utc)
        if back_after is not None:
            logger.log(
                logging.WARNING if "alone" in self._deaf_logged else logging.INFO,
                "Spooled lease: this node (%s) hears its stream again after %.1fs",
                self.token,
                back_after,
            )
            self._deaf_logged = set()
        return health

    def _received_until(self, health: StreamHealth) -> float:
        """After this moment the leader received nothing: its last frame (or, when it
        never heard one, the start of its leadership)."""
        heard = health.heard_at if health.heard_at is not None else self._led_from
        return min(self._clock(), max(heard, self._led_from))

    def _note_deaf_leader(self, health: StreamHealth, others: int) -> None:
        """Say once per deaf spell that this leader pauses (INFO: a blip is routine),
        and once that it keeps the lease alone (WARNING, after the grace)."""
        deaf_for = self._clock() - (self._deaf_since or self._clock())
        if others and "paused" not in self._deaf_logged:
            self._deaf_logged.add("paused")
            logger.info(
                "Spooled lease: this node (%s) leads namespace %r but hears nothing on its "
                "Spooled stream (connection %s); %d other node(s) hear theirs. Once-dispatch "
                "is paused here; the lease goes to one of them in %.1fs unless the stream "
                "comes back",
                self.token,
                self.config.namespace,
                health.state,
                others,
                max(0.0, self._grace - deaf_for),
            )
        elif not others and deaf_for >= self._grace and "alone" not in self._deaf_logged:
            self._deaf_logged.add("alone")
            logger.warning(
                "Spooled lease: this node (%s) leads namespace %r but has heard nothing on "
                "its Spooled stream for %.1fs (connection %s), and no other node hears "
                "theirs: it keeps the lease, and its catch-up sweeps the gap once the "
                "stream is back. Check the fleet's connection to Spooled.",
                self.token,
                self.config.namespace,
                deaf_for,
                health.state,
            )

    def _hand_over(self, sent: float, health: StreamHealth, others: int) -> float:
        """Deaf for the whole grace while another node hears: release the lease with a
        final record so a node that hears dispatches everything after this one's last."""
        until = self._received_until(health)
        try:
            oldest_held = self._shadow[0].received_at
        except IndexError:
            oldest_held = None
        drained = self._hooks.backlog() == 0 and (oldest_held is None or oldest_held > until)
        deaf_for = sent - (self._deaf_since or sent)
        with self._lock:
            self._leader = self._active = self._paused = False
            self._deadline = self._dispatch_until = 0.0
            self._holder = None
            # What it held is the next leader's: a node that hears takes over within T/3.
            self._covered_until = sent + self.config.lease_ttl
            self._since = datetime.now(timezone.utc)
            self._handed_over = (until, self._clock())
        self._yield_until = sent + self.config.lease_ttl
        with self._state_lock:
            self._deaf_handovers += 1
        self._release(until, drained, "deaf")
        logger.warning(
            "Spooled lease: this node (%s) heard nothing on its Spooled stream for %.1fs "
            "(connection %s, last frame %s); handing the lease of namespace %r to one of "
            "the %d node(s) that hear theirs: it dispatches the once-events received since. "
            "Check this node's connection to Spooled (status: last_error).",
            self.token,
            deaf_for,
            health.state,
            f"{self._clock() - health.heard_at:.1f}s ago" if health.heard_at else "never",
            self.config.namespace,
            others,
        )
        self._announce(False, None, f"heard no stream for {deaf_for:.1f}s")
        return self._clock() + self._poll_every

    def _call(
        self,
        op: str,
        s_ms: int,
        lag_ms: int,
        key: str,
        *,
        hearing: bool,
        free: bool = False,
        final: bool = False,
        why: str = "",
    ) -> Any:
        return self._script(
            keys=[self._lease_key, self._record_key, self._hearing_key],
            args=[
                self.token,
                self._ttl_ms,
                s_ms,
                lag_ms,
                key,
                _RECORD_TTL_MS,
                op,
                1 if final else 0,
                "1" if hearing else "0",
                "free" if free else "last",
                why,
            ],
        )

    def _tick_failed(self, exc: BaseException) -> float:
        self._redis_failed(exc)
        with self._state_lock:
            self._renew_failures += 1
        now = self._clock()
        self._lose_if_expired("the lease could not be renewed before 2/3 of its TTL")
        with self._lock:
            if not self._leader:
                return now + self.config.retry_interval
            return max(now, min(now + self.config.retry_interval, self._deadline))

    def _renewed(self, sent: float, was_leader: bool) -> float:
        with self._state_lock:
            self._renewals += 1
        if not was_leader:
            # It lapsed here (deadline passed) while the key survived: take it back,
            # re-dispatching what this node shadowed meanwhile.
            self._become_leader(sent, _Takeover(None, own=True), "renewed after a lapse")
        else:
            with self._lock:
                self._deadline = sent + self._keep_for
                self._dispatch_until = sent + self._horizon
        return sent + self._renew_every

    def _acquired(self, sent: float, previous: Mapping[str, str]) -> float:
        record = self._record(previous)
        own = record is not None and record.holder == self.token
        reason = "the lease was free"
        if not self._hearing:
            reason += "; no node hears its stream yet"
        self._become_leader(sent, _Takeover(record, own), reason)
        return sent + self._renew_every

    def _standby(self, sent: float, holder: str, pttl: int) -> float:
        if not holder:
            # Free, and left to nodes that hear: nobody covers what arrives from now on.
            was_leader = self._leader
            with self._lock:
                self._leader = self._active = self._paused = False
                self._deadline = self._dispatch_until = 0.0
                self._holder = None
            if was_leader:
                self._announce(False, None, "the lease was lost")
            return sent + self._poll_every
        if pttl < 0:  # a key without expiry (set by hand): trust it for a full TTL
            pttl = self._ttl_ms
        if holder != self.token:
            self._saw_other_holder = True
        was_leader = self._leader
        with self._lock:
            self._leader = self._active = self._paused = False
            self._deadline = self._dispatch_until = 0.0
            self._covered_until = sent + pttl / 1000
            changed = self._holder != holder
            self._holder = holder or None
            if was_leader or self._since is None:
                self._since = datetime.now(timezone.utc)
        if was_leader:
            self._announce(False, holder, f"the lease is held by {holder}")
        elif changed:
            logger.info(
                "Spooled lease: standby; %s leads namespace %r", holder, self.config.namespace
            )
        return sent + min(self._poll_every, pttl / 1000 + 0.005)

    def _become_leader(self, sent: float, takeover: _Takeover, reason: str) -> None:
        with self._lock:
            self._leader = True
            self._paused = False  # the caller pauses it again when it does not hear
            self._led_from = sent
            self._deadline = sent + self._keep_for
            self._dispatch_until = sent + self._horizon
            self._covered_until = 0.0  # what this node shadows now is its own to dispatch
            self._holder = self.token
            self._since = datetime.now(timezone.utc)
            pending = self._takeover
            if pending is not None and takeover.own and not pending.own:
                # Taken, lost and taken back before the dispatch thread started the
                # first takeover: the foreign holder before it still decides.
                takeover = pending
            self._takeover = takeover
        with self._state_lock:
            self._takeovers += 1
        self._announce(True, self.token, reason)

    def _lose_if_expired(self, reason: str) -> None:
        with self._lock:
            if not self._leader or self._clock() < self._deadline:
                return
            self._leader = self._active = False
            self._holder = None
            self._since = datetime.now(timezone.utc)
        self._announce(False, None, reason)

    def _release(self, received_until: float | None, drained: bool, why: str) -> None:
        now = self._clock()
        until = now if received_until is None else min(received_until, now)
        done_through, key = self._hooks.progress()
        final = drained and received_until is not None
        w = until if final else min(done_through, until)
        try:
            self._call(
                "release",
                -round((now - until) * 1000),
                max(0, round((now - w) * 1000)),
                key or "",
                hearing=False,
                final=final,
                why=why,
            )
        except self._errors as exc:
            logger.warning(
                "Spooled lease: could not release the lease (%s); it expires within %gs",
                type(exc).__name__,
                self.config.lease_ttl,
            )

    def _leave(self) -> None:
        """A standby stopping: off the list of nodes that hear (it would expire anyway)."""
        if self._thread is None or self._available is False:
            return
        with contextlib.suppress(*self._errors):
            self._call("release", 0, 0, "", hearing=False)

    def _record(self, fields: Mapping[str, str]) -> _Record | None:
        if not fields.get("holder") or not self._rclock.known:
            return None
        return _Record(
            holder=fields["holder"],
            w=self._rclock.to_local(as_int(fields.get("w"))),
            key=fields.get("key", ""),
            s=self._rclock.to_local(as_int(fields.get("s"))),
            final=fields.get("final") == "1",
            why=fields.get("why", ""),
        )

    def _announce(self, leader: bool, holder: str | None, reason: str) -> None:
        if leader:
            logger.log(  # winning a free lease at boot is routine; a takeover is news
                logging.WARNING if self._saw_other_holder else logging.INFO,
                "Spooled lease: this node (%s) is now the leader of namespace %r (%s)",
                self.token,
                self.config.namespace,
                reason,
            )
        else:
            logger.log(
                logging.INFO if reason == "stopped" else logging.WARNING,
                "Spooled lease: this node (%s) is no longer the leader of namespace %r (%s)",
                self.token,
                self.config.namespace,
                reason,
            )
        send_isolated(
            leadership_changed,
            self._sender,
            leader=leader,
            holder=holder,
            node=self.token,
            reason=reason,
        )

    # -- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        status = super().status()
        with self._lock:
            role = "leader" if self._leader else "standby"
            holder, since = self._holder, self._since
        with self._state_lock:
            status.update(
                role=role,
                dispatching=self.dispatching,
                hearing=self._hearing,
                deaf_since=format_optional(self._deaf_since_wall),
                other_nodes_hearing=self._others,
                deaf_handovers=self._deaf_handovers,
                holder=holder,
                since=format_optional(since),
                lease_ttl=self.config.lease_ttl,
                renewals=self._renewals,
                renew_failures=self._renew_failures,
                takeovers=self._takeovers,
                redispatched=self._redispatched,
                takeover_window_dropped=self._window_dropped,
                takeover_lag=self._last_lag,
                shadowed=len(self._shadow),
            )
        return status


def _pairs(flat: Any) -> dict[str, str]:
    """HGETALL's flat ``[field, value, ...]`` list as a dict."""
    items = list(flat or [])
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}
