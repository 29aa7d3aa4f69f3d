"""What the ``dramatiq`` command knows about the current process.

Dramatiq passes nothing to fork functions and tells middleware nothing about how the
worker was started, but both facts sit on the call stack: ``dramatiq.cli.worker_process``
boots workers and ``dramatiq.cli.fork_process`` calls fork functions with the parsed
command line (``args.broker``, ``args.modules``) as a local. Reading that frame gives
exactly what the workers were started with, however ``dramatiq.cli.main`` was invoked
(the ``dramatiq`` script, ``python -m dramatiq``, django-dramatiq, a wrapper), with
fork, spawn or forkserver.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

__all__ = ["cli_fork_args", "in_cli_worker_process"]

_CLI_MODULE = "dramatiq.cli"


def _find_frame(function: str) -> FrameType | None:
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == function and frame.f_globals.get("__name__") == _CLI_MODULE:
            return frame
        frame = frame.f_back
    return None


def in_cli_worker_process() -> bool:
    """True inside a worker process started by the ``dramatiq`` command.

    Call it from a worker boot hook, which runs on the thread that booted the worker.
    """
    return _find_frame("worker_process") is not None


def cli_fork_args() -> Any | None:
    """The ``dramatiq`` command line of this fork process, or ``None`` outside one.

    Call it from the fork function itself (on the main thread of the fork).
    """
    frame = _find_frame("fork_process")
    if frame is None:
        return None
    args = frame.f_locals.get("args")
    return args if hasattr(args, "broker") else None
