"""Subscription validation (every problem, with positions) and loading from files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from spooled_integrations.errors import ConfigurationError, SubscriptionError
from spooled_integrations.protocol import EventType
from spooled_integrations.runtime import Subscription, SubscriptionSet, load_subscriptions

ALL_JOB = {
    "job.created",
    "job.started",
    "job.completed",
    "job.failed",
    "job.retrying",
    "job.progress",
    "job.cancelled",
    "job.status",
}


def problems_of(source: object) -> list[str]:
    with pytest.raises(SubscriptionError) as info:
        load_subscriptions(source)
    return info.value.problems


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (["job.completed"], {"job.completed"}),
        (["JobCompleted", "job.canceled"], {"job.completed", "job.cancelled"}),
        (["worker.registered", "WorkerDeregistered"], {"worker.joined", "worker.left"}),
        (["job.status_changed"], {"job.status"}),
        (["job.*"], ALL_JOB),
        (["queue.*"], {"queue.paused", "queue.resumed", "queue.stats"}),
        (["worker.reg*"], {"worker.joined"}),
        (
            ["Job*Ed"],
            {"job.created", "job.started", "job.completed", "job.failed", "job.cancelled"},
        ),
        ("job.completed", {"job.completed"}),
    ],
)
def test_event_names_aliases_and_globs_expand_to_canonical_types(events, expected):
    sub = Subscription(events=events)
    assert sub.event_types == expected
    assert not sub.matches_all


def test_star_matches_everything_including_unknown_types():
    sub = Subscription(events=["*"])
    assert sub.matches_all
    assert sub.event_types == {member.value for member in EventType}


def test_every_problem_is_reported_with_its_position():
    source = [
        {"name": "fine", "events": ["job.completed"], "task": "a.b"},
        {"events": []},
        {
            "name": "emails-done",
            "events": ["job.completed", "job.complete"],
            "task": "t",
            "actor": "a",
            "worker_id": "w1",
            "max_age": 0,
            "evnts": ["x"],
        },
        {"events": ["queue.*"], "job_id": "j1", "queue": 5, "options": {"when": object()}},
        "not a mapping",
        {"name": "fine", "events": ["jobs.*"], "where": {"x": {"nested": 1}}, "delivery": "all"},
        {"events": ["worker.left", "system.health"], "queue": "emails"},
    ]
    assert problems_of(source) == [
        "subscriptions[1].events: empty; list at least one event name, alias or glob",
        "subscriptions[2] (name='emails-done').evnts: unknown field (did you mean 'events'?)",
        "subscriptions[2] (name='emails-done').events[1]: unknown event 'job.complete' "
        "(did you mean 'job.completed'?)",
        "subscriptions[2] (name='emails-done').task/actor: give one target, not both",
        "subscriptions[2] (name='emails-done').worker_id: none of the selected events "
        "(job.completed) carries a worker id, so this filter can never match",
        "subscriptions[2] (name='emails-done').max_age: must be a positive number of "
        "seconds, got 0.0",
        "subscriptions[3].queue: must be a string or a list of strings, got 5",
        "subscriptions[3].job_id: none of the selected events (queue.paused, queue.resumed, "
        "queue.stats) carries a job id, so this filter can never match",
        "subscriptions[3].options: not JSON-serializable (Object of type object is not "
        "JSON serializable)",
        "subscriptions[4]: expected a mapping, got str",
        "subscriptions[5] (name='fine').delivery: Input should be 'once' or 'every_node', "
        "got 'all'",
        "subscriptions[5] (name='fine').events[0]: pattern 'jobs.*' matches no known event",
        "subscriptions[5] (name='fine').where.x: must be a string, number, boolean, null or "
        "a list of them (got dict)",
        "subscriptions[5] (name='fine').name: duplicate of subscriptions[0]",
        "subscriptions[6].queue: none of the selected events (system.health, worker.left) "
        "carries a queue name, so this filter can never match",
    ]


def test_the_error_message_lists_every_problem():
    with pytest.raises(SubscriptionError) as info:
        load_subscriptions([{"events": ["job.complete"]}, {"events": ["nope"]}])
    text = str(info.value)
    assert text.startswith("2 problem(s)")
    assert "subscriptions[0].events[0]" in text and "subscriptions[1].events[0]" in text


@pytest.mark.parametrize(
    "spec",
    [
        {"events": ["job.completed", "worker.joined"], "worker_id": "w1"},
        {"events": ["*"], "worker_id": "w1", "job_id": "j1", "queue": "q"},
        {"events": ["worker.joined"], "queue": ["a", "b"]},
        {"events": ["queue.paused"], "queue": "q"},
        {"events": ["job.*"], "job_id": ["j1", "j2"], "where": {"new_status": ["failed", 1]}},
    ],
)
def test_possible_filters_are_accepted(spec):
    assert len(load_subscriptions([spec])) == 1


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"events": ["job.*"], "worker_id": "w1"}, "worker_id"),
        ({"events": ["worker.left"], "queue": "q"}, "queue"),
        ({"events": ["system.health"], "queue": "q"}, "queue"),
        ({"events": ["queue.paused"], "job_id": "j"}, "job_id"),
        ({"events": ["worker.*"], "job_id": "j"}, "job_id"),
        ({"events": ["job.completed"], "queue": []}, "queue"),
        ({"events": ["job.completed"], "where": {"status": []}}, "where.status"),
        ({"events": ["job.completed"], "task": " "}, "task"),
        ({"events": ["job.completed"], "max_age": -1}, "max_age"),
        ({"events": ["job.completed"], "options": {"x": float("nan")}}, "options"),
    ],
)
def test_impossible_or_empty_settings_are_rejected(spec, field):
    problems = problems_of([spec])
    assert len(problems) == 1
    assert problems[0].startswith(f"subscriptions[0].{field}:")


def test_constructing_a_subscription_directly_raises_subscription_error():
    with pytest.raises(SubscriptionError) as info:
        Subscription(events=["job.complete"], task="t", actor="a")
    assert info.value.problems == [
        "events[0]: unknown event 'job.complete' (did you mean 'job.completed'?)",
        "task/actor: give one target, not both",
    ]
    with pytest.raises(SubscriptionError, match="unknown field"):
        Subscription(events=["job.completed"], taks="t")


def test_subscription_objects_and_dicts_mix_and_keep_order():
    first = Subscription(name="a", events=["job.completed"], task="t.a")
    subs = load_subscriptions([first, {"name": "b", "events": "job.failed", "actor": "b"}])
    assert isinstance(subs, SubscriptionSet)
    assert [s.name for s in subs] == ["a", "b"]
    assert subs[0] is first
    assert [s.target for s in subs] == ["task:t.a", "actor:b"]
    assert load_subscriptions(subs) is subs


def test_duplicate_names_are_rejected_in_a_set():
    one = Subscription(name="x", events=["job.completed"])
    with pytest.raises(SubscriptionError, match=r"subscriptions\[1\] \(name='x'\)\.name"):
        SubscriptionSet([one, one])


def test_payloads_are_json_serializable(make_event, make_events):
    event_sub = Subscription(events=["job.*"], payload="event")
    data_sub = Subscription(events=["job.*"], payload="data")
    status, derived = make_events(
        "JobStatusChange",
        job_id="j1",
        queue_name="q",
        old_status="processing",
        new_status="completed",
        timestamp="2024-05-01T10:00:00.123456789Z",
    )
    for event in (status, derived, make_event("JobCompleted", job_id="j", queue_name="q")):
        whole = event_sub.build_payload(event)
        assert json.loads(json.dumps(whole)) == whole
        assert whole["type"] == event.type and whole["data"]["job_id"] == event.job_id
        data = data_sub.build_payload(event)
        assert data == dict(event.data) and json.loads(json.dumps(data)) == data
    assert event_sub.build_payload(derived)["derived_from"] == "job.status"


TOML = """
[[subscription]]
name = "emails-done"
events = ["job.completed"]
queue = "emails"
task = "billing.tasks.on_email_sent"
options = { countdown = 5, queue = "billing" }

[[subscription]]
events = ["worker.*"]
actor = "ops.on_worker"
delivery = "every_node"
payload = "data"
max_age = 30
"""

YAML = """
subscription:
  - name: emails-done
    events: [job.completed]
    queue: emails
    task: billing.tasks.on_email_sent
    options: {countdown: 5, queue: billing}
  - events: ["worker.*"]
    actor: ops.on_worker
    delivery: every_node
    payload: data
    max_age: 30
"""


def test_plural_top_level_key_is_accepted(tmp_path: Path):
    path = tmp_path / "subs.toml"
    path.write_text(TOML.replace("[[subscription]]", "[[subscriptions]]"))
    assert len(load_subscriptions(path)) == 2


@pytest.mark.parametrize(("suffix", "text"), [(".toml", TOML), (".yaml", YAML), (".yml", YAML)])
def test_loading_files(tmp_path: Path, suffix: str, text: str):
    path = tmp_path / f"subs{suffix}"
    path.write_text(text)
    for source in (path, str(path)):
        subs = load_subscriptions(source)
        assert [s.name for s in subs] == ["emails-done", None]
        first, second = subs
        assert first.queue == "emails" and first.task == "billing.tasks.on_email_sent"
        assert first.options == {"countdown": 5, "queue": "billing"}
        assert second.event_types == {
            "worker.joined",
            "worker.left",
            "worker.active",
            "worker.inactive",
            "worker.heartbeat",
        }
        assert (second.delivery, second.payload, second.max_age) == ("every_node", "data", 30.0)


def test_file_problems_are_all_listed(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[subscription]]\nevents = ["job.complete"]\n\n'
        '[[subscription]]\nname = "n"\nevents = ["queue.paused"]\njob_id = "j"\n'
    )
    assert problems_of(path) == [
        "subscriptions[0].events[0]: unknown event 'job.complete' (did you mean 'job.completed'?)",
        "subscriptions[1] (name='n').job_id: none of the selected events (queue.paused) "
        "carries a job id, so this filter can never match",
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("x.toml", "[[rule]]\nevents=['job.completed']\n", "found rule"),
        ("x.toml", "[[subscription]\n", "invalid TOML"),
        ("x.yaml", "subscription: [\n", "invalid YAML"),
        ("x.yaml", "other: 1\n", "found other"),
        ("x.json", "{}", "unsupported subscription file type"),
    ],
)
def test_unreadable_files_raise_configuration_error(tmp_path: Path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message) as info:
        load_subscriptions(path)
    assert not isinstance(info.value, SubscriptionError)


def test_missing_file_raises_configuration_error(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_subscriptions(tmp_path / "absent.toml")


def test_yaml_without_pyyaml_gives_an_install_hint(tmp_path: Path, monkeypatch):
    path = tmp_path / "subs.yaml"
    path.write_text(YAML)
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ConfigurationError, match=r"spooled-integrations\[yaml\]"):
        load_subscriptions(path)


def test_empty_yaml_file_is_an_empty_set(tmp_path: Path):
    path = tmp_path / "subs.yaml"
    path.write_text("# nothing yet\n")
    assert len(load_subscriptions(path)) == 0


@pytest.mark.parametrize("source", [42, "job.completed", {"events": ["job.completed"]}])
def test_wrong_shapes_raise_configuration_error(source):
    with pytest.raises(ConfigurationError):
        load_subscriptions(source)


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("job.done", "job.completed"),
        ("JobDone", "job.completed"),
        ("job_finished", "job.completed"),
        ("job.success", "job.completed"),
        ("job.error", "job.failed"),
        ("job.begin", "job.started"),
        ("job.aborted", "job.cancelled"),
        ("done", "job.completed"),
        ("job.retried", "job.retrying"),
        ("job.complete", "job.completed"),  # spelling still works
        ("job.progres", "job.progress"),
    ],
)
def test_an_unknown_event_is_matched_by_meaning_before_spelling(written: str, meant: str) -> None:
    with pytest.raises(SubscriptionError) as info:
        load_subscriptions([{"events": [written]}])
    assert f"unknown event {written!r} (did you mean {meant!r}?)" in str(info.value)


def test_subscriptions_given_as_json_text_are_the_rules_not_a_file_name() -> None:
    rules = load_subscriptions('  [{"events": ["job.completed"], "queue": "emails"}]')
    assert [s.queue for s in rules] == ["emails"]
    with pytest.raises(ConfigurationError, match="starts like JSON but is not"):
        load_subscriptions('[{"events": ["job.completed"],}]')
