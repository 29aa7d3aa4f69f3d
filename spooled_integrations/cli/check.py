"""``spooled-integrations check``: validate routes, print the routing table.

``check FILE`` reads a subscription file; ``check --celery proj`` and ``check
--dramatiq module`` load the app and build the routes a worker would (configured rules
and task/actor options), with the boot's own checks (:mod:`.check_apps`).

Exit status 0 when valid, 1 with every problem listed when not. The table shows each
route as the router sees it: event type -> filters -> target -> delivery. Everything
printed goes through the redaction helpers first (a rule's ``options.headers`` may hold
a token, a YAML error quotes the line it stopped at), and a long cell is cut only after
that, so no part of a secret is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from spooled_integrations._redact import redact, redact_mapping

if TYPE_CHECKING:
    from spooled_integrations.runtime.subscriptions import Subscription, SubscriptionSet

__all__ = ["add_arguments", "routing_table", "run"]

_MAX_CELL = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="subscription file (.toml, .yaml or .yml)")
    source.add_argument(
        "--celery",
        metavar="APP",
        help="a Celery app as 'celery -A' takes it (proj, proj.celery:app): the routes its "
        "workers build from the config and task options",
    )
    source.add_argument(
        "--dramatiq",
        metavar="MODULE",
        help="a broker module as 'dramatiq' takes it (app, app:broker): the routes its "
        "SpooledMiddleware builds from its settings and actor options",
    )


def run(args: argparse.Namespace) -> int:
    if args.celery is not None or args.dramatiq is not None:
        return _run_app(args.celery, args.dramatiq)
    return _run_file(args)


def _run_app(celery: str | None, dramatiq: str | None) -> int:
    from spooled_integrations.cli.check_apps import AppProblems, celery_routes, dramatiq_routes

    # the boot's warnings (a secret Celery would print...) are part of the answer
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    try:
        found = celery_routes(celery) if celery is not None else dramatiq_routes(str(dramatiq))
    except AppProblems as exc:
        print(f"{exc.label}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {redact(problem)}", file=sys.stderr)
        return 1
    runtime = found.runtime
    subscriptions = runtime.config.subscriptions
    rows = _print_table(subscriptions)
    print(
        f"\n{found.label}: OK, {len(subscriptions)} subscription(s), {len(rows)} route(s), "
        f"{len(subscriptions.targets)} with a target"
    )
    print(f"listens to: {runtime.config.transport} {runtime.url}")
    for note in found.notes:
        print(f"note: {note}")
    if runtime.config.coordination is None and runtime.config.once_subscriptions:
        print(_ONCE_NOTE)
    return 0


def _print_table(subscriptions: SubscriptionSet) -> list[tuple[str, str, str, str, str]]:
    rows = routing_table(subscriptions)
    header = ("event", "filters", "target", "delivery", "rule")
    print(_format_table(header, rows))
    return rows


_ONCE_NOTE = (
    "note: delivery='once' needs fleet coordination; without it every node "
    "running the runtime dispatches these"
)


def _run_file(args: argparse.Namespace) -> int:
    from spooled_integrations.errors import ConfigurationError, SubscriptionError
    from spooled_integrations.runtime.subscriptions import load_subscriptions

    try:
        subscriptions = load_subscriptions(args.file)
    except SubscriptionError as exc:
        print(f"{args.file}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {redact(problem)}", file=sys.stderr)
        return 1
    except ConfigurationError as exc:
        message = redact(str(exc))
        named = message.startswith(str(args.file))
        print(message if named else f"{args.file}: {message}", file=sys.stderr)
        return 1

    rows = _print_table(subscriptions)
    targeted = len(subscriptions.targets)
    print(
        f"\n{args.file}: OK, {len(subscriptions)} subscription(s), {len(rows)} route(s), "
        f"{targeted} with a target"
    )
    if any(s.target is not None and s.delivery == "once" for s in subscriptions):
        print(_ONCE_NOTE)
    return 0


def routing_table(subscriptions: SubscriptionSet) -> list[tuple[str, str, str, str, str]]:
    """One row per (event type, subscription), sorted by event type then rule order.

    ``*`` rules appear once, under ``*``, since they also match unknown event types.
    """
    rows: list[tuple[str, int, tuple[str, str, str, str, str]]] = []
    for index, sub in enumerate(subscriptions):
        cells = (_filters(sub), _target(sub), _delivery(sub), _rule(index, sub))
        types = ["*"] if sub.matches_all else sorted(sub.event_types)
        for event_type in types:
            rows.append((event_type, index, (event_type, *cells)))
    rows.sort(key=lambda row: (row[0] == "*", row[0], row[1]))
    return [row for _, _, row in rows]


def _filters(sub: Subscription) -> str:
    parts = []
    fields: tuple[Literal["queue", "job_id", "worker_id"], ...] = ("queue", "job_id", "worker_id")
    for field in fields:
        values = sub.filter_values(field)
        if values is not None:
            parts.append(f"{field}={'|'.join(sorted(values))}")
    for key, value in redact_mapping(sub.where).items():
        shown = "|".join(_json(v) for v in value) if isinstance(value, list) else _json(value)
        parts.append(f"{key}={shown}")
    if sub.max_age is not None:
        parts.append(f"max_age={sub.max_age:g}s")
    return _clip(", ".join(parts) or "-")


def _target(sub: Subscription) -> str:
    if sub.target is None:
        return "signals only"
    text = sub.target
    if sub.payload == "data":
        text += " (data)"
    if sub.options:
        text += " " + _json(redact_mapping(sub.options))
    return _clip(text)


def _delivery(sub: Subscription) -> str:
    return "-" if sub.target is None else sub.delivery


def _rule(index: int, sub: Subscription) -> str:
    return _clip(f"[{index}] {sub.name}" if sub.name else f"[{index}]")


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _clip(text: str) -> str:
    text = redact(text)  # before cutting: a cut secret would no longer be recognised
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def _format_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for row in (header, tuple("-" * w for w in widths), *rows):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return "\n".join(lines)
