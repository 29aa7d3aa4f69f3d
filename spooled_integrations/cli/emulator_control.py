"""``spooled-integrations emulator publish|job``: drive a running CLI emulator over HTTP.

The emulator started by ``spooled-integrations emulator`` runs in another process, so
its Python methods are out of reach. These subcommands call its HTTP surface instead:
``POST /_emulator/publish`` and ``POST /_emulator/jobs/{id}/status`` (emulator-only
controls, no login) and the REST ``POST /api/v1/jobs`` (after a login with the API
key, as a producer would). ``job create`` prints the new job's id; the others print
the JSON answer on one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["DEFAULT_URL", "add_subcommands", "parse_field", "run"]

DEFAULT_URL = "http://127.0.0.1:8787"
"""Where ``spooled-integrations emulator`` listens without ``--host``/``--port``."""
STATUSES = ("pending", "scheduled", "processing", "completed", "failed", "deadletter", "cancelled")


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    """``publish`` and ``job create|status`` under ``emulator`` (none: run the emulator)."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    publish = actions.add_parser(
        "publish",
        help="send one event to every listener of a running emulator",
        description="Send one event, as the backend would, to every listener of a running "
        "emulator (POST /_emulator/publish).",
    )
    publish.add_argument("type", help="event type, any spelling: job.completed, JobCompleted")
    publish.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an event field; VALUE is read as JSON when it is JSON (5, true, {...}), "
        "else as text; repeat for more",
    )
    _add_url(publish)

    job = actions.add_parser(
        "job",
        help="create a job or change its status (events follow)",
        description="Create a job or change its status; the emulator publishes the events "
        "the hosted service sends for that.",
    )
    verbs = job.add_subparsers(dest="verb", metavar="VERB", required=True)
    create = verbs.add_parser(
        "create", help="create a pending job (POST /api/v1/jobs); prints its id"
    )
    create.add_argument("queue", help="queue name")
    create.add_argument("--payload", default="{}", help="job payload as JSON (default: {})")
    create.add_argument("--priority", type=int, default=0, help="priority (default: 0)")
    create.add_argument(
        "--api-key",
        default=os.environ.get("SPOOLED_API_KEY"),
        help="the key the emulator accepts, printed at its start (default: $SPOOLED_API_KEY)",
    )
    _add_url(create)
    status = verbs.add_parser(
        "status", help="move a job to a status (POST /_emulator/jobs/{id}/status)"
    )
    status.add_argument("job_id", help="the id `job create` printed")
    status.add_argument("status", choices=STATUSES, metavar="STATUS", help=", ".join(STATUSES))
    status.add_argument("--error", help="the error text of a failed or dead-lettered job")
    _add_url(status)


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("SPOOLED_EMULATOR_URL", DEFAULT_URL),
        help=f"the running emulator's base URL (default: $SPOOLED_EMULATOR_URL or {DEFAULT_URL})",
    )


def parse_field(text: str) -> tuple[str, Any]:
    """``name=value`` with the value read as JSON when it is JSON, else as text."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--field {text!r}: expected NAME=VALUE")
    try:
        return name.strip(), json.loads(value)
    except ValueError:
        return name.strip(), value


def run(args: argparse.Namespace) -> int:
    import httpx

    url = args.url.rstrip("/")
    try:
        with httpx.Client(base_url=url, timeout=10.0) as http:
            if args.action == "publish":
                fields = dict(parse_field(text) for text in args.field)
                answer = http.post("/_emulator/publish", json={"type": args.type, "data": fields})
            elif args.verb == "create":
                answer = _create_job(http, args)
            else:
                body = {"status": args.status}
                if args.error is not None:
                    body["error"] = args.error
                answer = http.post(f"/_emulator/jobs/{args.job_id}/status", json=body)
    except ValueError as exc:
        print(f"spooled-integrations emulator {args.action}: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(
            f"spooled-integrations emulator {args.action}: no emulator answered at {url} "
            f"({type(exc).__name__}); start one with `spooled-integrations emulator`",
            file=sys.stderr,
        )
        return 1
    if answer.is_error:
        print(f"HTTP {answer.status_code}: {answer.text}", file=sys.stderr)
        return 1
    created = args.action == "job" and args.verb == "create"
    print(answer.json()["id"] if created else answer.text, flush=True)
    return 0


def _create_job(http: Any, args: argparse.Namespace) -> Any:
    if not args.api_key:
        raise ValueError("give --api-key (printed by the emulator) or set SPOOLED_API_KEY")
    try:
        payload = json.loads(args.payload)
    except ValueError:
        raise ValueError("--payload: expected JSON text") from None
    login = http.post("/api/v1/auth/login", json={"api_key": args.api_key})
    if login.is_error:
        return login
    token = login.json()["access_token"]
    return http.post(
        "/api/v1/jobs",
        json={"queue_name": args.queue, "payload": payload, "priority": args.priority},
        headers={"Authorization": f"Bearer {token}"},
    )
