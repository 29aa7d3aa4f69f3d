"""The fork-mode listener's status, readable from every worker process of the run.

In ``mode="fork"`` the listener lives in a process of its own, so
``middleware.status()`` in a worker process would only know that it is not listening
there. The listener's process writes its runtime status to a file named after the
``dramatiq`` main process (beside the listener lock, readable by this user only) once a
second; the worker processes read it. A file older than a few seconds means the writer
is gone, and the status says so. The file itself is the runtime's
:mod:`~spooled_integrations.runtime.health_file`, at a place the workers can find.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from spooled_integrations.runtime.health_file import STALE_AFTER, WRITE_EVERY, StatusWriter
from spooled_integrations.runtime.health_file import StatusFile as _StatusFile

__all__ = ["STALE_AFTER", "WRITE_EVERY", "StatusFile", "StatusWriter"]


class StatusFile(_StatusFile):
    """``spooled-dramatiq-<main pid>.status.json`` in the temporary directory."""

    pid_key = "listener_pid"

    def __init__(self, main_pid: int, directory: str | None = None) -> None:
        super().__init__(
            Path(directory or tempfile.gettempdir()) / f"spooled-dramatiq-{main_pid}.status.json"
        )
