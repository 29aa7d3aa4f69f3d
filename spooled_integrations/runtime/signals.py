"""blinker signals for Spooled events and for the runtime's own life.

:data:`spooled_signal` is sent once for every delivered event. The sender is the
canonical event type string and the event rides in the ``event`` keyword::

    from spooled_integrations.runtime import spooled_signal

    @spooled_signal.connect                      # every event
    def log_all(sender, event, **kw): ...

    @spooled_signal.connect_via("job.completed")  # one type; aliases work too:
    def done(sender, event, **kw): ...           # "JobCompleted" is the same sender

Receivers run on the runtime's dispatch thread, one after the other (in no fixed
order: blinker keeps them in a set). A receiver that raises is logged with its
traceback and reported on :data:`receiver_failed`; the other receivers still run.
Keep receivers quick: a slow receiver delays every later event (the reader thread
is never blocked, but the bounded queue in front of the dispatcher can overflow).

Weak references -- read this once
    ``signal.connect(fn)`` keeps only a *weak* reference to ``fn`` by default. A
    module-level function lives as long as its module, so that is fine. A receiver
    defined *inside a function* (a closure, a lambda, a bound method of a short-lived
    object) is garbage collected when nothing else refers to it, and it then silently
    stops receiving. Connect such receivers with ``weak=False`` (and disconnect them
    yourself), or keep a reference to them. ``connect_via`` already defaults to
    ``weak=False``.

Operational signals (sender in brackets):

- :data:`connection_state_changed` [runtime]: ``state=``, ``previous=``
  (:class:`~spooled_integrations.client.ConnectionState` values).
- :data:`receiver_failed` [the signal whose receiver raised]: ``receiver=``,
  ``event=`` (``None`` for signals without an event), ``exception=``.
- :data:`event_dropped` [dispatcher]: ``event=`` (``None`` when several were dropped
  at once), ``reason=`` (``overflow``, ``stale``, ``publish_failed``, ``stopped``, and
  with fleet coordination ``coordination_unavailable``, ``takeover_window``,
  ``claim_holder_lost``),
  ``detail=`` (a short human-readable string).
- :data:`event_published` [dispatcher]: a rule's message was handed to its task or
  actor: ``event=``, ``subscription=``, ``target=`` (``task:<name>``/``actor:<name>``),
  ``message_id=`` (the Celery task id -- what the task sees as ``self.request.id`` --
  or the Dramatiq message id; ``None`` when the publisher has none), ``attempts=``.
- :data:`stream_gap` [runtime]: ``disconnected_at=``, ``reconnected_at=`` (aware UTC
  datetimes); events published in between may have been missed.
- :data:`caught_up` [runtime]: a catch-up sweep's events were dispatched: ``kind=``
  (``gap``, ``start``, ``restart`` or ``poll``), ``since=``/``until=`` (RFC 3339), ``found=``,
  ``recovered=`` (dispatched: their live twin never came), ``duplicates=``,
  ``requests=``, ``complete=`` (False: part of the interval could not be swept, see
  ``reason=``). Runs on the dispatch thread.
- :data:`leadership_changed` [runtime]: with the ``lease`` coordination strategy, this
  node became (``leader=True``) or stopped being (``leader=False``) the one that
  dispatches ``delivery="once"`` rules; also ``holder=`` (the lease holder's token or
  ``None``), ``node=`` (this node's token), ``reason=``.

Threads: ``spooled_signal`` and ``event_published`` run on the dispatch thread; ``leadership_changed`` on the
lease thread (or the thread calling ``stop()``). ``connection_state_changed``
and ``stream_gap`` run on the client's reader thread (or the thread calling
``stop()``), as does ``event_dropped`` for ``overflow`` -- the reader is the one that
could not queue the event -- so receivers of those must be trivial: a slow one delays
reading. ``receiver_failed`` runs on the thread whose receiver raised.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from types import MethodType
from typing import Any, TypeVar
from weakref import WeakMethod, ref

from blinker import ANY, NamedSignal

from spooled_integrations.protocol import canonical_name

__all__ = [
    "SpooledSignal",
    "caught_up",
    "connection_state_changed",
    "event_dropped",
    "event_published",
    "leadership_changed",
    "receiver_failed",
    "send_isolated",
    "spooled_signal",
    "stream_gap",
]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def _sender_key(sender: Any) -> Any:
    # str() first: an EventType member must become the plain canonical string.
    if isinstance(sender, str):
        return canonical_name(str(sender))
    return sender


class SpooledSignal(NamedSignal):
    """A signal whose string senders are event names: aliases map to one sender.

    ``connect_via("JobCompleted")``, ``connect_via("job.completed")`` and
    ``connect_via(EventType.JOB_COMPLETED)`` all register for the same sender.
    """

    def __init__(self, name: str, doc: str | None = None) -> None:
        super().__init__(name, doc)
        # sender as given -> (connections version, canonical sender, receiver refs);
        # see receivers_now().
        self._cache: dict[Any, tuple[int, Any, tuple[Callable[[], Any], ...]]] = {}
        self._version = 0

    def send(self, sender: Any = None, /, **kwargs: Any) -> list[tuple[Callable[..., Any], Any]]:
        return super().send(_sender_key(sender), **kwargs)

    def connect(self, receiver: F, sender: Any = ANY, weak: bool = True) -> F:
        try:
            return super().connect(receiver, _sender_key(sender), weak)
        finally:
            self._changed()

    def disconnect(self, receiver: Callable[..., Any], sender: Any = ANY) -> None:
        try:
            super().disconnect(receiver, _sender_key(sender))
        finally:
            self._changed()

    def _changed(self) -> None:
        # A new dict as well: the old entries may hold receivers strongly (see _reference).
        self._version += 1
        self._cache = {}

    @contextlib.contextmanager
    def isolated(self) -> Iterator[None]:
        """Set every connected receiver aside for the ``with`` block, then put them back.

        For tests: receivers connected at import time by other modules (or left by
        another test) neither run nor count as listening inside the block; receivers
        connected inside it are gone after it.
        """
        saved = (self.receivers, self._by_sender, self._by_receiver, self._weak_senders)
        self.receivers = {}
        self._by_sender = defaultdict(set)
        self._by_receiver = defaultdict(set)
        self._weak_senders = {}
        self._changed()
        try:
            yield
        finally:
            self.receivers, self._by_sender, self._by_receiver, self._weak_senders = saved
            self._changed()

    def receivers_now(self, sender: Any) -> tuple[Any, list[Callable[..., Any]]]:
        """``(canonical sender, receivers)`` for one send, from a per-sender cache.

        blinker's ``receivers_for`` costs half of a one-receiver send (set union, a
        generator), and it runs for every event. The cache keeps *weak* references (a
        strong receiver is held by blinker until it is disconnected, which bumps the
        version), so it never keeps a receiver alive; a dead one sends us back to
        blinker, which also forgets it.
        """
        entry = self._cache.get(sender)
        if entry is not None and entry[0] == self._version:
            receivers = []
            for reference in entry[2]:
                receiver = reference()
                if receiver is None:
                    return self._refresh(sender)
                receivers.append(receiver)
            return entry[1], receivers
        return self._refresh(sender)

    def _refresh(self, sender: Any) -> tuple[Any, list[Callable[..., Any]]]:
        version = self._version
        key = _sender_key(sender)
        receivers = list(NamedSignal.receivers_for(self, key))
        if len(self._cache) >= _CACHE_LIMIT:  # unknown types are open-ended
            self._cache.clear()
        self._cache[sender] = (version, key, tuple(_reference(r) for r in receivers))
        return key, receivers

    def receivers_for(self, sender: Any) -> Any:
        return super().receivers_for(_sender_key(sender))

    def has_receivers_for(self, sender: Any) -> bool:
        return super().has_receivers_for(_sender_key(sender))


_CACHE_LIMIT = 1024


def _reference(receiver: Callable[..., Any]) -> Callable[[], Any]:
    """A weak reference where the receiver allows one, else a holder (see receivers_now)."""
    try:
        if isinstance(receiver, MethodType):
            return WeakMethod(receiver)
        return ref(receiver)
    except TypeError:  # not weakly referenceable: blinker holds it strongly
        return lambda: receiver


spooled_signal = SpooledSignal(
    "spooled.event",
    doc="Sent for every delivered Spooled event; sender = canonical type, kwarg event=.",
)
connection_state_changed = NamedSignal(
    "spooled.connection_state_changed",
    doc="The realtime connection changed state; sender = runtime, kwargs state=, previous=.",
)
receiver_failed = NamedSignal(
    "spooled.receiver_failed",
    doc="A signal receiver raised; sender = the signal, kwargs receiver=, event=, exception=.",
)
event_dropped = NamedSignal(
    "spooled.event_dropped",
    doc="An event was not dispatched; sender = dispatcher, kwargs event=, reason=, detail=.",
)
event_published = NamedSignal(
    "spooled.event_published",
    doc="A rule's message was handed to its task or actor; sender = dispatcher, kwargs "
    "event=, subscription=, target=, message_id=, attempts=.",
)
stream_gap = NamedSignal(
    "spooled.stream_gap",
    doc="The stream was down between disconnected_at= and reconnected_at=; sender = runtime.",
)
caught_up = NamedSignal(
    "spooled.caught_up",
    doc="A catch-up sweep's events were dispatched; sender = runtime, kwargs kind=, since=, "
    "until=, at=, found=, recovered=, duplicates=, requests=, complete=, reason=.",
)
leadership_changed = NamedSignal(
    "spooled.leadership_changed",
    doc="This node gained or lost lease leadership; sender = runtime, kwargs leader=, "
    "holder=, node=, reason=.",
)

_local = threading.local()


def send_isolated(signal: NamedSignal, sender: Any, **kwargs: Any) -> tuple[int, int]:
    """Call every receiver of ``signal`` for ``sender``; one failure never stops the rest.

    Unlike blinker's ``send``, an exception is logged with its traceback and reported on
    :data:`receiver_failed` instead of propagating. A receiver of ``receiver_failed``
    that raises itself is only logged (no report about the report). Coroutine
    receivers are not supported and count as failures. Returns ``(ok, failed)``.
    """
    if signal.is_muted:
        return 0, 0
    if isinstance(signal, SpooledSignal):
        sender, receivers = signal.receivers_now(sender)
    else:
        # Materialise first: a receiver may connect or disconnect while we iterate.
        receivers = list(signal.receivers_for(sender))
    ok = failed = 0
    for receiver in receivers:
        try:
            result = receiver(sender, **kwargs)
            if result is not None and hasattr(result, "__await__"):
                _refuse_coroutine(receiver, result)
        except Exception as exc:
            failed += 1
            _receiver_raised(signal, receiver, sender, kwargs.get("event"), exc)
        else:
            ok += 1
    return ok, failed


def send_event(event: Any) -> int:
    """Send :data:`spooled_signal` for ``event``; returns how many receivers failed.

    :func:`send_isolated` for the one send the dispatcher makes per event, without the
    generality it pays for on every call (any signal, any keywords); figures in
    ``bench/README.md``.
    """
    if spooled_signal.is_muted:
        return 0
    sender, receivers = spooled_signal.receivers_now(event.type)
    failed = 0
    for receiver in receivers:
        try:
            result = receiver(sender, event=event)
            if result is not None and hasattr(result, "__await__"):
                _refuse_coroutine(receiver, result)
        except Exception as exc:
            failed += 1
            _receiver_raised(spooled_signal, receiver, sender, event, exc)
    return failed


def _refuse_coroutine(receiver: Callable[..., Any], result: Any) -> None:
    close = getattr(result, "close", None)
    if callable(close):
        close()  # avoid "coroutine was never awaited"
    raise TypeError(f"receiver {_describe(receiver)} is a coroutine function")


def _receiver_raised(
    signal: NamedSignal, receiver: Callable[..., Any], sender: Any, event: Any, exc: Exception
) -> None:
    """Log the exception being handled with its traceback and report it."""
    logger.exception(
        "receiver %s of %s failed (sender %r)", _describe(receiver), signal.name, sender
    )
    _report_failure(signal, receiver, event, exc)


def _report_failure(
    signal: NamedSignal, receiver: Callable[..., Any], event: Any, exc: Exception
) -> None:
    if getattr(_local, "reporting", False):
        return
    _local.reporting = True
    try:
        send_isolated(receiver_failed, signal, receiver=receiver, event=event, exception=exc)
    finally:
        _local.reporting = False


def _describe(receiver: Callable[..., Any]) -> str:
    module = getattr(receiver, "__module__", None) or "?"
    name = getattr(receiver, "__qualname__", None) or repr(receiver)
    return f"{module}.{name}"
