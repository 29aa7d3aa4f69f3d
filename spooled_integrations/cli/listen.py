"""``spooled-integrations listen``: print Spooled events as they arrive.

Connection settings come from flags or the ``SPOOLED_API_KEY`` / ``SPOOLED_TOKEN`` /
``SPOOLED_BASE_URL`` / ``SPOOLED_WS_URL`` environment variables (flags win; prefer the
environment for secrets, since flags show in ``ps``). Events go to stdout, one line
each (``--json``: one JSON object per line); connection state changes, stream gaps and
drops go to stderr. Ctrl-C or SIGTERM exits 0; credentials refused exit 1.

The events printed are exactly what ``spooled_signal`` receivers would get: pings are
skipped and repeated job transitions are suppressed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blinker import NamedSignal

    from spooled_integrations.client import ConnectionState
    from spooled_integrations.protocol import Event

__all__ = ["add_arguments", "format_event", "run"]

_ID_FIELDS = ("queue_name", "job_id", "worker_id")
_SKIP_FIELDS = frozenset({*_ID_FIELDS, "timestamp"})
_MAX_VALUE = 80


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", help="API base URL (env SPOOLED_BASE_URL)")
    parser.add_argument("--ws-url", help="WebSocket URL (env SPOOLED_WS_URL)")
    parser.add_argument("--api-key", help="API key (env SPOOLED_API_KEY; prefer the env)")
    parser.add_argument("--token", help="JWT (env SPOOLED_TOKEN; prefer the env)")
    parser.add_argument(
        "--transport", choices=("ws", "sse"), default="ws", help="connection type (default ws)"
    )
    parser.add_argument(
        "--events",
        action="append",
        metavar="NAMES",
        help="only these events: names, aliases or globs, comma-separated or repeated",
    )
    parser.add_argument("--queue", help="only events of this queue")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument(
        "--no-dedupe", action="store_true", help="show repeated job transitions too"
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )


def run(args: argparse.Namespace) -> int:
    _configure_logging(args.verbose)
    from spooled_integrations.client import ConnectionOptions
    from spooled_integrations.errors import ConfigurationError

    try:
        options = ConnectionOptions.from_env(
            base_url=args.base_url, ws_url=args.ws_url, api_key=args.api_key, token=args.token
        )
        event_filter = _filter(args.events, args.queue)
    except ConfigurationError as exc:
        print(f"spooled-integrations listen: {exc}", file=sys.stderr)
        return 2
    if not options.has_credentials():
        print(
            "spooled-integrations listen: no credentials; set SPOOLED_API_KEY (or "
            "SPOOLED_TOKEN), or pass --api-key",
            file=sys.stderr,
        )
        return 2

    from spooled_integrations.runtime import RuntimeConfig, SpooledRuntime

    config = RuntimeConfig(
        connection=options,
        transport=args.transport,
        filter=event_filter,
        dedupe_window=0 if args.no_dedupe else 60.0,
    )
    runtime = SpooledRuntime(config)
    listener = _Listener(as_json=args.json)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        listener.stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    listener.connect()
    try:
        _note(f"listening on {options.base_url} ({args.transport}); Ctrl-C to stop")
        runtime.start()
        while not listener.stop.wait(0.5):
            if runtime.health == "refused":  # at a terminal, say so and stop
                listener.gave_up.set()
                break
    finally:
        runtime.stop(timeout=5.0)
        listener.disconnect()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if listener.gave_up.is_set():
        _note(f"stopped: {runtime.status()['last_error'] or 'the connection ended'}")
        return 1
    return 0


class _Listener:
    """The signal receivers of one ``listen`` run: print events, note everything else."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self.stop = threading.Event()
        self.gave_up = threading.Event()
        self._states = 0

    def _receivers(self) -> list[tuple[NamedSignal, Callable[..., Any]]]:
        from spooled_integrations.runtime import signals

        return [
            (signals.spooled_signal, self.on_event),
            (signals.connection_state_changed, self.on_state),
            (signals.stream_gap, self.on_gap),
            (signals.event_dropped, self.on_drop),
        ]

    def connect(self) -> None:
        for sig, receiver in self._receivers():
            sig.connect(receiver, weak=False)

    def disconnect(self) -> None:
        for sig, receiver in self._receivers():
            sig.disconnect(receiver)

    def on_event(self, sender: Any, *, event: Event, **kw: Any) -> None:
        line = json.dumps(event.to_dict()) if self.as_json else format_event(event)
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):  # reader went away (| head) or stdout closed
            self.stop.set()

    def on_state(self, sender: Any, *, state: ConnectionState, **kw: Any) -> None:
        from spooled_integrations.client import ConnectionState

        _note(f"connection: {state.value}")
        self._states += 1
        if state == ConnectionState.DISCONNECTED and not self.stop.is_set() and self._states > 1:
            self.gave_up.set()  # the client ended on its own (credentials refused, ...)
            self.stop.set()

    def on_gap(
        self, sender: Any, *, disconnected_at: datetime, reconnected_at: datetime, **kw: Any
    ) -> None:
        seconds = (reconnected_at - disconnected_at).total_seconds()
        _note(f"stream gap of {seconds:.1f}s: events in between may be missing")

    def on_drop(self, sender: Any, *, reason: str, detail: str, **kw: Any) -> None:
        _note(f"dropped ({reason}): {detail}")


def format_event(event: Event) -> str:
    """``<time>  <type>  queue=… job=… worker=…  key=value …`` for one event."""
    moment = event.timestamp or datetime.now(timezone.utc)
    stamp = moment.astimezone(timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    parts = [stamp, f"{event.type:<16}"]
    for field, label in (("queue_name", "queue"), ("job_id", "job"), ("worker_id", "worker")):
        value = event.data.get(field)
        if value is not None:
            parts.append(f"{label}={value}")
    extras = [
        f"{key}={_short(value)}" for key, value in event.data.items() if key not in _SKIP_FIELDS
    ]
    if extras:
        parts.append(" ".join(extras))
    if event.derived_from:
        parts.append(f"(from {event.derived_from})")
    return "  ".join(parts)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if isinstance(value, str) and (not text or " " in text):
        text = json.dumps(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _filter(events: list[str] | None, queue: str | None) -> Any:
    """A SubscriptionFilter from ``--events``/``--queue`` (globs expanded), or ``None``."""
    from spooled_integrations.client import SubscriptionFilter
    from spooled_integrations.errors import ConfigurationError
    from spooled_integrations.runtime.subscriptions import expand_events

    names = [n.strip() for chunk in events or () for n in chunk.split(",") if n.strip()]
    types: tuple[str, ...] = ()
    if names:
        expanded, matches_all, problems = expand_events(names)
        if problems:
            raise ConfigurationError(
                "--events: " + "; ".join(p.split(": ", 1)[1] for p in problems)
            )
        types = () if matches_all else tuple(sorted(expanded))
    if not types and queue is None:
        return None
    return SubscriptionFilter(queue_name=queue, events=types)


def _note(text: str) -> None:
    """A status line on stderr (stdout carries only events)."""
    stamp = datetime.now(timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    with contextlib.suppress(BrokenPipeError, ValueError):
        print(f"{stamp}  -- {text}", file=sys.stderr, flush=True)


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
