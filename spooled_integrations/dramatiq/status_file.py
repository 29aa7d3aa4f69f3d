"""The fork-mode listener's status, readable from every worker process of the run.

In ``mode="fork"`` the listener lives in a process of its own, so
``middleware.status()`` in a worker process would only know that it is not listening
there. The listener's process writes its runtime status to a file named after the
``dramatiq`` main process (beside the listener lock, readable by this user only) once a
second; the worker processes read it. A file older than a few seconds means the writer
is gone, and the status says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["StatusFile", "StatusWriter"]

logger = logging.getLogger(__name__)

WRITE_EVERY = 1.0
STALE_AFTER = 5.0
"""A status not rewritten for this long is from a listener that is gone."""


class StatusFile:
    """``spooled-dramatiq-<main pid>.status.json`` in the temporary directory."""

    def __init__(self, main_pid: int, directory: str | None = None) -> None:
        self.path = (
            Path(directory or tempfile.gettempdir()) / f"spooled-dramatiq-{main_pid}.status.json"
        )

    def write(self, status: dict[str, Any]) -> None:
        record = {**status, "listener_pid": os.getpid(), "written_at": time.time()}
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".spooled-status-")
        try:
            with os.fdopen(fd, "w") as file:  # mkstemp: mode 0600
                json.dump(record, file, default=str)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def read(self) -> dict[str, Any] | None:
        """The last status written, with ``status_age`` (s) and ``stale``; ``None`` if none."""
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        age = time.time() - float(record.pop("written_at", 0.0))
        record["status_age"] = round(age, 1)
        record["stale"] = age > STALE_AFTER
        return record

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class StatusWriter:
    """Writes ``status()`` to a :class:`StatusFile` every second until stopped."""

    def __init__(self, file: StatusFile, status: Callable[[], dict[str, Any]]) -> None:
        self.file = file
        self._status = status
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spooled-status-file", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop writing and remove the file (a clean stop leaves no status behind)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(WRITE_EVERY * 2)
        self.file.remove()

    def _run(self) -> None:
        warned = False
        while True:
            try:
                self.file.write(self._status())
            except Exception as exc:  # status is for operators: never break the listener
                if not warned:
                    warned = True
                    logger.warning("Spooled status file %s not written: %s", self.file.path, exc)
            if self._stop.wait(WRITE_EVERY):
                return
