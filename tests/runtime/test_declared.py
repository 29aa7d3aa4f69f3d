"""spooled_* options on tasks and actors → subscriptions, problems named by option."""

from __future__ import annotations

from spooled_integrations.runtime.declared import as_option, declared_subscription


def test_options_become_a_named_subscription_with_the_target() -> None:
    sub, problems = declared_subscription(
        {"spooled_events": ["JobCompleted"], "spooled_queue": "emails", "other": 1},
        kind="task",
        target="billing.done",
    )
    assert problems == []
    assert sub is not None
    assert sub.task == "billing.done"
    assert sub.name == "task:billing.done"
    assert sub.event_types == frozenset({"job.completed"})


def test_no_spooled_options_means_no_subscription() -> None:
    assert declared_subscription({"queue": "x"}, kind="actor", target="a") == (None, [])


def test_problems_use_the_option_names_and_suggest_fixes() -> None:
    sub, problems = declared_subscription(
        {"spooled_events": ["job.complete"], "spooled_qeue": "emails", "spooled_where": {"": 1}},
        kind="actor",
        target="notify",
    )
    assert sub is None
    text = "\n".join(problems)
    assert (
        "actor 'notify': spooled_qeue: unknown actor option (did you mean 'spooled_queue'?)" in text
    )
    assert "actor 'notify': spooled_events[0]: unknown event 'job.complete'" in text
    assert "did you mean 'job.completed'" in text


def test_narrowing_options_without_events_are_refused() -> None:
    sub, problems = declared_subscription({"spooled_queue": "emails"}, kind="task", target="t")
    assert sub is None
    assert problems == [
        "task 't': spooled_events: missing; the other spooled_* options only narrow it"
    ]


def test_as_option_rewrites_only_known_leading_fields() -> None:
    assert as_option("where.status: bad") == "spooled_where.status: bad"
    assert as_option("mystery: bad") == "mystery: bad"
