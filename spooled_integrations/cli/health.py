"""``spooled-integrations health``: exit 0 when the listener's health file says healthy.

For Kubernetes exec probes (and any supervisor that runs a command). The listener
rewrites its ``health_file`` once a second while it runs and removes it on a clean stop,
so this command only reads a file: it works from any process of the container, needs no
credentials and makes no network call.

Readiness (the default) asks "is the listener connected": a fresh file whose ``health``
is one of ``--allow`` (default ``connected``). Liveness (``--liveness``) asks "is the
process alive": a fresh file whatever the health, except ``stopped``, because
restarting a process does not fix a refused key or an unreachable server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["HEALTHS", "LIVE", "add_arguments", "run", "verdict"]

HEALTHS = ("connected", "degraded", "connecting", "reconnecting", "refused", "stopped")
"""Every value of ``SpooledRuntime.health``."""
LIVE = ("connected", "degraded", "connecting", "reconnecting", "refused")
"""What ``--liveness`` accepts: the listener runs, whether or not it is connected."""
DEFAULT_MAX_AGE = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file",
        default=os.environ.get("SPOOLED_HEALTH_FILE"),
        help="the listener's health_file (default: $SPOOLED_HEALTH_FILE, as the worker reads it)",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=DEFAULT_MAX_AGE,
        metavar="SECONDS",
        help="a file not rewritten for this long is from a dead or hung process "
        "(default: %(default)g)",
    )
    parser.add_argument(
        "--allow",
        action="append",
        choices=HEALTHS,
        default=[],
        metavar="HEALTH",
        help="a health that counts as healthy besides 'connected'; repeat for more "
        f"({', '.join(HEALTHS)})",
    )
    parser.add_argument(
        "--liveness",
        action="store_true",
        help=f"healthy while the listener runs at all ({', '.join(LIVE)})",
    )
    parser.add_argument("--json", action="store_true", help="print the whole status as JSON")


def verdict(
    record: dict[str, object] | None, *, allowed: frozenset[str], max_age: float
) -> tuple[bool, str]:
    """``(healthy, one line saying why)`` for a record read from a health file."""
    if record is None:
        return False, "no health file (the listener is not running, or stopped)"
    health = str(record.get("health"))
    age = record.get("status_age")
    pid = record.get("pid", record.get("listener_pid"))  # a Dramatiq fork-mode status file
    if not isinstance(age, (int, float)) or age > max_age:
        return False, f"stale: pid {pid} last wrote it {age} s ago (max {max_age:g} s)"
    who = f"pid {pid}, written {age} s ago"
    if health not in allowed:
        error = record.get("last_error")
        degraded_by = record.get("degraded_by")
        reasons = degraded_by if isinstance(degraded_by, list) and degraded_by else [error]
        detail = "; ".join(str(reason) for reason in reasons if reason)
        detail = f": {detail}" if detail else ""
        return False, f"{health} ({who}){detail}"
    return True, f"{health} ({who})"


def run(args: argparse.Namespace) -> int:
    from spooled_integrations.runtime.health_file import StatusFile

    if not args.file:
        print(
            "spooled-integrations health: give --file or set SPOOLED_HEALTH_FILE "
            "(the listener's health_file setting)",
            file=sys.stderr,
        )
        return 2
    allowed = frozenset(LIVE if args.liveness else ("connected", *args.allow))
    record = StatusFile(args.file).read(stale_after=args.max_age)
    healthy, reason = verdict(record, allowed=allowed, max_age=args.max_age)
    if args.json:
        print(json.dumps({"healthy": healthy, "reason": reason, "status": record}, default=str))
    else:
        print(f"{'healthy' if healthy else 'unhealthy'}: {reason}", flush=True)
    return 0 if healthy else 1
