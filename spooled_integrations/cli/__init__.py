"""``spooled-integrations`` command line: listen, emulator, check, health, demo.

Each subcommand lives in its own module. Building the parser imports every one (each
declares its own arguments); what a subcommand needs beyond the package itself
(Celery, the emulator and aiohttp) is imported inside its ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

# subcommand -> (module, one-line help); each module has ``add_arguments`` and ``run``.
_COMMANDS: dict[str, tuple[str, str]] = {
    "listen": ("spooled_integrations.cli.listen", "print Spooled events as they arrive"),
    "emulator": ("spooled_integrations.cli.emulator", "run the local Spooled emulator"),
    "check": (
        "spooled_integrations.cli.check",
        "validate a subscription file, or the routes of a Celery app or Dramatiq broker",
    ),
    "health": (
        "spooled_integrations.cli.health",
        "exit 0 when the listener's health file says healthy, 1 when not (for probes)",
    ),
    "demo": ("spooled_integrations.cli.demo", "run a Celery worker on the embedded emulator"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spooled-integrations")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in _COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        try:
            importlib.import_module(module_name).add_arguments(sub)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            sub.set_defaults(_missing=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "_missing", False):
        print(f"spooled-integrations {args.command}: not available in this build", file=sys.stderr)
        return 2
    try:
        result: int = importlib.import_module(args._module).run(args)
    except BrokenPipeError:  # `... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result
