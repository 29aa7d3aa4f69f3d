"""The real ``dramatiq`` command with many configuration mistakes stops at its first
boot with one ``SpooledBootError`` listing them all: settings, rules, actors, options.

Bad settings no longer raise when the middleware is built (before the actors are
declared), so they are listed with the rule and actor problems instead of hiding them
until the next start.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from spooled_integrations.testing import Emulator

from .conftest import DramatiqRun

RunDramatiq = Callable[..., DramatiqRun]

RULES = """
[[subscription]]
name = "typo-event"
events = ["job.complete"]
actor = "record_failure"

[[subscription]]
name = "unknown-actor"
events = ["job.failed"]
actor = "record_failur"

[[subscription]]
name = "bad-delay"
events = ["job.failed"]
actor = "record_failure"
options = { delay = "soon" }

[[subscription]]
name = "task-rule"
events = ["job.failed"]
task = "billing.on_failed"

[[subscription]]
name = "bad-delivery"
events = ["job.failed"]
actor = "record_failure"
delivery = "sometimes"
options = { queue_name = "nowhere" }
"""

MISTAKES = {
    "bad setting value": "SPOOLED_QUEUE_SIZE (environment): Input should be greater than or "
    "equal to 1, got '0'",
    "bad transport": "SPOOLED_TRANSPORT (environment): Input should be 'ws' or 'sse', got 'tcp'",
    "password without its URL": "SPOOLED_COORDINATION_PASSWORD (environment): is set but no "
    "coordination is",
    "bad event name": "subscriptions[0] (name='typo-event').events[0]: unknown event "
    "'job.complete'",
    "unknown actor": "subscriptions[1] (name='unknown-actor').actor: no actor 'record_failur'",
    "bad options.delay": "subscriptions[2] (name='bad-delay').options.delay: must be a number "
    "of milliseconds",
    "a task rule on Dramatiq": "subscriptions[3] (name='task-rule').task: 'billing.on_failed' "
    "is a Celery target",
    "bad delivery": "subscriptions[4] (name='bad-delivery').delivery: Input should be 'once' "
    "or 'every_node', got 'sometimes'",
    "bad option of a rule with a bad field": "subscriptions[4] (name='bad-delivery')"
    ".options.queue_name: queue 'nowhere' is not declared",
}


def test_every_mistake_is_reported_at_the_first_boot_in_one_error(
    spooled_emulator: Emulator, run_dramatiq: RunDramatiq, tmp_path: Path, unique_name: str
) -> None:
    emulator = spooled_emulator
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    env = {
        "SPOOLED_TEST_BROKER": "stub",
        "SPOOLED_TEST_QUEUE": unique_name,
        "SPOOLED_BASE_URL": emulator.base_url,
        "SPOOLED_API_KEY": emulator.api_key,
        "SPOOLED_SUBSCRIPTIONS": str(rules),
        "SPOOLED_QUEUE_SIZE": "0",
        "SPOOLED_TRANSPORT": "tcp",
        "SPOOLED_COORDINATION_PASSWORD": "pw",
    }
    run = run_dramatiq("cli_app", env, processes=1)
    code = run.process.wait(60)
    log = run.log_text()
    assert code != 0, log
    assert emulator.connections_accepted("ws") == 0
    headers = re.findall(r"(\d+) problem\(s\) in the Spooled settings", log)
    assert len(set(headers)) == 1, log
    missing = [what for what, text in MISTAKES.items() if text not in log]
    assert not missing, f"{missing} not reported:\n{log}"
    assert int(headers[0]) == len(MISTAKES), log


def test_a_faulty_actor_option_rule_has_its_options_checked_too() -> None:
    """A worker's own boot (``Worker.start`` emits ``before_worker_boot``): an actor rule
    with a bad field still has its options checked, next to a bad setting given to the
    middleware (which no longer raises when it is built)."""
    import dramatiq
    import pytest
    from dramatiq.brokers.stub import StubBroker

    from spooled_integrations.dramatiq import SpooledBootError, SpooledMiddleware

    broker = StubBroker()
    middleware = SpooledMiddleware(api_key="sk_test_boot", queue_size=0, mode="every_process")
    broker.add_middleware(middleware)

    @dramatiq.actor(
        broker=broker,
        spooled_events=["job.faild"],
        spooled_payload="all",
        spooled_options={"delay": "soon"},
    )
    def on_failed(event: object) -> None: ...

    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=1)
    try:
        with pytest.raises(SpooledBootError) as info:
            worker.start()
    finally:
        worker.stop(timeout=1000)
        broker.close()
    assert info.value.problems == [
        "queue_size= (argument): Input should be greater than or equal to 1, got 0",
        "actor 'on_failed': spooled_payload: Input should be 'event' or 'data', got 'all'",
        "actor 'on_failed': spooled_events[0]: unknown event 'job.faild' (did you mean "
        "'job.failed'?)",
        "actor 'on_failed': spooled_options.delay: must be a number of milliseconds >= 0, "
        "got 'soon'",
    ]


def test_the_problems_are_listed_once_per_run_without_tracebacks(
    spooled_emulator: Emulator, run_dramatiq: RunDramatiq, unique_name: str
) -> None:
    env = {
        "SPOOLED_TEST_BROKER": "stub",
        "SPOOLED_TEST_QUEUE": unique_name,
        "SPOOLED_BASE_URL": spooled_emulator.base_url,
        "SPOOLED_API_KEY": spooled_emulator.api_key,
        "SPOOLED_QUEUE_SIZE": "0",
        "SPOOLED_TRANSPORT": "tcp",
    }
    run = run_dramatiq("cli_app", env, processes=3)
    code = run.process.wait(60)
    log = run.log_text()
    assert code != 0, log
    assert log.count("2 problem(s) in the Spooled settings") == 1, log  # one process lists them
    assert "listed by another worker process of this run" in log, log  # the others say so
    assert "Traceback" not in log, log
    assert spooled_emulator.api_key not in log
