"""JobsClient against the real emulator over real sockets, in both modes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from spooled_integrations.client import (
    ConnectionOptions,
    JobPage,
    JobsClient,
    JobSummary,
    TokenProvider,
)
from spooled_integrations.errors import (
    AuthError,
    ProtocolError,
    RateLimitError,
    ServerError,
    SpooledConnectionError,
)
from spooled_integrations.protocol import format_timestamp
from spooled_integrations.testing import Emulator
from spooled_integrations.testing.pytest_plugin import FAST_INTERVALS

from .conftest import ClientFactory

T0 = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
Factory = Callable[..., JobsClient]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(params=[False, True], ids=["default", "strict"])
def emu(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    with Emulator(strict=request.param, **FAST_INTERVALS) as emulator:
        yield emulator


@pytest.fixture
def make_jobs(make_options: Callable[..., ConnectionOptions]) -> Iterator[Factory]:
    """``make_jobs(emu, tokens=None, timeout=None, **options)``; closed at teardown."""
    made: list[JobsClient] = []

    def factory(
        emu: Emulator,
        tokens: TokenProvider | None = None,
        timeout: float | None = None,
        **overrides: Any,
    ) -> JobsClient:
        options = make_options(emu, **overrides)
        client = JobsClient(options, tokens or TokenProvider(options), timeout=timeout)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


def summary(job_id: str = "j1", **fields: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "queue_name": "emails",
        "status": "completed",
        "created_at": "2025-03-01T12:00:00.123456789Z",
        **fields,
    }


def history(emu: Emulator) -> dict[str, str]:
    jobs = {
        "done": emu.create_job("emails", priority=2, at=at(0)),
        "failed": emu.create_job("reports", at=at(10)),
        "waiting": emu.create_job("emails", at=at(20)),
    }
    emu.set_job_status(jobs["done"], "processing", at=at(1))
    emu.set_job_status(jobs["done"], "completed", at=at(2))
    emu.set_job_status(jobs["failed"], "failed", error="boom", at=at(15))
    return jobs


# -- reading both servers ----------------------------------------------------------------


def test_list_jobs_reads_both_modes(emu: Emulator, make_jobs: Factory) -> None:
    jobs = history(emu)
    client = make_jobs(emu)
    page = client.list_jobs()
    assert isinstance(page, JobPage)
    assert [job.id for job in page.jobs] == [jobs["waiting"], jobs["failed"], jobs["done"]]
    assert page.skipped == 0
    assert page.has_more is (None if emu.strict else False)
    done = page.jobs[-1]
    assert isinstance(done, JobSummary)
    assert (done.queue_name, done.status, done.priority, done.retry_count) == (
        "emails",
        "completed",
        2,
        0,
    )
    assert (done.created_at, done.started_at, done.completed_at) == (at(0), at(1), at(2))
    assert done.scheduled_at is None
    assert done.updated_at == (None if emu.strict else at(2))
    assert done.raw["id"] == jobs["done"] and ("last_error" in done.raw) is not emu.strict
    assert client.requests == 1 and emu.counters["rest_list"] == 1


def test_filters_reach_the_server(emu: Emulator, make_jobs: Factory) -> None:
    jobs = history(emu)
    client = make_jobs(emu)
    failed = client.list_jobs(status="failed", queue_name="reports")
    assert [job.id for job in failed.jobs] == [jobs["failed"]]
    page = client.list_jobs(limit=1, offset=1)
    assert [job.id for job in page.jobs] == [jobs["failed"]]
    hosted = client.list_jobs(
        status=["completed", "failed"],
        created_after=at(0),
        created_before=at(10),
        order_by="created_at",
        order_dir="asc",
    )
    if emu.strict:  # the backend source ignores all four
        assert len(hosted.jobs) == 3
    else:
        assert [job.id for job in hosted.jobs] == [jobs["done"]]
    assert client.list_jobs(limit=1).has_more is (None if emu.strict else True)
    with pytest.raises(ValueError, match="timezone-aware"):
        client.list_jobs(created_after=datetime(2025, 1, 1))
    assert client.requests == 4


def test_get_job_and_missing_job(emu: Emulator, make_jobs: Factory) -> None:
    jobs = history(emu)
    client = make_jobs(emu)
    job = client.get_job(jobs["failed"])
    assert job is not None
    assert (job["status"], job["last_error"], job["updated_at"]) == (
        "failed",
        "boom",
        format_timestamp(at(15)),
    )
    assert client.get_job("missing") is None
    assert client.get_job(f"{jobs['failed']}/cancel") is None  # the id is one path segment
    assert emu.job(jobs["failed"])["status"] == "failed"
    with pytest.raises(ValueError, match="empty"):
        client.get_job("")


def test_shares_the_stream_client_s_token(
    spooled_emulator: Emulator, make_client: ClientFactory, make_jobs: Factory
) -> None:
    emu = spooled_emulator
    stream = make_client(emu, "ws")
    stream.connect()
    client = make_jobs(emu, tokens=stream.token_provider)
    assert client.list_jobs().jobs == []
    assert client.get_job("missing") is None
    assert emu.login_count == 1


# -- auth -------------------------------------------------------------------------------------


def test_revoked_token_costs_one_login_then_succeeds(emu: Emulator, make_jobs: Factory) -> None:
    options = ConnectionOptions(base_url=emu.base_url, api_key=emu.api_key)
    tokens = TokenProvider(options)
    client = make_jobs(emu, tokens=tokens)
    client.list_jobs()
    logout = httpx.post(
        f"{emu.base_url}/api/v1/auth/logout", headers={"Authorization": f"Bearer {tokens.get()}"}
    )
    assert logout.status_code == 204  # the cached token is now blacklisted
    assert client.list_jobs().jobs == []
    assert (client.requests, emu.login_count, tokens.logins) == (3, 2, 2)


def test_refused_fresh_credentials_raise_without_a_loop(emu: Emulator, make_jobs: Factory) -> None:
    client = make_jobs(emu)
    client.list_jobs()
    emu.revoke_api_key()  # the cached JWT is refused, and so is the re-login
    with pytest.raises(AuthError) as info:
        client.list_jobs()
    assert info.value.status == 401
    assert client.requests == 2 and emu.login_count == 2
    emu.restore_api_key()

    expired = emu.make_token(lifetime=-3600)
    static = make_jobs(emu, api_key=None, token=expired)  # nothing to log in with
    with pytest.raises(AuthError, match="Invalid token") as info:
        static.get_job("x")
    assert static.requests == 1 and expired not in str(info.value)


# -- server answers -> typed errors --------------------------------------------------------


def test_status_codes_map_to_typed_errors(emu: Emulator, make_jobs: Factory) -> None:
    client = make_jobs(emu)
    emu.reject_rest(1, 429, body={"error": "rate_limit_exceeded"}, retry_after=7)
    with pytest.raises(RateLimitError) as limited:
        client.list_jobs()
    assert (limited.value.status, limited.value.retry_after) == (429, 7.0)
    emu.reject_rest(1, 500, body="Database error")
    with pytest.raises(ServerError, match="Database error") as failed:
        client.get_job("x")
    assert failed.value.status == 500
    emu.reject_rest(1, 400, body="Failed to deserialize query string")
    with pytest.raises(SpooledConnectionError) as bad:
        client.list_jobs()
    assert type(bad.value) is SpooledConnectionError and bad.value.status == 400
    assert emu.counters["rest_rejected"] == 3 and client.requests == 3


def test_unreadable_summaries_are_skipped_and_counted(
    emu: Emulator, make_jobs: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_jobs(emu)
    emu.reject_rest(
        1,
        200,
        body=[
            summary("good", attempt=2, completed_at="2025-03-01T12:00:05+01:00"),
            summary("no-queue", queue_name=None),
            summary("bad-time", created_at="yesterday"),
            summary("bad-optional", started_at=12),
            "not an object",
            {"id": "bare"},
        ],
    )
    with caplog.at_level(logging.WARNING, logger="spooled_integrations.client"):
        page = client.list_jobs()
    assert [job.id for job in page.jobs] == ["good"] and page.skipped == 5
    good = page.jobs[0]
    assert good.retry_count == 2 and good.priority is None
    assert good.created_at == datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    assert good.completed_at == datetime(2025, 3, 1, 11, 0, 5, tzinfo=timezone.utc)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 5 of 6" in warnings[0].getMessage()


def test_answers_of_the_wrong_shape_are_protocol_errors(emu: Emulator, make_jobs: Factory) -> None:
    client = make_jobs(emu)
    for body, call in (
        ({"jobs": []}, client.list_jobs),
        (b"<html>oops</html>", client.list_jobs),
        ([{"id": "x"}], lambda: client.get_job("x")),
    ):
        emu.reject_rest(1, 200, body=body)
        with pytest.raises(ProtocolError) as info:
            call()
        assert info.value.reason == "bad_rest_answer"
    with pytest.raises(ProtocolError) as bad:
        JobSummary.from_json(summary(status=None))
    assert bad.value.reason == "bad_job_summary"


def test_transport_failures_and_timeouts(emu: Emulator, make_jobs: Factory) -> None:
    client = make_jobs(emu, timeout=0.3)
    client.list_jobs()
    emu.slow_rest(1.0)
    with pytest.raises(SpooledConnectionError) as slow:
        client.list_jobs()
    assert slow.value.status is None
    emu.slow_rest(0)
    emu.stop()
    with pytest.raises(SpooledConnectionError):
        client.list_jobs()
    emu.start()
    assert client.list_jobs().jobs == []
    assert client.requests == 4


# -- secrets, lifecycle ------------------------------------------------------------------------


def test_no_secret_in_errors_reprs_or_logs(
    emu: Emulator, make_jobs: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    options = ConnectionOptions(base_url=emu.base_url, api_key=emu.api_key)
    tokens = TokenProvider(options)
    client = make_jobs(emu, tokens=tokens)
    token = tokens.get()
    secrets = (emu.api_key, token, token.split(".")[1][:24])  # no piece of a JWT either
    leak = f"key {emu.api_key} token {token}"
    texts: list[str] = [repr(client), repr(tokens)]
    with caplog.at_level(logging.DEBUG):
        for status, body in ((500, leak), (401, {"message": leak}), (429, leak), (404, leak)):
            emu.reject_rest(2 if status == 401 else 1, status, body=body)  # 401: one re-login
            with pytest.raises(SpooledConnectionError) as info:
                client.list_jobs()
            texts += [str(info.value), repr(info.value)]
        emu.reject_rest(1, 200, body=[summary(token, created_at=leak)])
        assert client.list_jobs().skipped == 1
        emu.stop()
        with pytest.raises(SpooledConnectionError) as down:
            client.get_job("x")
        texts += [str(down.value), repr(down.value)]
    texts += [record.getMessage() for record in caplog.records]
    assert sum("[redacted]" in text for text in texts) >= 8  # the leaks were there to hide
    for text in texts:
        for secret in secrets:
            assert secret not in text, text


def test_close_and_context_manager(spooled_emulator: Emulator) -> None:
    options = ConnectionOptions(base_url=spooled_emulator.base_url, api_key="sk_test_0123456789")
    with JobsClient(options, TokenProvider(options)) as client:
        assert "sk_test" not in repr(client)
    client.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        client.list_jobs()
    assert client.requests == 0


def test_our_requests_are_logged_at_debug_and_others_as_httpx_does(
    spooled_emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    options = ConnectionOptions(
        base_url=spooled_emulator.base_url, api_key=spooled_emulator.api_key
    )
    caplog.set_level(logging.INFO, logger="httpx")
    with JobsClient(options, TokenProvider(options)) as jobs:
        jobs.list_jobs()
    assert [r for r in caplog.records if r.name == "httpx"] == []  # the login and the list
    caplog.clear()
    httpx.get(spooled_emulator.base_url + "/api/v1/jobs").close()  # the user's own request
    assert [r.levelname for r in caplog.records if r.name == "httpx"] == ["INFO"]
