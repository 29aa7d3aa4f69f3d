"""Job lookups over REST (``GET /api/v1/jobs``, ``GET /api/v1/jobs/{id}``).

What a catch-up after a stream gap needs: pages of job summaries whose timestamps
prove which lifecycle events happened meanwhile. The same code reads both servers:
the public backend source (summaries without ``updated_at``, no ``X-Has-More``,
``order_by``/``created_after`` ignored) and the hosted service (those honoured).

Requests carry the access JWT of a shared :class:`TokenProvider` (the one the stream
client uses), never the API key: the backend bcrypts a key on every request, and a
shared provider costs no extra login.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import httpx

from spooled_integrations._redact import redact, redact_url
from spooled_integrations.client._quiet import quiet_requests
from spooled_integrations.client.auth import TokenProvider
from spooled_integrations.client.errors import error_for_status
from spooled_integrations.client.options import ConnectionOptions
from spooled_integrations.client.proxy import http_failure, http_transport, proxy_refused
from spooled_integrations.errors import ProtocolError, SpooledConnectionError
from spooled_integrations.protocol.timestamps import format_timestamp, parse_timestamp

__all__ = ["JobPage", "JobSummary", "JobsClient"]

JOBS_PATH = "/api/v1/jobs"
READ_TIMEOUT = 30.0
"""Seconds to wait for an answer (the server's own request timeout is 30 s)."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


def _bad_summary(problem: str) -> ProtocolError:
    return ProtocolError(f"unreadable job summary: {problem}", reason="bad_job_summary")


def _text(value: Mapping[str, Any], name: str) -> str:
    text = value.get(name)
    if not isinstance(text, str) or not text:
        raise _bad_summary(f"{name} is missing or not a string")
    return text


def _moment(value: Mapping[str, Any], name: str, *, required: bool = False) -> datetime | None:
    text = value.get(name)
    if text is None and not required:
        return None
    if not isinstance(text, str):
        raise _bad_summary(f"{name} is missing or not a string")
    try:
        return parse_timestamp(text)
    except ValueError:
        raise _bad_summary(f"{name} is not an RFC 3339 timestamp") from None


def _integer(value: Mapping[str, Any], *names: str) -> int | None:
    """The first of ``names`` that holds an integer (hosted summaries say ``attempt``)."""
    for name in names:
        number = value.get(name)
        if isinstance(number, int) and not isinstance(number, bool):
            return number
    return None


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One job of a ``GET /jobs`` page; optional fields are ``None`` when not sent.

    ``raw`` is the summary exactly as the server sent it (read-only), for fields this
    class does not name (``last_error``, ``max_retries`` …).
    """

    id: str
    queue_name: str
    status: str
    created_at: datetime
    priority: int | None = None
    retry_count: int | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=_empty, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> JobSummary:
        """Read one summary; :class:`ProtocolError` (``bad_job_summary``) when a required
        field is missing or a timestamp cannot be parsed (an unreadable optional
        timestamp too: guessing ``None`` would hide a lifecycle step)."""
        if not isinstance(value, Mapping):
            raise _bad_summary("not a JSON object")
        created_at = _moment(value, "created_at", required=True)
        assert created_at is not None
        return cls(
            id=_text(value, "id"),
            queue_name=_text(value, "queue_name"),
            status=_text(value, "status"),
            created_at=created_at,
            priority=_integer(value, "priority"),
            retry_count=_integer(value, "retry_count", "attempt"),
            scheduled_at=_moment(value, "scheduled_at"),
            started_at=_moment(value, "started_at"),
            completed_at=_moment(value, "completed_at"),
            updated_at=_moment(value, "updated_at"),
            raw=MappingProxyType(dict(value)),
        )


@dataclass(frozen=True)
class JobPage:
    """One page of ``GET /jobs``.

    ``has_more`` is the ``X-Has-More`` header when the server sent one (the hosted
    service), else ``None`` (the backend source: ask for the next page until one comes
    back shorter than the limit). ``skipped`` counts summaries that could not be read.
    """

    jobs: list[JobSummary]
    has_more: bool | None = None
    skipped: int = 0


def _has_more(headers: httpx.Headers) -> bool | None:
    value = headers.get("x-has-more", "").strip().lower()
    return {"true": True, "false": False}.get(value)


def _utc(name: str, moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return format_timestamp(moment)


class JobsClient:
    """A small synchronous REST client for job lookups, over one keep-alive connection.

    Meant for one caller thread at a time (the :class:`TokenProvider` it shares is
    thread-safe; the ``requests`` counter and the connection pool are not shared
    safely between concurrent callers). Errors are the package's typed ones:
    :class:`~spooled_integrations.errors.AuthError`, ``RateLimitError`` (with
    ``retry_after``), ``ServerError``, ``SpooledConnectionError`` and, for an answer of
    the wrong shape, :class:`~spooled_integrations.errors.ProtocolError`
    (``bad_rest_answer``). No message, repr or log line holds a secret.
    """

    def __init__(
        self,
        options: ConnectionOptions,
        tokens: TokenProvider,
        *,
        timeout: float | None = None,
    ) -> None:
        self._options = options
        self._tokens = tokens
        self._log = options.effective_logger
        self._http = httpx.Client(
            base_url=options.base_url,
            transport=http_transport(options.base_url, options.proxy, verify=options.verify_tls),
            timeout=httpx.Timeout(
                timeout if timeout is not None else READ_TIMEOUT, connect=options.connect_timeout
            ),
            headers=options.extra_headers,
        )
        self._closed = False
        self.requests = 0
        """HTTP requests sent (a re-login's retry counts twice; the login itself not)."""

    def __repr__(self) -> str:
        return (
            f"JobsClient(base_url={redact_url(self._options.base_url)!r}, requests={self.requests})"
        )

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection. Idempotent."""
        self._closed = True
        self._http.close()

    # -- lookups ------------------------------------------------------------------------

    def list_jobs(
        self,
        *,
        queue_name: str | None = None,
        status: str | Iterable[str] | None = None,
        limit: int = 100,
        offset: int = 0,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        order_by: str | None = None,
        order_dir: str | None = None,
    ) -> JobPage:
        """One page of job summaries (``GET /api/v1/jobs``).

        Every filter is sent as given; the backend source ignores all but
        ``queue_name``, a single ``status``, ``limit`` (clamped to 1..100) and
        ``offset``, so callers must check the summaries themselves. Several statuses
        go as one comma list. Datetimes must be timezone-aware.
        """
        params = {
            "queue_name": queue_name,
            "status": status if status is None or isinstance(status, str) else ",".join(status),
            "limit": str(limit),
            "offset": str(offset),
            "created_after": _utc("created_after", created_after),
            "created_before": _utc("created_before", created_before),
            "order_by": order_by,
            "order_dir": order_dir,
        }
        what = f"GET {redact_url(self._options.base_url)}{JOBS_PATH}"
        response = self._get(JOBS_PATH, {k: v for k, v in params.items() if v is not None}, what)
        if not response.is_success:
            raise self._refused(response, what)
        body = self._json(response, what)
        if not isinstance(body, list):
            raise ProtocolError(
                f"{what} answered a JSON {type(body).__name__}, not a list",
                reason="bad_rest_answer",
            )
        jobs: list[JobSummary] = []
        problems: list[str] = []
        for item in body:
            try:
                jobs.append(JobSummary.from_json(item))
            except ProtocolError as exc:
                problems.append(str(exc))
        if problems:
            self._log.warning(
                "Spooled %s: skipped %d of %d job summaries that could not be read (first: %s)",
                what,
                len(problems),
                len(body),
                self._redact(problems[0]),
            )
        return JobPage(jobs, _has_more(response.headers), len(problems))

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """The full job (``GET /api/v1/jobs/{id}``), or ``None`` if the server has none
        (a job of another organisation looks the same)."""
        if not job_id:
            raise ValueError("job_id must not be empty")
        what = f"GET {redact_url(self._options.base_url)}{JOBS_PATH}/{{id}}"
        response = self._get(f"{JOBS_PATH}/{quote(job_id, safe='')}", {}, what)
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise self._refused(response, what)
        body = self._json(response, what)
        if not isinstance(body, dict):
            raise ProtocolError(
                f"{what} answered a JSON {type(body).__name__}, not an object",
                reason="bad_rest_answer",
            )
        return body

    # -- HTTP ---------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, str], what: str) -> httpx.Response:
        """GET with the access JWT; after a 401/403 on a token that was not fresh, log in
        again once and retry (the stream client's rule)."""
        if self._closed:
            raise RuntimeError("the JobsClient is closed")
        token = self._tokens.get()
        fresh = self._tokens.fresh
        response = self._send(path, params, token, what)
        if response.status_code in (401, 403) and self._tokens.can_refresh and not fresh:
            self._log.info("Spooled refused the token for %s; logging in again once", what)
            response = self._send(path, params, self._tokens.get(force=True), what)
        return response

    def _send(self, path: str, params: dict[str, str], token: str, what: str) -> httpx.Response:
        self.requests += 1
        try:
            with quiet_requests():
                response = self._http.get(
                    path, params=params, headers={"Authorization": f"Bearer {token}"}
                )
        except httpx.HTTPError as exc:
            failure = http_failure(exc, self._options.base_url, self._options.proxy)
            raise SpooledConnectionError(self._redact(f"{what} failed: {failure}")) from None
        if response.status_code == 407:
            raise proxy_refused(self._options.base_url, self._options.proxy, what)
        return response

    def _refused(self, response: httpx.Response, what: str) -> SpooledConnectionError:
        # Redacted whole: error_for_status cuts the body at 300 characters first, and a
        # JWT cut in two no longer looks like one.
        return error_for_status(
            response.status_code,
            response.headers,
            self._redact(response.text),
            what=what,
            secrets=self._tokens.secrets(),
        )

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return json.loads(response.content)
        except ValueError:
            raise ProtocolError(
                f"{what} answered something that is not JSON", reason="bad_rest_answer"
            ) from None

    def _redact(self, text: str) -> str:
        return redact(text, *self._tokens.secrets())
