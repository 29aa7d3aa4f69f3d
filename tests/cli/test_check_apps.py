"""``spooled-integrations check --celery/--dramatiq``: real subprocesses, real apps.

The examples are loaded the way their READMEs run them (from their directory), and
deliberately broken apps written to a temporary directory show every boot problem at
once; nothing connects to Spooled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "examples"
API_KEY = "sk_live_check_apps_secret"
RULE_SECRET = "sk_test_in_a_rule_option"


def check(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOLED_")}
    full_env.pop("PYTHONPATH", None)  # the app must be found from the cwd, as celery -A does
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "spooled_integrations", "check", *args],
        check=False,
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(directory: Path, name: str, source: str) -> None:
    (directory / name).write_text(textwrap.dedent(source), encoding="utf-8")


def table_rows(stdout: str) -> list[list[str]]:
    """The routing table's rows (after the header and its dashes), split on 2+ spaces."""
    lines = stdout.split("\n\n", 1)[0].splitlines()[2:]
    return [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in lines]


# -- Celery ----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["celery_app", "celery_app.app:app"])
def test_celery_example_prints_its_routes(spec: str) -> None:
    result = check("--celery", spec, cwd=EXAMPLES, SPOOLED_API_KEY=API_KEY)
    assert result.returncode == 0, result.stderr
    assert table_rows(result.stdout) == [
        [
            "job.completed",
            "queue=emails, max_age=300s",
            "task:celery_app.tasks.on_email_sent (data)",
            "every_node",
            "[0] email-sent",
        ]
    ]
    assert f"Celery app {spec!r}: OK, 1 subscription(s), 1 route(s), 1 with a target" in (
        result.stdout
    )
    assert "listens to: ws wss://api.spooled.cloud/api/v1/ws" in result.stdout
    assert API_KEY not in result.stdout + result.stderr


GOOD_CELERY = """
    from celery import Celery

    app = Celery("goodproj", broker="memory://")
    app.conf.update(
        imports=["spooled_integrations.celery", "goodtasks"],
        spooled_transport="sse",
        spooled_subscriptions=[
            {"name": "receipts", "events": ["job.completed"], "queue": "emails",
             "task": "goodtasks.on_done", "options": {"headers": {"X-Api-Key": "@SECRET@"}}},
        ],
    )
""".replace("@SECRET@", RULE_SECRET)

GOOD_TASKS = """
    from goodproj import app

    @app.task(name="goodtasks.on_done")
    def on_done(event):
        return None

    @app.task(name="goodtasks.on_failed", spooled_events=["job.failed"],
              spooled_queue=["emails", "bulk"], spooled_delivery="every_node")
    def on_failed(event):
        return None
"""


def test_celery_config_rules_and_task_options_together(tmp_path: Path) -> None:
    write(tmp_path, "goodproj.py", GOOD_CELERY)
    write(tmp_path, "goodtasks.py", GOOD_TASKS)
    result = check(
        "--celery",
        "goodproj",
        cwd=tmp_path,
        SPOOLED_API_KEY=API_KEY,
        SPOOLED_BASE_URL="https://spooled.example.com",
    )
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert [row[0] for row in rows] == ["job.completed", "job.failed"]
    assert rows[0][1] == "queue=emails" and rows[0][3:] == ["once", "[0] receipts"]
    assert rows[0][2].startswith("task:goodtasks.on_done {")
    assert rows[1] == [
        "job.failed",
        "queue=bulk|emails",
        "task:goodtasks.on_failed",
        "every_node",
        "[1] task:goodtasks.on_failed",
    ]
    assert "listens to: sse https://spooled.example.com/api/v1/events" in result.stdout
    # spooled_enabled is not set and nothing called install(app): say so, still check
    assert "note: the listener is off for this app (default" in result.stdout
    assert "note: delivery='once' needs fleet coordination" in result.stdout
    output = result.stdout + result.stderr
    assert RULE_SECRET not in output and API_KEY not in output


BROKEN_CELERY = """
    from celery import Celery

    app = Celery("brokenproj", broker="memory://")
    app.conf.update(
        imports=["spooled_integrations.celery"],
        spooled_enabled=True,
        spooled_transprot="sse",
        spooled_subscriptions=[
            {"events": ["job.done"], "task": "brokenproj.nowhere",
             "options": {"headers": {"Authorization": "Bearer @SECRET@"}}},
        ],
    )

    @app.task(name="brokenproj.on_failed", spooled_events=["job.failed"],
              spooled_delivery="sometimes")
    def on_failed(event):
        return None
""".replace("@SECRET@", RULE_SECRET)


def test_broken_celery_app_lists_every_boot_problem(tmp_path: Path) -> None:
    write(tmp_path, "brokenproj.py", BROKEN_CELERY)
    result = check("--celery", "brokenproj", cwd=tmp_path)  # no credentials either
    assert result.returncode == 1
    assert result.stdout == ""
    warnings, _, listed = result.stderr.partition("Celery app 'brokenproj': ")
    # the boot's own warning comes first: the rule's option holds a token
    assert "warning: the Spooled setting spooled_subscriptions holds a secret" in warnings
    lines = listed.splitlines()
    assert lines[0] == f"{len(lines) - 1} problem(s)"
    problems = "\n".join(lines[1:])
    assert "spooled_transprot: unknown Spooled setting (did you mean 'spooled_transport'?)" in (
        problems
    )
    assert "no Spooled credentials" in problems
    assert "subscriptions[0].events[0]: unknown event 'job.done'" in problems
    assert "brokenproj.nowhere" in problems
    assert "task 'brokenproj.on_failed': spooled_delivery" in problems
    assert len(lines) - 1 >= 5
    assert RULE_SECRET not in result.stderr


def test_celery_app_that_cannot_be_imported(tmp_path: Path) -> None:
    write(tmp_path, "crashing.py", "raise RuntimeError('settings module exploded')\n")
    result = check("--celery", "crashing", cwd=tmp_path, SPOOLED_API_KEY=API_KEY)
    assert result.returncode == 1
    assert "cannot load Celery app 'crashing': RuntimeError: settings module exploded" in (
        result.stderr
    )
    missing = check("--celery", "no_such_module_here", cwd=tmp_path, SPOOLED_API_KEY=API_KEY)
    assert missing.returncode == 1
    assert "cannot load Celery app 'no_such_module_here'" in missing.stderr


# -- Dramatiq --------------------------------------------------------------------------


def test_dramatiq_example_prints_its_routes() -> None:
    example = EXAMPLES / "dramatiq_app"
    result = check("--dramatiq", "app", cwd=example, SPOOLED_API_KEY=API_KEY)
    assert result.returncode == 0, result.stderr
    assert table_rows(result.stdout) == [
        [
            "job.completed",
            "queue=emails, max_age=300s",
            "actor:on_email_sent (data)",
            "once",
            "[0] emails-done",
        ],
        ["job.failed", "-", "actor:on_job_failed", "once", "[1] actor:on_job_failed"],
    ]
    assert "Dramatiq broker 'app': OK, 2 subscription(s), 2 route(s), 2 with a target" in (
        result.stdout
    )
    assert "listens to: ws wss://api.spooled.cloud/api/v1/ws" in result.stdout
    assert "note: the listener runs in mode='fork'" in result.stdout
    assert API_KEY not in result.stdout + result.stderr


BROKEN_DRAMATIQ = """
    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    from spooled_integrations.dramatiq import SpooledMiddleware

    broker = StubBroker()
    broker.add_middleware(SpooledMiddleware(
        shutdown_timeout=-1,
        subscriptions=[{"events": ["job.completed"], "actor": "nobody_home",
                        "options": {"headers": {"X-Token": "@SECRET@"}}}],
    ))
    dramatiq.set_broker(broker)

    @dramatiq.actor(spooled_events=["job.done"])
    def on_done(event):
        return None
""".replace("@SECRET@", RULE_SECRET)


def test_broken_dramatiq_broker_lists_every_boot_problem(tmp_path: Path) -> None:
    write(tmp_path, "brokenbroker.py", BROKEN_DRAMATIQ)
    result = check("--dramatiq", "brokenbroker:broker", cwd=tmp_path, SPOOLED_API_KEY=API_KEY)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"Dramatiq broker 'brokenbroker:broker': {len(lines) - 1} problem(s)"
    problems = "\n".join(lines[1:])
    assert "shutdown_timeout" in problems
    assert "nobody_home" in problems
    assert "actor 'on_done': spooled_events" in problems and "'job.done'" in problems
    assert RULE_SECRET not in result.stderr and API_KEY not in result.stderr


def test_dramatiq_broker_without_the_middleware(tmp_path: Path) -> None:
    write(
        tmp_path,
        "plainbroker.py",
        """
        from dramatiq.brokers.stub import StubBroker

        broker = StubBroker()
        """,
    )
    result = check("--dramatiq", "plainbroker:broker", cwd=tmp_path, SPOOLED_API_KEY=API_KEY)
    assert result.returncode == 1
    assert "the broker has no SpooledMiddleware" in result.stderr


def test_one_source_at_a_time(tmp_path: Path) -> None:
    both = check("--celery", "a", "--dramatiq", "b", cwd=tmp_path)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    none = check(cwd=tmp_path)
    assert none.returncode == 2 and "one of the arguments" in none.stderr
