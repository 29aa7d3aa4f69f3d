"""The one settings model: every setting once, with its name, default, variable and meaning.

Every framework reads these settings in its own idiom and nothing else:

* Celery: ``app.conf.get("spooled_<name>")`` (Django with ``namespace="CELERY"``:
  ``CELERY_SPOOLED_<NAME>``), then the ``SPOOLED_<NAME>`` environment variable;
* Dramatiq: ``SpooledMiddleware(<name>=...)``, a settings source (a mapping, or an
  object with ``SPOOLED_<NAME>`` attributes such as ``django.conf.settings``), then the
  environment variable.

A setting's ``group`` says where its value goes: ``connection`` fields become
:class:`~spooled_integrations.client.ConnectionOptions`, ``runtime`` fields
:class:`~spooled_integrations.runtime.RuntimeConfig` tuning, ``integration`` settings
are read by each framework module itself. ``frameworks`` names the frameworks that read
a setting; every framework reads every form of the settings it reads.

Old names keep working for one release (:data:`DEPRECATED`): reading one logs a
WARNING, once per process, naming the new setting.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from spooled_integrations.client import ConnectionOptions
from spooled_integrations.runtime.runtime import RuntimeConfig

__all__ = [
    "DEPRECATED",
    "SETTINGS",
    "Framework",
    "Setting",
    "by_variable",
    "for_framework",
    "warn_deprecated",
]

logger = logging.getLogger(__name__)

Framework = Literal["celery", "dramatiq"]
Group = Literal["integration", "connection", "runtime"]
TextForm = Literal["plain", "json", "json_or_path", "list"]
_BOTH: frozenset[str] = frozenset({"celery", "dramatiq"})


@dataclass(frozen=True)
class Setting:
    """One setting: its name, where it goes, its default and how text spells it."""

    name: str
    group: Group
    default: Any
    meaning: str
    frameworks: frozenset[str] = _BOTH
    env: str = ""
    """The environment variable (and settings-object attribute); ``SPOOLED_<NAME>``."""
    text: TextForm = "plain"
    """How a text value (an environment variable) is read: as is, JSON, JSON or a
    path, or a comma-separated list."""

    def __post_init__(self) -> None:
        if not self.env:
            object.__setattr__(self, "env", f"SPOOLED_{self.name.upper()}")

    @property
    def celery_key(self) -> str:
        return f"spooled_{self.name}"

    @property
    def django_key(self) -> str:
        return f"CELERY_SPOOLED_{self.name.upper()}"

    def from_text(self, text: str) -> Any:
        """The value ``text`` spells; :class:`ValueError` for text that is not JSON."""
        stripped = text.strip()
        if self.text == "list":
            return [part.strip() for part in stripped.split(",") if part.strip()]
        if self.text == "json" or (self.text == "json_or_path" and stripped[:1] in ("[", "{")):
            try:
                return json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise ValueError(f"expected JSON text ({exc.msg} at {exc.pos})") from None
        return text


@dataclass(frozen=True)
class Deprecated:
    """An old name that still works for one release."""

    old: str
    new: str
    old_env: str = ""
    removed_in: str = "the next minor release"
    warned: set[str] = field(default_factory=set, compare=False, repr=False)


def _connection_default(name: str) -> Any:
    return ConnectionOptions.model_fields[name].get_default(call_default_factory=True)


def _runtime_default(name: str) -> Any:
    return RuntimeConfig.model_fields[name].get_default(call_default_factory=True)


_INTEGRATION = [
    Setting(
        "enabled",
        "integration",
        None,
        "Run the listener on this node. None: on where the integration is installed "
        "(install(app) or a listed module with Celery; the middleware with Dramatiq).",
    ),
    Setting(
        "mode",
        "integration",
        "fork",
        "Dramatiq: where the listener runs, 'fork' (one per dramatiq run) or "
        "'every_process'. A Celery worker node always runs one, in its main process.",
        frameworks=frozenset({"dramatiq"}),
        env="SPOOLED_DRAMATIQ_MODE",
    ),
    Setting("transport", "integration", "ws", "'ws' (WebSocket) or 'sse' (Server-Sent Events)."),
    Setting(
        "filter",
        "integration",
        None,
        "What the connection asks for: queue_name, job_id, worker_id, events.",
        text="json",
    ),
    Setting(
        "subscriptions",
        "integration",
        None,
        "Routing rules: a list of mappings, JSON text, or a .toml/.yaml path.",
        text="json_or_path",
    ),
    Setting(
        "external_tasks",
        "integration",
        None,
        "Celery: task names a subscription may name that this app does not register. "
        "A Dramatiq subscription names an actor declared on the broker.",
        frameworks=frozenset({"celery"}),
        text="list",
    ),
    Setting(
        "coordination",
        "integration",
        None,
        "Fleet coordination of delivery='once' rules: 'lease'/'claim'[:<redis url>], "
        "a URL, JSON text or a mapping.",
    ),
    Setting(
        "coordination_password",
        "integration",
        None,
        "Password of the coordination Redis, added to its URL. Kept apart so Celery's "
        "inspect conf and report mask it, as they mask every *_password setting.",
    ),
    Setting(
        "checkpoint_password",
        "integration",
        None,
        "Password of the checkpoint Redis, added to its URL (masked by Celery, as above).",
    ),
    Setting(
        "shutdown_timeout",
        "integration",
        10.0,
        "Seconds the listener may take to stop and dispatch what is queued.",
    ),
    Setting(
        "metrics_port",
        "integration",
        None,
        "Celery: serve Prometheus metrics on this port from the worker's main process "
        "(the prometheus extra). None: no endpoint.",
        frameworks=frozenset({"celery"}),
    ),
]

_CONNECTION_MEANINGS = {
    "base_url": "REST and SSE base URL.",
    "ws_url": "WebSocket URL; empty: derived from base_url.",
    "token": "A JWT used as is.",
    "api_key": "API key, exchanged for a JWT.",
    "auto_reconnect": "Reconnect after a drop.",
    "max_reconnect_attempts": "Failed attempts in a row before giving up; 0: never.",
    "reconnect_delay": "First reconnect backoff delay.",
    "max_reconnect_delay": "Reconnect backoff cap.",
    "healthy_after": "Seconds up (or an event) after which the backoff resets.",
    "connect_timeout": "Timeout of login and handshakes.",
    "liveness_timeout": "Silence after which a connection counts as dead.",
    "token_cache": "Where the JWT is shared by this node's processes: 'auto', a directory, 'off'.",
    "verify_tls": "Verify the server's TLS certificate.",
    "proxy": "HTTP proxy URL for every connection; None: HTTPS_PROXY/NO_PROXY; 'off': none.",
    "extra_headers": "Headers added to every handshake and request.",
    "max_frame_bytes": "Larger frames are skipped.",
    "debug": "Log every connection state change at DEBUG.",
}

_RUNTIME_MEANINGS = {
    "queue_size": "Frames buffered between the reader and the dispatcher.",
    "dedupe_window": "Seconds within which a repeated job transition is suppressed.",
    "dedupe_max_entries": "Most identity keys remembered.",
    "coalesce_window": "Seconds a job transition waits for its twin form, to carry both's fields.",
    "max_age": "Drop every event older than this.",
    "publish_attempts": "Tries to hand one event to one target.",
    "publish_budget": "Total time one publish may take.",
    "publish_backoff": "First delay between publish attempts.",
    "publish_backoff_max": "Cap of the publish retry delay.",
    "skip_ping": "Do not deliver pings to receivers and routes.",
    "catch_up": "Recover the job transitions a stream gap hid.",
    "catch_up_max_age": "How far back a sweep looks.",
    "catch_up_poll": "'off', 'auto' or 'always': sweep on an interval.",
    "catch_up_interval": "Seconds between polling sweeps.",
    "catch_up_max_requests": "Job-list requests one sweep may make.",
    "checkpoint": "Where the dispatch position survives a restart.",
    "health_file": "A file the listener rewrites with its status every second, for probes.",
}

_CONNECTION = [
    Setting(
        name,
        "connection",
        _connection_default(name),
        meaning,
        text="json" if name == "extra_headers" else "plain",
    )
    for name, meaning in _CONNECTION_MEANINGS.items()
]
_RUNTIME = [
    Setting(name, "runtime", _runtime_default(name), meaning)
    for name, meaning in _RUNTIME_MEANINGS.items()
]

SETTINGS: dict[str, Setting] = {s.name: s for s in (*_INTEGRATION, *_CONNECTION, *_RUNTIME)}
"""Every setting, by name."""

DEPRECATED: dict[str, Deprecated] = {
    "stop_timeout": Deprecated("stop_timeout", "shutdown_timeout", "SPOOLED_STOP_TIMEOUT"),
}
"""Old names (and their variables) still read for one release, by old name."""

_warn_lock = threading.Lock()


def for_framework(framework: Framework) -> Iterator[Setting]:
    """The settings ``framework`` reads."""
    return (s for s in SETTINGS.values() if framework in s.frameworks)


def by_variable(framework: Framework) -> dict[str, str]:
    """``{variable: setting name}`` of ``framework``, old variables included."""
    found = {s.env: s.name for s in for_framework(framework)}
    for old in DEPRECATED.values():
        if old.old_env and old.new in found.values():
            found[old.old_env] = old.old
    return found


def warn_deprecated(old: str, new: str, *, where: str | None = None) -> None:
    """Log a WARNING, once per process and old name, that ``old`` is deprecated for ``new``.

    ``where`` is how the message names the place the old name was found (a variable,
    ``settings['stop_timeout']``, ``stop_timeout= (argument)``).
    """
    entry = DEPRECATED.get(old)
    with _warn_lock:
        if entry is not None:
            if old in entry.warned:
                return
            entry.warned.add(old)
    removed = entry.removed_in if entry is not None else "the next minor release"
    logger.warning(
        "the Spooled setting %s is deprecated and will be removed in %s; use %s instead",
        where or old,
        removed,
        new,
    )


def check_model() -> None:
    """Every ConnectionOptions and RuntimeConfig field has a setting (tests call it)."""
    missing = [
        name
        for name in (*ConnectionOptions.model_fields, *RuntimeConfig.model_fields)
        if name not in SETTINGS and name not in ("logger", "connection")
    ]
    assert not missing, f"fields without a setting: {missing}"
