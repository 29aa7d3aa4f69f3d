"""OpenTelemetry spans for dispatched events, and the trace context for routed messages.

Optional (the ``otel`` extra, ``opentelemetry-api`` only): without it, or while no tracer
provider is configured, nothing here costs more than a function call per event.
``opentelemetry`` is imported once, on the first event, never at import time. Once a
tracer provider is configured it is read per event (one global read); until then it is
looked for at most once a second (OpenTelemetry's lookup of an unset provider reads the
environment, 1 µs), so a provider configured after the worker started (Celery's
``worker_process_init``, say) is used within a second; :func:`recheck` makes that at once.

Each dispatched event gets one span, ``spooled.dispatch <event type>``, of kind
CONSUMER: the messaging conventions' *process* span of a message received from
Spooled. Receivers and publishes run inside it, so the messages it routes carry its
context: :func:`inject` gives the W3C ``traceparent`` (and ``tracestate``) of the
current span for the publishers to put into the message, where the Celery and
Dramatiq instrumentations read it on the worker and make the task's span its child.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from spooled_integrations.protocol import Event
from spooled_integrations.runtime.subscriptions import Subscription

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["SPAN_PREFIX", "Tracing", "inject", "recheck"]

SPAN_PREFIX = "spooled.dispatch"

_UNRESOLVED: Any = object()
_api: Any = _UNRESOLVED  # opentelemetry.trace once looked up; None: not installed
_RECHECK_EVERY = 1.0  # seconds between looks for a provider while none is configured
_next_check = 0.0  # time.monotonic() of the next look while none is configured
_configured = False  # a provider was configured at the last look


def _trace_api() -> Any:
    """``opentelemetry.trace``, or ``None`` when the extra is not installed (looked up once)."""
    global _api  # noqa: PLW0603 - a once-only lookup shared by every dispatcher
    if _api is _UNRESOLVED:
        try:
            from opentelemetry import trace
        except ImportError:
            _api = None
        else:
            _api = trace
    return _api


def recheck() -> None:
    """Look for a configured tracer provider at the next event (not up to 1 s later)."""
    global _next_check  # noqa: PLW0603
    _next_check = 0.0


def _provider() -> TracerProvider | None:
    """The configured tracer provider, or ``None`` (OpenTelemetry absent or unconfigured)."""
    global _next_check, _configured  # noqa: PLW0603 - one answer for every dispatcher
    if not _configured:
        now = time.monotonic()
        if now < _next_check:
            return None
        _next_check = now + _RECHECK_EVERY
    api = _trace_api()
    if api is None:
        _next_check = float("inf")
        return None
    provider = api.get_tracer_provider()
    _configured = not isinstance(provider, (api.ProxyTracerProvider, api.NoOpTracerProvider))
    return provider if _configured else None


class Tracing:
    """One dispatcher's spans (used on its dispatch thread only)."""

    def __init__(self) -> None:
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None
        self.active: Span | None = None
        """The span of the event being dispatched, while there is one."""
        self._routes: list[tuple[str, str, str, str]] = []  # the active span's publishes

    def _current_tracer(self) -> Tracer | None:
        provider = _provider()
        if provider is None:
            return None
        if provider is not self._provider:  # first span, or another provider since
            self._provider = provider
            self._tracer = provider.get_tracer("spooled_integrations")
        return self._tracer

    def dispatch(self, event: Event) -> AbstractContextManager[None] | None:
        """A context manager holding ``event``'s span current, or ``None`` (not tracing)."""
        tracer = self._current_tracer()
        if tracer is None:
            return None
        return self._span(tracer, event)

    def publish(self, event: Event) -> AbstractContextManager[None] | None:
        """For a publish outside a dispatch (a coordinated ``once`` publish done later):
        the event's span, or ``None`` when one is current already or not tracing."""
        if self.active is not None:
            return None
        return self.dispatch(event)

    @contextmanager
    def _span(self, tracer: Tracer, event: Event) -> Iterator[None]:
        from opentelemetry.trace import SpanKind

        with tracer.start_as_current_span(
            f"{SPAN_PREFIX} {event.type}",
            kind=SpanKind.CONSUMER,
            attributes=_event_attributes(event),
        ) as span:
            self.active = span
            try:
                yield
            finally:
                self.active = None
                if self._routes:  # one call for all (the SDK checks every attribute set)
                    routes, self._routes = self._routes, []
                    span.set_attributes(
                        dict(zip(_ROUTE_KEYS, zip(*routes, strict=True), strict=True))
                    )

    def published(self, subscription: Subscription, message_id: str | None) -> None:
        """Add a route the current event was published to (lists: one event, many routes)."""
        span = self.active
        if span is None or not span.is_recording():
            return
        target = subscription.target or ""
        route = subscription.name or target
        self._routes.append((route, target, subscription.delivery, message_id or ""))

    def failed(self, subscription: Subscription, error: str) -> None:
        """Mark the current event's span ERROR: a publish failed for good."""
        span = self.active
        if span is None or not span.is_recording():
            return
        from opentelemetry.trace import Status, StatusCode

        label = subscription.name or subscription.target or "signals"
        span.set_status(Status(StatusCode.ERROR, f"publishing to {label} failed: {error}"))
        span.add_event("publish_failed", {"spooled.route": label, "error": error})


_ROUTE_KEYS = ("spooled.route", "spooled.target", "spooled.delivery", "spooled.message_id")


def _event_attributes(event: Event) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "spooled",
        "messaging.operation.type": "process",
        "messaging.operation.name": "dispatch",
        "spooled.event.type": event.type,
        "spooled.event.replayed": event.replayed,
    }
    job_id = event.job_id
    if job_id is not None:
        attributes["spooled.job.id"] = job_id
    queue_name = event.queue_name
    if queue_name is not None:
        attributes["spooled.queue.name"] = queue_name
        attributes["messaging.destination.name"] = queue_name
    if event.derived_from is not None:
        attributes["spooled.event.derived_from"] = event.derived_from
    return attributes


def inject() -> dict[str, str] | None:
    """The current span's W3C trace context (``traceparent``, ``tracestate``) for a
    message's headers, or ``None`` when no span is current (or OpenTelemetry is absent)."""
    if _provider() is None or not _api.get_current_span().get_span_context().is_valid:
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None
