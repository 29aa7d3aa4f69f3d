"""What a runtime listens to and where events go, as an operator reads it.

One place builds the URL in use and each route, for :meth:`SpooledRuntime.status`
(JSON), for the boot log (one short line per route) and for ``spooled-integrations
check``. Everything goes through the redaction helpers: a URL may carry a password, a
rule's ``where`` or ``options`` a token.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from spooled_integrations._redact import redact, redact_mapping, redact_url
from spooled_integrations.client.sse import EVENTS_PATH

if TYPE_CHECKING:
    from spooled_integrations.client import ConnectionOptions, SubscriptionFilter
    from spooled_integrations.runtime.subscriptions import Subscription

__all__ = ["listener_url", "route_line", "route_status", "routes_status"]

_FILTERS: tuple[Literal["queue", "job_id", "worker_id"], ...] = ("queue", "job_id", "worker_id")


def listener_url(
    connection: ConnectionOptions, transport: str, filter: SubscriptionFilter | None = None
) -> str:
    """The URL the listener connects to (the WebSocket URL, or the SSE events URL: the
    job's stream with a ``job_id`` filter), without its query and without a password."""
    if transport == "ws":
        return redact_url(connection.resolved_ws_url)
    path = EVENTS_PATH
    if filter is not None and filter.job_id is not None:
        path += f"/jobs/{quote(filter.job_id, safe='')}"
    return redact_url(connection.base_url + path)


def route_status(index: int, sub: Subscription) -> dict[str, Any]:
    """One rule for ``status()["routes"]`` (JSON-ready, secrets redacted)."""
    filters: dict[str, Any] = {}
    for field in _FILTERS:
        values = sub.filter_values(field)
        if values is not None:
            filters[field] = sorted(values)
    if sub.where:
        filters["where"] = redact_mapping(sub.where)
    if sub.max_age is not None:
        filters["max_age"] = sub.max_age
    target = None
    if sub.target_kind is not None and sub.target_name is not None:
        target = {"kind": sub.target_kind, "name": sub.target_name}
    return {
        "index": index,
        "name": sub.name,
        "events": list(sub.events),
        "filters": filters,
        "target": target,
        "delivery": sub.delivery if target is not None else None,
        "payload": sub.payload if target is not None else None,
        "options": redact_mapping(sub.options),
    }


def routes_status(subscriptions: Sequence[Subscription]) -> list[dict[str, Any]]:
    """Every rule, in rule order (configured rules first, then task/actor options)."""
    return [route_status(index, sub) for index, sub in enumerate(subscriptions)]


def route_line(index: int, sub: Subscription) -> str:
    """``[0] email-sent: job.completed queue=emails max_age=300s -> task:x (every_node,
    data)``: one rule in one short log line."""
    parts = [",".join(sub.events)]
    for field in _FILTERS:
        values = sub.filter_values(field)
        if values is not None:
            parts.append(f"{field}={'|'.join(sorted(values))}")
    for key, value in redact_mapping(sub.where).items():
        parts.append(f"where.{key}={json.dumps(value, sort_keys=True)}")
    if sub.max_age is not None:
        parts.append(f"max_age={sub.max_age:g}s")
    if sub.target is None:
        where_to = "signals only"
    else:
        where_to = f"{sub.target} ({sub.delivery}, {sub.payload})"
    label = f"[{index}] {sub.name}" if sub.name else f"[{index}]"
    return redact(f"{label}: {' '.join(parts)} -> {where_to}")
