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

A node that sees no live leader (Redis unreachable, or the lease free) marks what it
shadows as pending; a pending event pushed out of the shadow by its bounds (or left at
stop) while still no other leader is known is counted as
``dropped{"coordination_unavailable"}`` (a leader elected since has taken it over).

``leadership_changed`` is sent (sender: the runtime) with ``leader=`` (bool),
``holder=`` (the lease holder's token or ``None``), ``node=`` (this node's token) and
``reason=``.
"""

from __future__ import annotations

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
from spooled_integrations.runtime.coordination.base import UNAVAILABLE, Coordinator
from spooled_integrations.runtime.signals import leadership_changed, send_isolated
from spooled_integrations.runtime.subscriptions import Subscription

__all__ = ["TAKEOVER_WINDOW", "LeaseCoordinator"]

logger = logging.getLogger(__name__)

TAKEOVER_WINDOW = "takeover_window"
"""``dropped`` reason: received around a leader's failure; it may not have run."""

_RECORD_TTL_MS = 24 * 3600 * 1000
_UNMEASURED_SKEW = 1.0  # seconds allowed between two nodes' streams when not measured
_EVICTION_BUCKET = 0.1  # seconds

# KEYS: lease, record. ARGV: token, ttl_ms, s_offset_ms, w_lag_ms, key, record_ttl_ms,
# op ("tick" | "release"), final. Returns {code, redis_now_ms, pttl_ms, holder, previous}
# with code 1 = held (renewed or released), 2 = acquired, 0 = someone else holds it.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = redis.call('GET', KEYS[1])
local function record()
  redis.call('HSET', KEYS[2], 'holder', ARGV[1], 'w', now - tonumber(ARGV[4]),
             'key', ARGV[5], 's', now + tonumber(ARGV[3]), 'final', ARGV[8])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
if ARGV[7] == 'release' then
  if holder == ARGV[1] then
    redis.call('DEL', KEYS[1])
    record()
    return {1, now, 0, ARGV[1], {}}
  end
  return {0, now, 0, holder or '', {}}
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  record()
  return {1, now, tonumber(ARGV[2]), ARGV[1], {}}
end
if not holder then
  local previous = redis.call('HGETALL', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  record()
  return {2, now, tonumber(ARGV[2]), ARGV[1], previous}
end
return {0, now, redis.call('PTTL', KEYS[1]), holder, {}}
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
        self._script = self._redis.register_script(_SCRIPT)
        self._ttl_ms = round(ttl * 1000)
        self._keep_for = ttl * 2 / 3  # leadership without a successful renewal
        self._horizon = self.config.effective_dispatch_horizon
        self._renew_every = self.config.effective_renew_interval
        self._poll_every = ttl / 3
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
        self._covered_until = 0.0  # events received before this have another live leader
        self._since: datetime | None = None
        self._renewals = 0
        self._renew_failures = 0
        self._takeovers = 0
        self._redispatched = 0
        self._window_dropped = 0
        self._last_lag: float | None = None
        # The shadow: dispatch thread only.
        self._shadow: deque[_Shadowed] = deque()
        # Evictions of events a live leader was responsible for, as [start, count]
        # buckets of _EVICTION_BUCKET seconds (receive times): bounded by the shadow age.
        self._evicted: deque[list[float]] = deque()

    # -- queries -------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while this node may dispatch ``once`` events."""
        return self._active and self._clock() < self._dispatch_until

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
            self._release(received_until, drained)
            self._announce(False, None, "stopped")
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
        if self._takeover is not None:
            self._take_over()
        if self.is_leader:
            if self._shadow:
                self._resume()
            self._publish_all(event, subscriptions)
            return
        self._keep(
            _Shadowed(received_at, event, tuple(subscriptions), received_at >= self._covered_until)
        )

    def poll(self) -> None:
        if self._takeover is not None:
            self._take_over()
        if self._shadow and self.is_leader:
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
            "Spooled lease: renewal succeeded again; dispatched %d held event(s)", len(shadow)
        )

    def _keep(self, item: _Shadowed) -> None:
        self._trim()
        if len(self._shadow) >= self.config.buffer_size:
            self._evict(self._shadow.popleft(), "the standby buffer is full")
        self._shadow.append(item)

    def _trim(self) -> None:
        limit = self._clock() - self._shadow_age
        while self._shadow and self._shadow[0].received_at < limit:
            self._evict(
                self._shadow.popleft(), f"no leader dispatched it within {self._shadow_age:g}s"
            )
        while self._evicted and self._evicted[0][0] < limit:
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
            logger.log(
                logging.WARNING if uncertain or unknown else logging.INFO,
                "Spooled lease: took over from %s: re-dispatched %d event(s) the previous "
                "leader cannot have dispatched; %d received around its failure may not have "
                "run (counted as dropped{%r})",
                "this node" if takeover.own else previous or "nobody",
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
        if record.final and found >= 0:
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
        while not self._stop_event.wait(max(0.0, wake - self._clock())):
            try:
                wake = self._tick()
            except Exception:  # never let the lease thread die
                logger.exception("Spooled lease: unexpected error; retrying")
                self._lose_if_expired("unexpected error in the lease thread")
                wake = self._clock() + self.config.retry_interval

    def _tick(self) -> float:
        leader = self._leader
        lag_ms, key = 0, ""
        if leader:
            done_through, last_key = self._hooks.progress()
            lag_ms = max(0, round((self._clock() - done_through) * 1000))
            key = last_key or ""
        sent = self._clock()
        try:
            reply = self._script(
                keys=[self._lease_key, self._record_key],
                args=[
                    self.token,
                    self._ttl_ms,
                    round(self._horizon * 1000),
                    lag_ms,
                    key,
                    _RECORD_TTL_MS,
                    "tick",
                    0,
                ],
            )
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
        self._rclock.sample(now_ms, sent, received)
        if code == 1:
            return self._renewed(sent, leader)
        if code == 2:
            return self._acquired(sent, _pairs(reply[4]))
        return self._standby(sent, holder, pttl)

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
        self._become_leader(sent, _Takeover(record, own), "the lease was free")
        return sent + self._renew_every

    def _standby(self, sent: float, holder: str, pttl: int) -> float:
        if pttl < 0:  # a key without expiry (set by hand): trust it for a full TTL
            pttl = self._ttl_ms
        was_leader = self._leader
        with self._lock:
            self._leader = self._active = False
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

    def _release(self, received_until: float | None, drained: bool) -> None:
        now = self._clock()
        until = now if received_until is None else min(received_until, now)
        done_through, key = self._hooks.progress()
        final = drained and received_until is not None
        w = until if final else min(done_through, until)
        try:
            self._script(
                keys=[self._lease_key, self._record_key],
                args=[
                    self.token,
                    self._ttl_ms,
                    -round((now - until) * 1000),
                    max(0, round((now - w) * 1000)),
                    key or "",
                    _RECORD_TTL_MS,
                    "release",
                    1 if final else 0,
                ],
            )
        except self._errors as exc:
            logger.warning(
                "Spooled lease: could not release the lease (%s); it expires within %gs",
                type(exc).__name__,
                self.config.lease_ttl,
            )

    def _record(self, fields: Mapping[str, str]) -> _Record | None:
        if not fields.get("holder") or not self._rclock.known:
            return None
        return _Record(
            holder=fields["holder"],
            w=self._rclock.to_local(as_int(fields.get("w"))),
            key=fields.get("key", ""),
            s=self._rclock.to_local(as_int(fields.get("s"))),
            final=fields.get("final") == "1",
        )

    def _announce(self, leader: bool, holder: str | None, reason: str) -> None:
        if leader:
            logger.warning(
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
                dispatching=self.is_leader,
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
