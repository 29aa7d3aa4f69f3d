"""``claim``: every node claims each ``once`` event; the one whose ``SET NX`` wins publishes.

The claim key is ``spooled:claim:<namespace>:<identity_key>``; identity keys are
derived from the event's content (see :attr:`spooled_integrations.protocol.Event.identity_key`),
so every node computes the same key for the same server event. One claim covers every
``once`` subscription the event matches. There is no takeover gap: a node that dies
only loses the events it had claimed and not yet handed to the broker (its last batch).

Those are counted too. The round trip that claims a batch also records its keys in
``spooled:inflight:<namespace>:<token>`` (cleared once the node is idle), and every
node refreshes ``spooled:node:<namespace>:<token>`` each second and lists itself in the
set ``spooled:nodes:<namespace>``. A listed node whose heartbeat has expired is dead: the first survivor to take its in-flight record
(atomically) counts each key the dead node had won as ``dropped{"claim_holder_lost"}``
and sends it on ``event_dropped`` (``event=None``, the key in ``detail``). Like the
lease's takeover window this is an upper bound: the dead node may have sent some of
them before it died.

While Redis cannot be reached, ``once`` events wait in order in a buffer bounded by
``buffer_size`` and ``buffer_max_age``. A background thread pings Redis every
``retry_interval`` (so a Redis that does not answer at all never holds up the dispatch
thread, which keeps running signals and ``every_node`` rules); once it answers, the
dispatch thread drains the buffer (claims pipelined, in order). An event pushed
out of the buffer, or older than ``buffer_max_age``, is dropped:
``dropped{"coordination_unavailable"}`` plus ``event_dropped``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spooled_integrations.protocol import Event
from spooled_integrations.runtime.coordination.base import UNAVAILABLE, Coordinator
from spooled_integrations.runtime.subscriptions import Subscription

__all__ = ["ClaimCoordinator"]

logger = logging.getLogger(__name__)

_DRAIN_BATCH = 200
_CLAIM_BATCH = 64
HOLDER_LOST = "claim_holder_lost"
"""``dropped`` reason: claimed by a node that died before it could publish it."""
_HEARTBEAT = 1.0  # seconds between heartbeats and dead-node checks
_HEARTBEAT_TTL_MS = 5_000  # a node silent this long is dead
_CLEAR_INFLIGHT_AFTER = 0.2  # idle seconds before the in-flight record is cleared


@dataclass(frozen=True, slots=True)
class _Waiting:
    received_at: float
    event: Event
    subscriptions: tuple[Subscription, ...]


class ClaimCoordinator(Coordinator):
    """Per-event claims in Redis (see the module docstring)."""

    strategy = "claim"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prefix = f"spooled:claim:{self.config.namespace}:"
        self._ttl_ms = int(self.config.claim_ttl * 1000)
        self._waiting: deque[_Waiting] = deque()
        self._reachable = threading.Event()  # set while claims may be tried
        self._reachable.set()
        self._closed = threading.Event()
        self._probe_wanted = threading.Event()
        self._probe: threading.Thread | None = None
        self._batch: list[_Waiting] = []
        namespace = self.config.namespace
        self._inflight_prefix = f"spooled:inflight:{namespace}:"
        self._inflight_key = self._inflight_prefix + self.token
        self._node_prefix = f"spooled:node:{namespace}:"
        self._nodes_key = f"spooled:nodes:{namespace}"
        self._inflight_at: float | None = None  # when the last claimed batch was sent
        self._watcher: threading.Thread | None = None
        self._holders_lost = 0
        self._won = 0
        self._lost = 0
        self._overflow_logged = False

    def key(self, event: Event) -> str:
        """The Redis key this node claims for ``event``."""
        return self._prefix + event.identity_key

    # -- dispatch thread ---------------------------------------------------------------

    def dispatch(
        self, event: Event, subscriptions: Sequence[Subscription], received_at: float
    ) -> None:
        item = _Waiting(received_at, event, tuple(subscriptions))
        if self._waiting:  # Redis was down: keep the order, try the whole buffer
            self._keep(item)
            self.poll()
            return
        # Claim at once when nothing else waits; under a backlog, claim up to
        # _CLAIM_BATCH events in one round trip.
        self._batch.append(item)
        if len(self._batch) >= _CLAIM_BATCH or not self._hooks.backlog():
            self._flush()

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            results = self._claim_all(batch)
        except self._errors as exc:
            self._unreachable(exc)
            for item in batch:
                self._keep(item)
            return
        self._redis_ok()
        for item, won in zip(batch, results, strict=True):
            self._settle(item, won)

    def _claim_all(self, items: Sequence[_Waiting]) -> list[bool]:
        """Claim every item in one round trip, recording the keys as in flight."""
        keys = [self.key(item.event) for item in items]
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, self.token, nx=True, px=self._ttl_ms)
        pipe.set(self._inflight_key, "\n".join(keys), px=self._ttl_ms)
        results = pipe.execute()
        self._inflight_at = self._clock()
        return [bool(won) for won in results[:-1]]

    def poll(self) -> None:
        if self._batch and not self._hooks.backlog():
            self._flush()
        if (
            self._inflight_at is not None
            and not self._batch
            and not self._waiting
            and self._clock() - self._inflight_at >= _CLEAR_INFLIGHT_AFTER
        ):
            self._clear_inflight()
        if not self._waiting:
            return
        self._expire()
        if not self._waiting or not self._reachable.is_set():
            return
        drained = 0
        while self._waiting:
            batch = [self._waiting[i] for i in range(min(_DRAIN_BATCH, len(self._waiting)))]
            try:
                results = self._claim_all(batch)
            except self._errors as exc:
                self._unreachable(exc)
                break
            self._redis_ok()
            for item, won in zip(batch, results, strict=True):
                self._waiting.popleft()
                self._settle(item, won)
            drained += len(batch)
        if drained:
            logger.info(
                "Spooled coordination: claimed %d buffered event(s) after Redis came back "
                "(%d still waiting)",
                drained,
                len(self._waiting),
            )

    # -- stop and status -----------------------------------------------------------------

    def start(self) -> None:
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, name="spooled-claim-watch", daemon=True
            )
            self._watcher.start()

    def stop(self, *, received_until: float | None = None, drained: bool = True) -> None:
        self._closed.set()
        self._probe_wanted.set()  # wake the probe so it sees _closed
        for thread in (self._probe, self._watcher):
            if thread is not None and thread is not threading.current_thread():
                thread.join(self._redis_timeout + 1.0)
        if self._batch and self._reachable.is_set():
            self._flush()  # the dispatch thread has ended: finish its last batch here
        if self._reachable.is_set():
            # A clean stop: nothing of ours is in flight, and we are gone.
            with contextlib.suppress(*self._errors):
                pipe = self._redis.pipeline(transaction=False)
                pipe.delete(self._inflight_key, self._node_prefix + self.token)
                pipe.srem(self._nodes_key, self.token)
                pipe.execute()
        self._waiting.extend(self._batch)
        self._batch = []
        left = len(self._waiting)
        if not left:
            return
        logger.warning(
            "Spooled coordination: stopping with %d once-event(s) never claimed (Redis "
            "unreachable); counted as dropped{%r}",
            left,
            UNAVAILABLE,
        )
        while self._waiting:
            item = self._waiting.popleft()
            self._drop(item.event, UNAVAILABLE, "the runtime stopped while Redis was unreachable")

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(
            claims_won=self._won,
            claims_lost=self._lost,
            holder_lost_counted=self._holders_lost,
            buffered=len(self._waiting),
            buffer_size=self.config.buffer_size,
            claim_ttl=self.config.claim_ttl,
        )
        return status

    # -- helpers -------------------------------------------------------------------------

    def _unreachable(self, exc: BaseException) -> None:
        """Stop trying claims on the dispatch thread; the probe thread waits for Redis."""
        self._redis_failed(exc)
        self._reachable.clear()
        self._probe_wanted.set()
        if self._probe is None and not self._closed.is_set():
            self._probe = threading.Thread(
                target=self._probe_redis, name="spooled-claim-probe", daemon=True
            )
            self._probe.start()

    def _probe_redis(self) -> None:
        # Any later failure on the dispatch thread sets _probe_wanted again, so a
        # success racing with a new failure only costs one more attempt.
        while self._probe_wanted.wait() and not self._closed.wait(self.config.retry_interval):
            try:
                self._redis.ping()
            except self._errors as exc:
                self._redis_failed(exc)
                continue
            except Exception:  # never let the probe die with claims paused
                logger.exception("Spooled coordination: Redis probe failed unexpectedly")
                continue
            self._redis_ok()
            self._probe_wanted.clear()
            self._reachable.set()

    def _clear_inflight(self) -> None:
        try:
            self._redis.delete(self._inflight_key)
        except self._errors as exc:
            self._unreachable(exc)
            return
        self._inflight_at = None

    # -- the watch thread: heartbeat, and what dead nodes left in flight -------------------

    def _watch(self) -> None:
        while True:
            try:
                pipe = self._redis.pipeline(transaction=False)
                pipe.set(self._node_prefix + self.token, "1", px=_HEARTBEAT_TTL_MS)
                pipe.sadd(self._nodes_key, self.token)
                pipe.execute()
                self._reap()
            except self._errors:
                pass  # the dispatch thread and the probe report Redis being down
            except Exception:
                logger.exception("Spooled coordination: claim watch failed; retrying")
            if self._closed.wait(_HEARTBEAT):
                return

    def _reap(self) -> None:
        """Count what each dead node had in flight; O(nodes), not O(keys)."""
        tokens = sorted(str(t) for t in self._redis.smembers(self._nodes_key) if t != self.token)
        if not tokens:
            return
        alive = self._redis.exists(*(self._node_prefix + t for t in tokens)) == len(tokens)
        if alive:
            return
        for token in tokens:
            if self._redis.exists(self._node_prefix + token):
                continue
            record = self._inflight_prefix + token
            pipe = self._redis.pipeline(transaction=True)
            pipe.get(record)
            pipe.delete(record)
            pipe.srem(self._nodes_key, token)
            listed, deleted, _ = pipe.execute()
            if not deleted or not listed:
                continue  # nothing in flight, or another survivor took it
            keys = str(listed).split("\n")
            owners = self._redis.mget(keys)
            lost = [key for key, owner in zip(keys, owners, strict=True) if owner == token]
            for key in lost:
                self._drop(
                    None,
                    HOLDER_LOST,
                    f"{key.removeprefix(self._prefix)} was claimed by {token}, which died "
                    "before it could publish it (it may have)",
                )
            with self._state_lock:
                self._holders_lost += len(lost)
            if lost:
                logger.warning(
                    "Spooled coordination: node %s stopped answering with %d claimed "
                    "event(s) in flight; counted as dropped{%r}",
                    token,
                    len(lost),
                    HOLDER_LOST,
                )

    def _settle(self, item: _Waiting, won: bool) -> None:
        if won:
            self._won += 1
            self._publish_all(item.event, item.subscriptions)
        else:
            self._lost += 1

    def _keep(self, item: _Waiting) -> None:
        if not self._waiting:
            self._overflow_logged = False
        if len(self._waiting) >= self.config.buffer_size:
            if not self._overflow_logged:
                self._overflow_logged = True
                logger.warning(
                    "Spooled coordination: once-buffer full (%d events) while Redis is "
                    "unreachable; dropping the oldest, counted as dropped{%r}",
                    self.config.buffer_size,
                    UNAVAILABLE,
                )
            oldest = self._waiting.popleft()
            self._drop(
                oldest.event,
                UNAVAILABLE,
                f"Redis unreachable and the once-buffer is full ({self.config.buffer_size} events)",
            )
        self._waiting.append(item)

    def _expire(self) -> None:
        limit = self._clock() - self.config.buffer_max_age
        expired = 0
        while self._waiting and self._waiting[0].received_at < limit:
            item = self._waiting.popleft()
            expired += 1
            self._drop(
                item.event,
                UNAVAILABLE,
                f"Redis unreachable for longer than buffer_max_age ({self.config.buffer_max_age:g}s)",
            )
        if expired:
            logger.warning(
                "Spooled coordination: dropped %d once-event(s) older than %gs while Redis "
                "is unreachable",
                expired,
                self.config.buffer_max_age,
            )
