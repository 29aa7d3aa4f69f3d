"""Frame normalization: both wire shapes, aliases, lifecycle derivation, bad frames."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spooled_integrations.errors import ProtocolError
from spooled_integrations.protocol import (
    Event,
    EventType,
    canonical_name,
    decode_frame,
    normalize,
    parse_timestamp,
    resolve,
    wire_dotted_name,
    wire_variant,
)

TS = "2025-12-13T01:02:03.123456789Z"


def frame(wire_type: str, **data: Any) -> bytes:
    return json.dumps({"type": wire_type, "data": {**data, "timestamp": TS}}).encode()


def test_backend_envelope_and_go_shape_give_the_same_event() -> None:
    backend = decode_frame(frame("JobCompleted", job_id="j1", queue_name="emails", duration_ms=12))
    go = decode_frame(
        json.dumps(
            {
                "type": "job.completed",
                "timestamp": TS,
                "data": {"job_id": "j1", "queue_name": "emails"},
            }
        )
    )
    assert backend.type == go.type == "job.completed"
    assert backend.wire_type == "JobCompleted"
    assert go.wire_type == "job.completed"
    assert (
        backend.timestamp
        == go.timestamp
        == datetime(2025, 12, 13, 1, 2, 3, 123456, tzinfo=timezone.utc)
    )
    assert backend.job().duration_ms == 12
    assert go.job().queue_name == "emails"


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("JobCompleted", "job.completed"),
        ("JobStatusChange", "job.status"),
        ("job.status_changed", "job.status"),
        ("worker.registered", "worker.joined"),
        ("WorkerRegistered", "worker.joined"),
        ("WorkerDeregistered", "worker.left"),
        ("worker.deregistered", "worker.left"),
        ("SystemHealth", "system.health"),
        ("Ping", "ping"),
        ("Error", "error"),
        ("QueueStats", "queue.stats"),
        ("WorkerHeartbeat", "worker.heartbeat"),
        ("JOB.COMPLETED", "job.completed"),
    ],
)
def test_aliases_resolve_to_one_canonical_name(spelling: str, canonical: str) -> None:
    assert canonical_name(spelling) == canonical


def test_every_go_constant_exists() -> None:
    go = {
        "job.created", "job.started", "job.completed", "job.failed", "job.retrying", "job.progress",
        "queue.paused", "queue.resumed", "worker.joined", "worker.left", "worker.active", "worker.inactive",
    }  # fmt: skip
    backend = {"job.status", "queue.stats", "worker.heartbeat", "system.health", "error", "ping"}
    assert go | backend <= {member.value for member in EventType}


def test_wire_spellings_round_trip() -> None:
    for member in EventType:
        assert resolve(wire_variant(member)) is member
        assert resolve(wire_dotted_name(member)) is member
    assert wire_variant(EventType.JOB_STATUS) == "JobStatusChange"
    assert wire_dotted_name(EventType.WORKER_JOINED) == "worker.registered"


def test_unknown_type_is_kept_not_dropped() -> None:
    event = decode_frame(frame("JobTeleported", job_id="j1"))
    assert event.type == "JobTeleported"
    assert not event.known
    assert event.category == "unknown"
    assert event.data["job_id"] == "j1"


@pytest.mark.parametrize(
    ("old", "new", "derived"),
    [
        ("pending", "processing", "job.started"),
        ("processing", "completed", "job.completed"),
        ("processing", "failed", "job.failed"),
        ("failed", "deadletter", "job.failed"),
        ("pending", "cancelled", "job.cancelled"),
        ("failed", "pending", "job.retrying"),
        ("processing", "scheduled", "job.retrying"),
        ("", "pending", None),
        ("scheduled", "pending", None),
    ],
)
def test_status_change_derives_lifecycle_event(old: str, new: str, derived: str | None) -> None:
    events = normalize(
        frame("JobStatusChange", job_id="j1", queue_name="q", old_status=old, new_status=new)
    )
    assert events[0].type == "job.status"
    if derived is None:
        assert len(events) == 1
    else:
        assert [e.type for e in events] == ["job.status", derived]
        assert events[1].derived_from == "job.status"
        assert events[1].data is events[0].data


def test_identity_of_derived_and_direct_forms_match() -> None:
    [_, derived] = normalize(
        frame(
            "JobStatusChange",
            job_id="j1",
            queue_name="q",
            old_status="processing",
            new_status="completed",
        )
    )
    direct = decode_frame(frame("JobCompleted", job_id="j1", queue_name="q", duration_ms=3))
    assert derived.identity_key == direct.identity_key == "job.completed:j1"
    failed = decode_frame(frame("JobFailed", job_id="j1", queue_name="q", error="x", retry_count=2))
    assert failed.identity_key == "job.failed:j1:2"
    assert failed.identity_base == "job.failed:j1"


def test_identity_of_other_events_is_content_based() -> None:
    a = decode_frame(
        frame("QueueStats", queue_name="q", pending=1, processing=0, completed=0, failed=0)
    )
    b = decode_frame(
        frame("QueueStats", queue_name="q", pending=1, processing=0, completed=0, failed=0)
    )
    c = decode_frame(
        frame("QueueStats", queue_name="q", pending=2, processing=0, completed=0, failed=0)
    )
    assert a.identity_key == b.identity_key != c.identity_key


def test_sse_payload_type_wins_over_event_line_and_bare_data_uses_event_line() -> None:
    assert (
        decode_frame(frame("JobCreated", job_id="j"), event_name="job.status").type == "job.created"
    )
    bare = decode_frame(b'{"database":true,"redis":false}', event_name="system.health")
    assert bare.type == "system.health"
    assert bare.data == {"database": True, "redis": False}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not_json"),
        (b"\xff\xfe{", "not_json"),
        (b"[1,2]", "wrong_type"),
        (b'{"data":{}}', "missing_field"),
        (b'{"type":7,"data":{}}', "missing_field"),
        (b'{"type":"JobCompleted","data":[1]}', "wrong_type"),
        (b'{"type":"JobCompleted","data":{"queue_name":"q"}}', "missing_field"),
        (b'{"type":"JobCompleted","data":{"job_id":5}}', "wrong_type"),
        (b'{"type":"JobCreated","data":{"job_id":"j","priority":"high"}}', "wrong_type"),
        (b'{"type":"JobFailed","data":{"job_id":"j","retry_count":true}}', "wrong_type"),
        (b'{"type":"Ping","data":{"timestamp":12}}', "wrong_type"),
    ],
)
def test_bad_frames_raise_protocol_error_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        normalize(payload)
    assert info.value.reason == reason


def test_oversized_frame_is_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(b"{" + b" " * 100 + b"}", max_size=50)
    assert info.value.reason == "too_large"


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("2025-12-13T01:02:03Z", 0),
        ("2025-12-13T01:02:03.1Z", 100000),
        ("2025-12-13T01:02:03.123Z", 123000),
        ("2025-12-13T01:02:03.123456Z", 123456),
        ("2025-12-13T01:02:03.123456789Z", 123456),
        ("2025-12-13T01:02:03.123456789+00:00", 123456),
    ],
)
def test_timestamps_with_up_to_nine_digits(text: str, micro: int) -> None:
    parsed = parse_timestamp(text)
    assert parsed.microsecond == micro
    assert parsed.utcoffset() is not None


def test_bad_timestamp_is_none_but_raw_kept() -> None:
    event = decode_frame(b'{"type":"Ping","data":{"timestamp":"yesterday"}}')
    assert event.timestamp is None
    assert event.raw_timestamp == "yesterday"


def test_to_dict_is_json_serializable() -> None:
    [status, derived] = normalize(
        frame(
            "JobStatusChange",
            job_id="j1",
            queue_name="q",
            old_status="processing",
            new_status="completed",
        )
    )
    restored = json.loads(json.dumps(derived.to_dict()))
    assert restored["type"] == "job.completed"
    assert restored["derived_from"] == "job.status"
    assert restored["data"]["job_id"] == "j1"
    assert isinstance(status, Event)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
known_names = st.sampled_from([m.value for m in EventType] + [wire_variant(m) for m in EventType])
field_names = st.sampled_from(
    [
        "job_id",
        "queue_name",
        "worker_id",
        "new_status",
        "old_status",
        "retry_count",
        "priority",
        "timestamp",
        "x",
    ]
)


@given(
    st.one_of(known_names, st.text(max_size=20), json_values),
    st.one_of(st.dictionaries(field_names, json_values, max_size=6), json_values),
    st.one_of(st.none(), st.text(max_size=40), json_values),
)
def test_normalizer_raises_only_protocol_error(wire_type: Any, data: Any, timestamp: Any) -> None:
    payload = json.dumps({"type": wire_type, "data": data, "timestamp": timestamp})
    try:
        events = normalize(payload, event_name="job.status")
    except ProtocolError:
        return
    for event in events:
        assert isinstance(event.type, str)
        _ = (event.identity_key, event.timestamp, event.category, event.to_dict())


@given(st.binary(max_size=300))
def test_normalizer_on_random_bytes(payload: bytes) -> None:
    try:
        events = normalize(payload)
    except ProtocolError as exc:
        assert exc.reason
        return
    assert all(isinstance(event, Event) for event in events)
