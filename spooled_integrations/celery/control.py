"""``celery -A proj inspect spooled_status``: every node's Spooled runtime status.

Remote-control commands live in Celery's global ``Panel`` registry, so importing this
module is what registers the command, in the worker (to answer) and in the process
running ``celery inspect`` (whose CLI only accepts commands it knows). The reply of a
node without the step, or with the listener off, says so instead of failing.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.worker.control import inspect_command

from spooled_integrations.celery.bootstep import SpooledStep

__all__ = ["spooled_status"]

logger = logging.getLogger(__name__)


def _step(state: Any) -> SpooledStep | None:
    controller = getattr(getattr(state, "consumer", None), "controller", None)
    blueprint = getattr(controller, "blueprint", None)
    steps = getattr(blueprint, "steps", None) or {}
    step = steps.get(SpooledStep.name)
    return step if isinstance(step, SpooledStep) else None


@inspect_command(name="spooled_status")
def spooled_status(state: Any, **kwargs: Any) -> dict[str, Any]:
    """Spooled listener status of this worker node."""
    step = _step(state)
    if step is None:
        return {
            "enabled": False,
            "enabled_by": "the Spooled bootstep is not installed in this worker",
            "pid": os.getpid(),
        }
    try:
        return step.status()
    except Exception as exc:  # an operator command must answer, not time out
        logger.exception("spooled_status failed")
        return {"enabled": step.enabled, "error": f"{type(exc).__name__}: {exc}"}
