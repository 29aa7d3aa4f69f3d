"""A status file rewritten once a second, for probes and for other processes to read.

A process that can only look at files (a Kubernetes exec probe, a Dramatiq worker
process beside the fork that runs the listener) cannot call ``status()``. The runtime
writes its status as JSON, with ``written_at``, to a file once a second (atomically,
mode 0600) and removes it on a clean stop, so a missing or old file means "not running"
and a fresh one carries the ``health`` verdict. ``spooled-integrations health`` reads it.
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

__all__ = ["STALE_AFTER", "WRITE_EVERY", "StatusFile", "StatusWriter", "check_health_file"]

logger = logging.getLogger(__name__)

WRITE_EVERY = 1.0
STALE_AFTER = 5.0
"""A status not rewritten for this long is from a writer that is gone."""


class StatusFile:
    """One JSON status file; ``pid_key`` names the writer's pid in the record."""

    pid_key = "pid"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def write(self, status: dict[str, Any]) -> None:
        record = {**status, self.pid_key: os.getpid(), "written_at": time.time()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".spooled-status-")
        try:
            with os.fdopen(fd, "w") as file:  # mkstemp: mode 0600
                json.dump(record, file, default=str)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def read(self, stale_after: float = STALE_AFTER) -> dict[str, Any] | None:
        """The last status written, with ``status_age`` (s) and ``stale``; ``None`` if none."""
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        try:
            age = time.time() - float(record.pop("written_at", 0.0))
        except (TypeError, ValueError):
            return None
        record["status_age"] = round(age, 1)
        record["stale"] = age > stale_after
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


def check_health_file(path: str | None) -> str | None:
    """A health file setting names a file: not empty, not a directory (trailing slash)."""
    if path is None:
        return None
    if not path.strip():
        raise ValueError("expected a file path, got an empty string")
    if path.endswith(("/", os.sep)):
        raise ValueError("expected a file path, not a directory")
    return path
