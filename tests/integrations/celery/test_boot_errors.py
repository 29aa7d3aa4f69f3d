"""A real ``celery worker`` with many configuration mistakes reports them all at its
first boot, in one ``ImproperlyConfigured``: settings, rules, targets, task options.

Before issue 16 a config with six mistakes reported three; the unknown task, the bad
``options.delay`` and the ``actor`` rule only showed after the next restart, because
the targets of a rule set with other problems were never checked.
"""

from __future__ import annotations

import re

import pytest

from spooled_integrations.testing import Emulator

from .conftest import StartWorker

RULES = [
    {"name": "typo-event", "events": ["job.complete"], "task": "spooled_testapp.record"},
    {"name": "unknown-task", "events": ["job.failed"], "task": "spooled_testapp.recrod"},
    {
        "name": "bad-delay",
        "events": ["job.failed"],
        "task": "spooled_testapp.record",
        "options": {"delay": 5},
    },
    {"name": "actor-rule", "events": ["job.failed"], "actor": "record_failure"},
    {
        "name": "bad-delivery",
        "events": ["job.failed"],
        "task": "spooled_testapp.record",
        "delivery": "sometimes",
        "options": {"countdown": -1},
    },
]
MISTAKES = {
    "bad setting value": "spooled_queue_size: Input should be greater than or equal to 1, got 0",
    "bad transport": "spooled_transport: must be 'ws' or 'sse', got 'tcp'",
    "typo in a key": "spooled_subscription: unknown Spooled setting (did you mean "
    "'spooled_subscriptions'?)",
    "password without its URL": "spooled_coordination_password: is set but no coordination is",
    "bad event name": "subscriptions[0] (name='typo-event').events[0]: unknown event "
    "'job.complete' (did you mean 'job.completed'?)",
    "unknown task": "subscriptions[1] (name='unknown-task').task: no task named "
    "'spooled_testapp.recrod'",
    "bad options.delay": "subscriptions[2] (name='bad-delay').options.delay: unknown Celery "
    "option (Celery delays with 'countdown' (seconds), not 'delay')",
    "an actor rule on Celery": "subscriptions[3] (name='actor-rule').actor:",
    "bad delivery": "subscriptions[4] (name='bad-delivery').delivery: Input should be 'once' "
    "or 'every_node', got 'sometimes'",
    "bad option of a rule with a bad field": "subscriptions[4] (name='bad-delivery')"
    ".options.countdown: must be a number of seconds >= 0",
}


@pytest.mark.parametrize("mode", ["imports", "install", "django"])
def test_every_mistake_is_reported_at_the_first_boot_in_one_error(
    mode: str, emulator: Emulator, start_worker: StartWorker
) -> None:
    worker = start_worker(
        "memory://",
        emulator,
        mode=mode,
        spooled_queue_size=0,
        spooled_transport="tcp",
        spooled_subscription=[],
        spooled_coordination_password="pw",
        spooled_subscriptions=RULES,
    )
    code = worker.proc.wait(60)
    output = worker.output()
    assert code != 0, output
    assert " ready." not in output
    assert emulator.connections_accepted("ws") == 0
    headers = re.findall(r"(\d+) problem\(s\) in the Spooled settings", output)
    assert len(set(headers)) == 1, output  # one error (a traceback may print it twice)
    django = mode == "django"
    expected = {what: _django_spelling(text) if django else text for what, text in MISTAKES.items()}
    missing = [what for what, text in expected.items() if text not in output]
    assert not missing, f"{missing} not reported:\n{output}"
    assert int(headers[0]) == len(MISTAKES), output


def _django_spelling(text: str) -> str:
    """``spooled_x: ...`` as the Django namespace names it: ``spooled_x (CELERY_SPOOLED_X): ...``."""
    key, _, rest = text.partition(": ")
    if key.startswith("subscriptions["):
        return f"spooled_subscriptions (CELERY_SPOOLED_SUBSCRIPTIONS): {text}"
    if key == "spooled_subscription":
        return f"CELERY_SPOOLED_SUBSCRIPTION: {rest}"
    return f"{key} (CELERY_{key.upper()}): {rest}"


def test_a_bad_enabled_flag_does_not_hide_the_other_problems(
    emulator: Emulator, start_worker: StartWorker
) -> None:
    worker = start_worker(
        "memory://",
        emulator,
        mode="install",
        spooled_enabled="maybe",
        spooled_queue_size=0,
        spooled_subscriptions=RULES[1:2],
    )
    assert worker.proc.wait(60) != 0
    output = worker.output()
    assert "3 problem(s) in the Spooled settings" in output, output
    assert "spooled_enabled: expected true/false/1/0/yes/no/on/off, got 'maybe'" in output
    assert "spooled_queue_size:" in output
    assert "no task named 'spooled_testapp.recrod'" in output


def test_a_faulty_task_option_rule_has_its_options_checked_too() -> None:
    """The exact step a worker builds: a task rule with a bad field still has its
    ``spooled_options`` checked, with the rule problems and the settings problems."""
    from types import SimpleNamespace

    from celery import Celery

    from spooled_integrations.celery import install
    from spooled_integrations.celery.bootstep import SpooledStep
    from spooled_integrations.celery.settings import SpooledImproperlyConfigured

    app = Celery("boot-errors", broker="memory://", set_as_current=False)
    app.conf.update(spooled_api_key="sk_test_boot", spooled_queue_size=0)

    @app.task(
        shared=False,
        name="app.on_failed",
        spooled_events=["job.faild"],
        spooled_delivery="sometimes",
        spooled_options={"delay": 5, "priority": 300},
    )
    def on_failed(payload: object) -> None: ...

    install(app)
    with pytest.raises(SpooledImproperlyConfigured) as info:
        SpooledStep(SimpleNamespace(app=app, hostname="node@host", pool_cls=None))
    assert info.value.problems == [
        "task 'app.on_failed': spooled_delivery: Input should be 'once' or 'every_node', "
        "got 'sometimes'",
        "task 'app.on_failed': spooled_events[0]: unknown event 'job.faild' (did you mean "
        "'job.failed'?)",
        "task 'app.on_failed': spooled_options.delay: unknown Celery option (Celery delays "
        "with 'countdown' (seconds), not 'delay')",
        "task 'app.on_failed': spooled_options.priority: must be an integer between 0 and 255",
        "spooled_queue_size: Input should be greater than or equal to 1, got 0",
    ]
