"""The registry of target kinds, and subscriptions naming a registered kind."""

from __future__ import annotations

from typing import Any

import pytest

from spooled_integrations.errors import PublishError, SubscriptionError
from spooled_integrations.protocol import Event
from spooled_integrations.runtime import (
    RecordingPublisher,
    Subscription,
    load_subscriptions,
    targets,
)
from spooled_integrations.runtime.publisher import (
    RetryPolicy,
    TargetPublisher,
    publish_with_retry,
)
from spooled_integrations.runtime.targets import register_target_kind, target_kind, target_kinds


@pytest.fixture
def job_kind(monkeypatch: pytest.MonkeyPatch) -> targets.TargetKind:
    """``job`` registered as an RQ framework module would, for this test only."""
    monkeypatch.setattr(targets, "_kinds", dict(targets._kinds))
    return register_target_kind("job", description="RQ job function", framework="RQ")


def problems_of(source: Any) -> list[str]:
    with pytest.raises(SubscriptionError) as info:
        load_subscriptions(source)
    return info.value.problems


def test_task_and_actor_are_known_without_their_framework():
    assert set(target_kinds()) >= {"task", "actor"}
    assert target_kind("task").framework == "Celery"  # type: ignore[union-attr]
    sub = Subscription(events="job.completed", task="billing.on_done")
    assert (sub.target_kind, sub.target_name, sub.target) == (
        "task",
        "billing.on_done",
        "task:billing.on_done",
    )
    assert (sub.task, sub.actor) == ("billing.on_done", None)
    assert Subscription(events="job.completed", actor="a").actor == "a"


def test_a_registered_kind_is_a_subscription_key(job_kind):
    assert job_kind.name == "job"
    sub = load_subscriptions([{"events": "job.failed", "job": "app.jobs.on_failed"}])[0]
    assert sub.target == "job:app.jobs.on_failed"
    assert (sub.task, sub.actor) == (None, None)
    # the pair may be given directly too, and compares equal
    assert sub == Subscription(
        events="job.failed", target_kind="job", target_name="app.jobs.on_failed"
    )


def test_registration_is_idempotent_per_framework_and_guarded(job_kind):
    assert register_target_kind("job", description="RQ job", framework="RQ").description == "RQ job"
    shared = register_target_kind("job", description="a job", framework="Huey")
    assert shared.framework == "RQ or Huey"  # one key, several frameworks
    assert register_target_kind("job", description="a job", framework="RQ") == shared
    with pytest.raises(ValueError, match="subscription field"):
        register_target_kind("queue", description="x", framework="X")
    with pytest.raises(ValueError, match="identifier"):
        register_target_kind("Job-Name", description="x", framework="X")


def test_unknown_keys_and_kinds_are_reported_with_the_others():
    assert problems_of(
        [
            {"events": ["job.completed"], "taks": "t"},
            {"events": ["job.completed"], "function": "f"},
            {"events": ["job.completed"], "target_kind": "jbo", "target_name": "f"},
            {"events": ["job.completed"], "task": "t", "actor": "a", "queue": 5},
            {"events": ["job.completed"], "task": 5},
            {"events": ["job.completed"], "task": "t", "target_name": "u"},
            {"events": ["job.completed"], "target_name": "u"},
        ]
    ) == [
        "subscriptions[0].taks: unknown field (did you mean 'task'?)",
        "subscriptions[1].function: unknown field (a target is named by its kind: actor, task; a "
        "framework module registers its own kind when it is imported)",
        "subscriptions[2].target_kind: unknown target kind 'jbo'; registered: actor, task (a "
        "framework module registers its kind when it is imported)",
        "subscriptions[3].queue: must be a string or a list of strings, got 5",
        "subscriptions[3].task/actor: give one target, not both",
        "subscriptions[4].task: must be a string, got int",
        "subscriptions[5].task/target_name: give one target, not both",
        "subscriptions[6].target_kind/target_name: give both or neither",
    ]


class _JobPublisher(TargetPublisher):
    name = "rq"
    kind = "job"

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def check(self, subscription: Subscription, name: str) -> list[str]:
        return [
            f"options.{key}: unknown RQ option" for key in subscription.options if key != "timeout"
        ]

    def send(self, subscription: Subscription, name: str, payload: Any, event: Event) -> None:
        self.sent.append((name, payload))


def test_the_publisher_base_serves_one_kind(job_kind, make_event):
    publisher = _JobPublisher()
    subs = load_subscriptions(
        [
            {"events": "job.failed", "job": "f", "options": {"timeout": 5, "ttl": 1}},
            {"name": "c", "events": "job.failed", "task": "t"},
            {"events": "job.failed"},
        ]
    )
    assert publisher.validate(subs) == [
        "subscriptions[0].options.ttl: unknown RQ option",
        "subscriptions[1] (name='c').task: 't' is a Celery target; a RQ worker publishes to job "
        "targets (use 'job')",
    ]
    event = make_event("JobFailed", job_id="j1")
    publisher.publish(subs[0], {"x": 1}, event)
    assert publisher.sent == [("f", {"x": 1})]
    with pytest.raises(PublishError, match="sends to job targets, not to task:t"):
        publisher.publish(subs[1], {}, event)


def test_publish_with_retry_is_shared_by_every_publisher(make_event):
    publisher = RecordingPublisher(fail_times=2)
    sub = Subscription(events="job.failed", task="t")
    event = make_event("JobFailed", job_id="j1")
    retries: list[tuple[int, float]] = []
    waits: list[float] = []
    policy = RetryPolicy(attempts=5, initial_delay=0.5, max_delay=0.8, jitter=0)
    outcome = publish_with_retry(
        publisher,
        sub,
        {},
        event,
        policy,
        wait=lambda s: waits.append(s) is not None,
        on_retry=lambda n, delay, error: retries.append((n, delay)),
    )
    assert outcome.published and outcome.attempts == 3
    assert retries == [(1, 0.5), (2, 0.8)] and waits == [0.5, 0.8]
    publisher.fail_next(9)
    given_up = publish_with_retry(publisher, sub, {}, event, policy, wait=lambda s: False)
    assert (given_up.published, given_up.attempts, given_up.abandoned) == (False, 5, False)
    assert given_up.error == "PublishError: RecordingPublisher told to fail"
    stopped = publish_with_retry(publisher, sub, {}, event, policy, wait=lambda s: True)
    assert (stopped.attempts, stopped.abandoned) == (1, True)
