# mypy: allow-untyped-calls
# (dramatiq.cli is unannotated.)
"""The ``dramatiq`` command line of this process, read the way ``dramatiq`` reads it.

``dramatiq.cli.main()`` parses ``sys.argv`` with the public
``dramatiq.cli.make_argument_parser()`` (and reloads by re-executing ``sys.argv``), and
:mod:`multiprocessing` gives every worker and fork process the main process's
``sys.argv`` (inherited under fork, restored under spawn and forkserver). So a worker or
fork process finds the broker, modules and paths of its run with the same parser. A
wrapper that calls ``dramatiq.cli.main(args)`` with arguments of its own leaves no such
trace: there the fork needs ``SPOOLED_DRAMATIQ_BROKER`` (see :mod:`.fork`).
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, NoReturn

import dramatiq

__all__ = ["cli_args", "is_cli_worker"]

# Options that make ``dramatiq`` print and exit: a running process never has them.
_EXITING_OPTIONS = frozenset({"-h", "--help", "--version"})


class _NotACommandLine(Exception):
    pass


def _refuse(message: str) -> NoReturn:
    raise _NotACommandLine(message)


def cli_args(argv: list[str] | None = None) -> argparse.Namespace | None:
    """``argv`` (default ``sys.argv[1:]``) parsed as a ``dramatiq`` command line, or ``None``.

    Never prints, exits or imports anything of the user's.
    """
    from dramatiq.cli import make_argument_parser

    argv = sys.argv[1:] if argv is None else argv
    if _EXITING_OPTIONS.intersection(argv):
        return None
    parser: argparse.ArgumentParser = make_argument_parser()
    parser.error = _refuse  # type: ignore[method-assign]  # raise instead of print + exit
    try:
        args = parser.parse_args(argv)
    except (_NotACommandLine, SystemExit):
        return None
    return args if isinstance(getattr(args, "broker", None), str) else None


def is_cli_worker(broker: dramatiq.Broker) -> bool:
    """True in a worker process of a ``dramatiq`` run whose command line names ``broker``.

    Only modules this process already imported are looked at (a worker imported its
    broker before it booted), so a command line of some other program imports nothing.
    """
    args = cli_args()
    if args is None:
        return False
    module_name, _, attribute = str(args.broker).partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        return False
    found: Any = None
    if attribute:
        try:
            found = functools.reduce(getattr, attribute.split("."), module)
        except AttributeError:
            return False
    if isinstance(found, dramatiq.Broker):
        return found is broker
    # ``module`` or ``module:setup_function``: dramatiq then uses the global broker.
    return dramatiq.get_broker() is broker
