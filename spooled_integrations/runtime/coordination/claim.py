"""``claim``: every node claims each ``once`` event; the one whose ``SET NX`` wins publishes.

The claim key is ``spooled:claim:<namespace>:<identity_key>``; identity keys are
derived from the event's content (see :attr:`spooled_integrations.protocol.Event.identity_key`),
so every node computes the same key for the same server event. One claim covers every
``once`` subscription the event matches. There is no takeover gap: a node that dies
only loses the event it had claimed and not yet handed to the broker.

While Redis cannot be reached, ``once`` events wait in order in a buffer bounded by
``buffer_size`` and ``buffer_max_age``. A background thread pings Redis every
``retry_interval`` (so a Redis that does not answer at all never holds up the dispatch
thread, which keeps running signals and ``every_node`` rules); once it answers, the
dispatch thread drains the buffer (claims pipelined, in order). An event pushed
out of the buffer, or older than ``buffer_max_age``, is dropped:
``dropped{"coordination_unavailable"}`` plus ``event_dropped``.
"""

from __future__ import annotations

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
        if len(items) == 1:
            key = self.key(items[0].event)
            return [bool(self._redis.set(key, self.token, nx=True, px=self._ttl_ms))]
        pipe = self._redis.pipeline(transaction=False)
        for item in items:
            pipe.set(self.key(item.event), self.token, nx=True, px=self._ttl_ms)
        return [bool(won) for won in pipe.execute()]

    def poll(self) -> None:
        if self._batch and not self._hooks.backlog():
            self._flush()
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

    def stop(self, *, received_until: float | None = None, drained: bool = True) -> None:
        self._closed.set()
        self._probe_wanted.set()  # wake the probe so it sees _closed
        probe = self._probe
        if probe is not None and probe is not threading.current_thread():
            probe.join(self._redis_timeout + 1.0)
        if self._batch and self._reachable.is_set():
            self._flush()  # the dispatch thread has ended: finish its last batch here
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
