"""The registry of target kinds: which key of a subscription names a framework's target.

A subscription names its target with one key, the *kind* (``task = "billing.on_done"``
for Celery, ``actor = "on_done"`` for Dramatiq). A framework module registers its kind
with :func:`register_target_kind` when it is imported; :class:`~spooled_integrations.
runtime.subscriptions.Subscription` then accepts that key, and the framework's
publisher (:class:`~spooled_integrations.runtime.publisher.TargetPublisher`) serves it.
Adding a framework adds a kind here without editing the subscription model.

``task`` and ``actor`` are known before their modules are imported: files and
``spooled-integrations check`` have always accepted them without Celery or Dramatiq
installed, and keep doing so.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

__all__ = ["TargetKind", "register_target_kind", "target_kind", "target_kinds"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class TargetKind:
    """One kind of target: the subscription key, what it names, the framework serving it."""

    name: str
    description: str
    framework: str

    def __str__(self) -> str:
        return self.name


_lock = threading.Lock()
_kinds: dict[str, TargetKind] = {
    kind.name: kind
    for kind in (
        TargetKind("task", "Celery task name, sent with app.send_task", "Celery"),
        TargetKind("actor", "Dramatiq actor name", "Dramatiq"),
    )
}


def register_target_kind(name: str, *, description: str, framework: str) -> TargetKind:
    """Make ``name`` a subscription key that names a ``framework`` target; returns the kind.

    Idempotent (the latest description wins); another framework registering the same
    name shares it (``framework`` then reads ``"Celery or Huey"``). Raises
    :class:`ValueError` when ``name`` is not a lower-case identifier or is a
    subscription field.
    """
    if not _NAME.match(name):
        raise ValueError(f"target kind {name!r}: use a lower-case identifier")
    from spooled_integrations.runtime.subscriptions import Subscription

    if name in Subscription.model_fields:
        raise ValueError(f"target kind {name!r} is a subscription field")
    with _lock:
        known = _kinds.get(name)
        if known is not None:
            # One key may serve several frameworks (Celery and Huey both run a "task").
            served = known.framework.split(" or ")
            framework = " or ".join(served if framework in served else [*served, framework])
        kind = _kinds[name] = TargetKind(name, description, framework)
    return kind


def target_kind(name: str) -> TargetKind | None:
    """The registered kind called ``name``, or ``None``."""
    return _kinds.get(name)


def target_kinds() -> dict[str, TargetKind]:
    """Every registered kind by name, sorted (a snapshot)."""
    with _lock:
        return dict(sorted(_kinds.items()))
