"""The emulator's job lookups (protocol §8) over real sockets, in both modes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import websocket

from spooled_integrations.protocol import format_timestamp
from spooled_integrations.testing import Emulator
from spooled_integrations.testing.pytest_plugin import FAST_INTERVALS

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
STRICT_FIELDS = [
    "id",
    "queue_name",
    "status",
    "priority",
    "retry_count",
    "created_at",
    "scheduled_at",
    "started_at",
    "completed_at",
]
HOSTED_FIELDS = [*STRICT_FIELDS, "max_retries", "last_error", "updated_at"]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    return format_timestamp(at(seconds))


@pytest.fixture(params=[False, True], ids=["default", "strict"])
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    with Emulator(strict=request.param, **FAST_INTERVALS) as emulator:
        yield emulator


Get = Callable[..., httpx.Response]


@pytest.fixture
def http() -> Iterator[Callable[[Emulator], Get]]:
    """``http(emu)`` → ``get(path, **params)``: authenticated GETs; closed at teardown."""
    clients: list[httpx.Client] = []

    def make(emu: Emulator) -> Get:
        client = httpx.Client(
            base_url=emu.base_url,
            headers={"Authorization": f"Bearer {emu.api_key}"},
            timeout=httpx.Timeout(5.0),
        )
        clients.append(client)

        def get(path: str, **params: Any) -> httpx.Response:
            return client.get(path, params=params)

        return get

    yield make
    for client in clients:
        client.close()


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [summary["id"] for summary in response.json()]


def history(emu: Emulator) -> dict[str, str]:
    """Six jobs one minute apart (oldest first) with different fates."""
    jobs = {}
    for minute, (name, queue) in enumerate(
        [
            ("pending", "emails"),
            ("running", "emails"),
            ("done", "reports"),
            ("failed", "emails"),
            ("dead", "reports"),
            ("cancelled", "emails"),
        ]
    ):
        jobs[name] = emu.create_job(queue, at=at(60 * minute))
    emu.set_job_status(jobs["running"], "processing", at=at(400))
    emu.set_job_status(jobs["done"], "processing", at=at(300))
    emu.set_job_status(jobs["done"], "completed", at=at(500))
    emu.set_job_status(jobs["failed"], "failed", error="boom", at=at(450))
    emu.set_job_status(jobs["dead"], "deadletter", at=at(350))
    emu.cancel_job(jobs["cancelled"])
    return jobs


NEWEST_FIRST = ["cancelled", "dead", "failed", "done", "running", "pending"]


# -- timestamps ----------------------------------------------------------------------


def test_timestamps_move_with_status_changes(emu: Emulator, http: Any) -> None:
    api = http(emu)
    job_id = emu.create_job("emails", {"n": 1}, priority=3, at=at(0))
    job = api(f"/api/v1/jobs/{job_id}").json()
    assert (job["created_at"], job["updated_at"]) == (stamp(0), stamp(0))
    assert job["created_at"] == "2025-03-01T12:00:00.123456Z"
    assert [job[k] for k in ("scheduled_at", "started_at", "completed_at")] == [None] * 3

    steps: list[tuple[str, float, dict[str, Any]]] = [
        ("scheduled", 5, {"scheduled_at": stamp(5), "completed_at": None}),
        ("processing", 10, {"started_at": stamp(10), "completed_at": None}),
        ("failed", 20, {"completed_at": stamp(20), "last_error": "job failed"}),
        ("pending", 30, {"completed_at": None, "started_at": stamp(10), "retry_count": 1}),
        ("processing", 40, {"started_at": stamp(40), "completed_at": None}),
        ("completed", 50, {"completed_at": stamp(50), "scheduled_at": stamp(5)}),
    ]
    for status, seconds, expected in steps:
        emu.set_job_status(job_id, status, at=at(seconds))
        job = api(f"/api/v1/jobs/{job_id}").json()
        assert job["status"] == status and job["updated_at"] == stamp(seconds)
        assert {k: job[k] for k in expected} == expected, status
    assert (job["payload"], job["priority"], job["max_retries"], job["result"]) == (
        {"n": 1},
        3,
        3,
        None,
    )
    assert emu.job(job_id) == job


def test_wall_clock_is_the_default_moment_and_cancel_sets_no_completed_at() -> None:
    now = [T0.timestamp()]
    with Emulator(wall_clock=lambda: now[0]) as emu:
        job_id = emu.create_job("emails")
        now[0] += 1.5
        emu.set_job_status(job_id, "processing")
        now[0] += 1.5
        emu.cancel_job(job_id)
        job = emu.job(job_id)
        assert (job["created_at"], job["started_at"]) == (stamp(0), stamp(1.5))
        assert (job["status"], job["completed_at"], job["updated_at"]) == (
            "cancelled",
            None,
            stamp(3),
        )
        with pytest.raises(ValueError, match="job is cancelled"):
            emu.cancel_job(job_id)
        with pytest.raises(ValueError, match="timezone-aware"):
            emu.create_job("emails", at=datetime(2025, 1, 1))


def test_completed_event_duration_uses_the_moments_a_test_gave(
    spooled_emulator: Emulator,
) -> None:
    emu = spooled_emulator
    ws = websocket.create_connection(
        emu.ws_url, header=[f"Authorization: Bearer {emu.api_key}"], timeout=3
    )
    try:
        job_id = emu.create_job("emails", at=at(0))
        emu.set_job_status(job_id, "processing", at=at(2))
        emu.set_job_status(job_id, "completed", at=at(4.5))
        while (frame := json.loads(ws.recv()))["type"] != "JobCompleted":
            pass
        assert frame["data"]["duration_ms"] == 2500
    finally:
        ws.close()


def test_control_route_takes_a_moment(emu: Emulator) -> None:
    job_id = emu.create_job("emails")
    url = f"{emu.base_url}/_emulator/jobs/{job_id}/status"
    answer = httpx.post(url, json={"status": "processing", "at": stamp(7)})
    assert answer.status_code == 200 and answer.json()["started_at"] == stamp(7)
    bad = httpx.post(url, json={"status": "completed", "at": "yesterday"})
    assert bad.status_code == 400


# -- GET /jobs ----------------------------------------------------------------------


def test_list_is_newest_first_with_the_mode_s_fields(emu: Emulator, http: Any) -> None:
    api = http(emu)
    jobs = history(emu)
    response = api("/api/v1/jobs")
    assert ids(response) == [jobs[name] for name in NEWEST_FIRST]
    summaries = {s["id"]: s for s in response.json()}
    assert list(summaries[jobs["done"]]) == (STRICT_FIELDS if emu.strict else HOSTED_FIELDS)
    done = summaries[jobs["done"]]
    assert (done["created_at"], done["started_at"], done["completed_at"]) == (
        stamp(120),
        stamp(300),
        stamp(500),
    )
    cancelled = summaries[jobs["cancelled"]]
    assert (cancelled["status"], cancelled["completed_at"]) == ("cancelled", None)
    assert ("X-Has-More" in response.headers) is (not emu.strict)
    assert [j["id"] for j in emu.jobs()] == [jobs[name] for name in NEWEST_FIRST]


def test_strict_list_ignores_what_the_source_ignores(
    spooled_emulator_strict: Emulator, http: Any
) -> None:
    emu = spooled_emulator_strict
    api = http(emu)
    jobs = history(emu)
    everything = [jobs[name] for name in NEWEST_FIRST]
    assert ids(api("/api/v1/jobs", status="failed")) == [jobs["failed"]]
    for ignored in (
        {"status": "completed,failed"},
        {"status": "exploded"},
        {"created_after": stamp(1000)},
        {"created_before": stamp(-1000)},
        {"order_by": "completed_at", "order_dir": "asc"},
        {"queue_name": "bad name!"},
        {"queue_name": "q" * 256},
        {"offset": "-5"},
        {"tag": "x", "q": "y"},
    ):
        assert ids(api("/api/v1/jobs", **ignored)) == everything, ignored
    assert ids(api("/api/v1/jobs", queue_name="reports")) == [jobs["dead"], jobs["done"]]
    assert "X-Has-More" not in api("/api/v1/jobs", limit=1).headers


def test_limit_is_clamped_and_must_be_an_integer(emu: Emulator, http: Any) -> None:
    api = http(emu)
    for _ in range(105):
        emu.create_job("bulk")
    assert len(ids(api("/api/v1/jobs"))) == 50
    assert len(ids(api("/api/v1/jobs", limit=0))) == 1
    assert len(ids(api("/api/v1/jobs", limit=-3))) == 1
    assert len(ids(api("/api/v1/jobs", limit=500))) == 100
    assert len(ids(api("/api/v1/jobs", offset=100, limit=100))) == 5
    for name in ("limit", "offset"):
        bad = api("/api/v1/jobs", **{name: "ten"})
        assert (bad.status_code, bad.text) == (
            400,
            f"Failed to deserialize query string: {name}: invalid digit found in string",
        )


def test_ties_on_created_at_put_the_newer_job_first(emu: Emulator, http: Any) -> None:
    api = http(emu)
    first = emu.create_job("emails", at=at(0))
    second = emu.create_job("emails", at=at(0))
    assert ids(api("/api/v1/jobs")) == [second, first]


def test_paging_with_offset(emu: Emulator, http: Any) -> None:
    api = http(emu)
    jobs = history(emu)
    pages = [api("/api/v1/jobs", limit=4, offset=offset) for offset in (0, 4, 8)]
    assert [ids(page) for page in pages] == [
        [jobs[name] for name in NEWEST_FIRST[:4]],
        [jobs[name] for name in NEWEST_FIRST[4:]],
        [],
    ]
    if not emu.strict:
        assert [page.headers["X-Has-More"] for page in pages] == ["true", "false", "false"]


def test_default_list_honours_the_hosted_filters(spooled_emulator: Emulator, http: Any) -> None:
    emu = spooled_emulator
    api = http(emu)
    jobs = history(emu)
    assert ids(api("/api/v1/jobs", status="failed, deadletter,exploded")) == [
        jobs["dead"],
        jobs["failed"],
    ]
    assert ids(api("/api/v1/jobs", status="exploded")) == [jobs[n] for n in NEWEST_FIRST]
    # created_after inclusive, created_before exclusive
    window = api("/api/v1/jobs", created_after=stamp(60), created_before=stamp(180))
    assert ids(window) == [jobs["done"], jobs["running"]]
    by_completion = api("/api/v1/jobs", order_by="completed_at", order_dir="ASC")
    assert ids(by_completion)[:3] == [jobs["dead"], jobs["failed"], jobs["done"]]
    # Postgres: NULL sorts above every value (first in DESC, last in ASC)
    by_start = ids(api("/api/v1/jobs", order_by="started_at"))
    assert by_start[-2:] == [jobs["running"], jobs["done"]]
    unknown_order = api("/api/v1/jobs", order_by="payload", order_dir="sideways")
    assert ids(unknown_order) == [jobs[n] for n in NEWEST_FIRST]
    failed = api("/api/v1/jobs", status="failed").json()[0]
    assert (failed["last_error"], failed["max_retries"], failed["updated_at"]) == (
        "boom",
        3,
        stamp(450),
    )
    bad = api("/api/v1/jobs", created_after="last tuesday")
    assert bad.status_code == 400 and "created_after" in bad.text


# -- GET /jobs/{id}, GET /jobs/status ----------------------------------------------------


def test_get_job_and_404(emu: Emulator, http: Any) -> None:
    api = http(emu)
    job_id = emu.create_job("emails")
    assert api(f"/api/v1/jobs/{job_id}").json()["id"] == job_id
    missing = api("/api/v1/jobs/nope")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "not_found", "message": "Job not found"},
    )


def test_batch_status(emu: Emulator, http: Any) -> None:
    api = http(emu)
    jobs = history(emu)
    answer = api("/api/v1/jobs/status", ids=f"{jobs['done']}, nope,,{jobs['cancelled']}")
    assert answer.status_code == 200
    assert answer.json() == [
        {
            "id": jobs["done"],
            "status": "completed",
            "queue_name": "reports",
            "retry_count": 0,
            "created_at": stamp(120),
            "completed_at": stamp(500),
        },
        {
            "id": jobs["cancelled"],
            "status": "cancelled",
            "queue_name": "emails",
            "retry_count": 0,
            "created_at": stamp(300),
            "completed_at": None,
        },
    ]
    assert api("/api/v1/jobs/status", ids="").json() == []
    too_many = api("/api/v1/jobs/status", ids=",".join(f"j{i}" for i in range(101)))
    assert too_many.status_code == 400
    assert too_many.json()["message"] == "Maximum 100 job IDs allowed per request"
    assert api("/api/v1/jobs/status").status_code == 400


def test_lookups_need_a_bearer(emu: Emulator) -> None:
    job_id = emu.create_job("emails")
    for path in ("/api/v1/jobs", f"/api/v1/jobs/{job_id}", "/api/v1/jobs/status?ids=a"):
        denied = httpx.get(emu.base_url + path)
        assert (denied.status_code, denied.text) == (401, "Missing or invalid Authorization header")
        wrong = httpx.get(emu.base_url + path, headers={"Authorization": f"Basic {emu.api_key}"})
        assert wrong.status_code == 401
    token = httpx.post(f"{emu.base_url}/api/v1/auth/login", json={"api_key": emu.api_key}).json()[
        "access_token"
    ]
    jwt_auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{emu.base_url}/api/v1/jobs", headers=jwt_auth).status_code == 200
    emu.revoke_api_key()
    revoked = httpx.get(f"{emu.base_url}/api/v1/jobs", headers=jwt_auth)
    assert (revoked.status_code, revoked.text) == (401, "API key has been revoked")


# -- faults and counters --------------------------------------------------------------------


def test_reject_rest_answers_the_lookups_only(emu: Emulator, http: Any) -> None:
    api = http(emu)
    job_id = emu.create_job("emails")
    emu.reject_rest(2, 429, body={"error": "rate_limited"}, retry_after=3)
    first = api("/api/v1/jobs")
    assert (first.status_code, first.json(), first.headers["Retry-After"]) == (
        429,
        {"error": "rate_limited"},
        "3",
    )
    assert api(f"/api/v1/jobs/{job_id}").status_code == 429
    assert api("/api/v1/jobs").status_code == 200
    emu.reject_rest(1, 503)
    unavailable = httpx.get(f"{emu.base_url}/api/v1/jobs/status?ids=x")  # before auth
    assert (unavailable.status_code, unavailable.text) == (503, "Service Unavailable")
    emu.reject_next(1, 500)
    assert api(f"/api/v1/jobs/{job_id}").status_code == 200  # stream faults stay put
    counters = emu.counters
    assert {k: counters[k] for k in ("rest_list", "rest_get", "rest_status", "rest_rejected")} == {
        "rest_list": 1,
        "rest_get": 1,
        "rest_status": 0,
        "rest_rejected": 3,
    }
    assert counters["rejected_by_fault"] == 0


def test_slow_rest_delays_the_lookups(emu: Emulator, http: Any) -> None:
    api = http(emu)
    emu.slow_rest(0.3)
    started = time.monotonic()
    assert api("/api/v1/jobs").status_code == 200
    assert time.monotonic() - started >= 0.3
    emu.slow_rest(0)
    started = time.monotonic()
    assert api("/api/v1/jobs/status", ids="a").status_code == 200
    assert time.monotonic() - started < 0.3
    assert emu.counters["rest_status"] == 1
    with pytest.raises(ValueError, match="negative"):
        emu.slow_rest(-1)
