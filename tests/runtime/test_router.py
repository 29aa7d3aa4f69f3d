"""The router matches exactly: globs, aliases, filters, where; unknown types only hit '*'."""

from __future__ import annotations

import pytest

from spooled_integrations.protocol import Event
from spooled_integrations.runtime import Router, Subscription


def names(router: Router, event) -> list[str | None]:
    return [sub.name for sub in router.match(event)]


def test_match_by_name_alias_glob_and_star(make_event):
    router = Router(
        [
            {"name": "exact", "events": ["job.completed"]},
            {"name": "alias", "events": ["JobCompleted"]},
            {"name": "glob", "events": ["job.*"]},
            {"name": "star", "events": ["*"]},
            {"name": "failed", "events": ["job.failed"]},
            {"name": "workers", "events": ["worker.registered"]},
        ]
    )
    completed = make_event("JobCompleted", job_id="j", queue_name="q")
    joined = make_event("WorkerRegistered", worker_id="w", queue_name="q")
    health = make_event("SystemHealth", database=True, redis=True)
    assert names(router, completed) == ["exact", "alias", "glob", "star"]
    assert names(router, joined) == ["star", "workers"]
    assert names(router, health) == ["star"]


def test_unknown_event_types_only_match_star(make_event):
    router = Router([{"name": "glob", "events": ["job.*"]}, {"name": "star", "events": ["*"]}])
    unknown = make_event("job.teleported", job_id="j")
    assert not unknown.known
    assert names(router, unknown) == ["star"]
    assert Router([{"events": ["job.*"]}]).match(unknown) == ()


def test_derived_lifecycle_event_matches_like_the_direct_one(make_events):
    router = Router(
        [
            {"name": "status", "events": ["job.status"]},
            {"name": "done", "events": ["job.completed"]},
        ]
    )
    status, derived = make_events(
        "JobStatusChange",
        job_id="j",
        queue_name="q",
        old_status="processing",
        new_status="completed",
    )
    assert names(router, status) == ["status"]
    assert names(router, derived) == ["done"]


def test_filters_queue_job_worker(make_event):
    router = Router(
        [
            {"name": "emails", "events": ["job.*"], "queue": "emails"},
            {"name": "two-queues", "events": ["job.*"], "queue": ["emails", "sms"]},
            {"name": "job", "events": ["job.*"], "job_id": "j1"},
            {"name": "worker", "events": ["worker.*"], "worker_id": ["w1", "w2"]},
            {"name": "any", "events": ["job.completed", "worker.joined"]},
        ]
    )
    assert names(router, make_event("JobCompleted", job_id="j1", queue_name="emails")) == [
        "emails",
        "two-queues",
        "job",
        "any",
    ]
    assert names(router, make_event("JobCompleted", job_id="j2", queue_name="sms")) == [
        "two-queues",
        "any",
    ]
    assert names(router, make_event("JobCompleted", job_id="j2", queue_name="other")) == ["any"]
    assert names(router, make_event("WorkerRegistered", worker_id="w2", queue_name="q")) == [
        "worker",
        "any",
    ]
    assert names(router, make_event("WorkerRegistered", worker_id="w3", queue_name="q")) == ["any"]


def test_star_with_a_queue_filter_skips_events_without_a_queue(make_event):
    router = Router([{"name": "q", "events": ["*"], "queue": "emails"}])
    assert names(router, make_event("SystemHealth", database=True, redis=True)) == []
    assert names(router, make_event("Mystery", queue_name="emails")) == ["q"]


def test_where_equality_one_of_and_missing_fields(make_event):
    router = Router(
        [
            {"name": "slow", "events": ["job.completed"], "where": {"duration_ms": 5000}},
            {
                "name": "bad",
                "events": ["job.status"],
                "where": {"new_status": ["failed", "deadletter"]},
            },
            {
                "name": "both",
                "events": ["job.status"],
                "where": {"new_status": "failed", "old_status": "processing"},
            },
            {"name": "db-down", "events": ["system.health"], "where": {"database": False}},
            {"name": "null", "events": ["worker.heartbeat"], "where": {"current_job_id": None}},
        ]
    )
    assert names(
        router, make_event("JobCompleted", job_id="j", queue_name="q", duration_ms=5000)
    ) == ["slow"]
    assert (
        names(router, make_event("JobCompleted", job_id="j", queue_name="q", duration_ms=5001))
        == []
    )
    assert names(router, make_event("JobCompleted", job_id="j", queue_name="q")) == []

    def status(old, new):
        return make_event(
            "JobStatusChange", job_id="j", queue_name="q", old_status=old, new_status=new
        )

    assert names(router, status("processing", "failed")) == ["bad", "both"]
    assert names(router, status("pending", "deadletter")) == ["bad"]
    assert names(router, status("processing", "completed")) == []
    assert names(router, make_event("SystemHealth", database=False, redis=True)) == ["db-down"]
    assert names(router, make_event("SystemHealth", database=True, redis=True)) == []
    busy = make_event("WorkerHeartbeat", worker_id="w", status="busy", current_job_id="j")
    idle = make_event("WorkerHeartbeat", worker_id="w", status="idle", current_job_id=None)
    assert names(router, busy) == [] and names(router, idle) == ["null"]


@pytest.mark.parametrize(
    ("expected", "value", "matches"),
    [(0, False, False), (1, True, False), (True, True, True), (1, 1.0, True)],
)
def test_where_keeps_booleans_apart_from_numbers(make_event, expected, value, matches):
    router = Router([{"events": ["*"], "where": {"flag": expected}}])
    assert bool(router.match(make_event("Custom", flag=value))) is matches


def test_index_offers_only_the_candidates_for_type_and_queue():
    subs = [{"events": ["job.completed"], "queue": f"q{i}"} for i in range(500)]
    subs += [{"events": ["job.failed"], "queue": f"q{i}"} for i in range(498)]
    subs += [{"events": ["job.completed"]}, {"events": ["*"], "queue": "q7"}]
    router = Router(subs)
    offered = router.candidates("job.completed", "q7")
    assert [s.queue for s in offered] == ["q7", None, "q7"]
    assert len(router.candidates("job.completed")) == 502
    assert router.candidates("queue.paused", "q7") == [router.subscriptions[-1]]
    assert router.candidates("brand.new") == [router.subscriptions[-1]]


def test_router_accepts_subscription_objects_and_validates_dicts():
    sub = Subscription(events=["job.completed"])
    assert list(Router([sub]).subscriptions) == [sub]
    with pytest.raises(ValueError, match="unknown event"):
        Router([{"events": ["job.complete"]}])


def test_queue_and_queueless_rules_merge_in_configured_order():
    router = Router(
        [
            {"name": "emails-first", "events": ["job.completed"], "queue": "emails"},
            {"name": "any-queue", "events": ["job.*"]},
            {"name": "emails-or-sms", "events": ["job.completed"], "queue": ["emails", "sms"]},
        ]
    )
    on = {
        queue: [
            s.name
            for s in router.match(
                Event("job.completed", {"job_id": "j", "queue_name": queue}, "JobCompleted")
            )
        ]
        for queue in ("emails", "sms", "other")
    }
    assert on == {
        "emails": ["emails-first", "any-queue", "emails-or-sms"],
        "sms": ["any-queue", "emails-or-sms"],
        "other": ["any-queue"],
    }


def test_an_unhashable_queue_name_matches_only_queueless_rules():
    """An Event built by hand may carry anything; the router must not raise."""
    router = Router(
        [
            {"name": "q", "events": ["job.completed"], "queue": "emails"},
            {"name": "all", "events": ["*"]},
        ]
    )
    odd = Event("job.completed", {"job_id": "j", "queue_name": ["emails"]}, "JobCompleted")
    assert names(router, odd) == ["all"]
