"""``spooled-integrations emulator``: run the local Spooled emulator until SIGINT/SIGTERM.

``emulator publish`` and ``emulator job`` drive a running one (see
:mod:`~spooled_integrations.cli.emulator_control`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from spooled_integrations.cli import emulator_control

__all__ = ["add_arguments", "run"]

_INTERVALS = (
    ("ping_interval", 30.0, "WebSocket Ping envelope interval"),
    ("health_interval", 10.0, "/events system.health interval"),
    ("job_poll_interval", 2.0, "/events/jobs/{id} poll interval"),
    ("queue_poll_interval", 5.0, "/events/queues/{name} poll interval"),
    ("keepalive_interval", 15.0, "SSE ': ping' after this much silence"),
    ("max_stream_duration", 1800.0, "SSE bodies end after this long"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8787, help="port; 0: any free port (default: %(default)s)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="behave like the public backend source instead of production "
        "(default: production-like)",
    )
    parser.add_argument(
        "--api-key", help="API key to accept (default: a new sk_test_ key, printed at start)"
    )
    parser.add_argument("--jwt-secret", help="HS256 secret, at least 32 bytes (default: random)")
    for name, default, help_text in _INTERVALS:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=default,
            metavar="SECONDS",
            help=f"{help_text} (default: {default:g})",
        )
    parser.epilog = (
        "With an ACTION, drive a running emulator instead: "
        "'emulator publish job.completed --field job_id=j1', "
        "'emulator job create emails --api-key KEY', 'emulator job status ID completed' "
        "(see 'emulator publish -h', 'emulator job -h')."
    )
    emulator_control.add_subcommands(parser)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None):
        return emulator_control.run(args)
    try:
        from spooled_integrations.testing.emulator import Emulator
    except ImportError as exc:
        print(
            f"the emulator needs the testing extra ({exc.name} is missing): "
            "pip install 'spooled-integrations[testing]'",
            file=sys.stderr,
        )
        return 2
    intervals = {name: getattr(args, name) for name, _, _ in _INTERVALS}
    try:
        emulator = Emulator(
            strict=args.strict,
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            jwt_secret=args.jwt_secret,
            **intervals,
        )
        emulator.start()
    except (OSError, ValueError) as exc:
        print(f"spooled-integrations emulator: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        mode = "strict (backend source)" if args.strict else "default (production-like)"
        print(f"Spooled emulator listening on {emulator.base_url}")
        print(f"  WebSocket: {emulator.ws_url}")
        print(f"  API key:   {emulator.api_key}")
        print(f"  mode:      {mode}")
        print(
            f"Drive it: spooled-integrations emulator publish job.completed --field job_id=j1 "
            f"--url {emulator.base_url}"
        )
        print("Press Ctrl+C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("Spooled emulator stopped.", flush=True)
    return 0
