"""``/auth/*``, the REST subset that drives events, the job lookups a catch-up uses,
and the ``/_emulator`` controls."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiohttp import web

from spooled_integrations.protocol.timestamps import parse_timestamp
from spooled_integrations.testing._auth import Auth, Identity
from spooled_integrations.testing._config import Settings
from spooled_integrations.testing._http import (
    API,
    field,
    json_response,
    read_json,
    rejection_response,
    text_response,
    validation_error,
)
from spooled_integrations.testing._hub import Hub
from spooled_integrations.testing._listing import JobQuery, select_jobs
from spooled_integrations.testing._state import Published, State
from spooled_integrations.testing._wire import Envelope

__all__ = ["Rest"]

_JOB_NOT_FOUND = {"error": "not_found", "message": "Job not found"}
_WORKER_NOT_FOUND = {"error": "not_found", "message": "Worker not found"}
_MAX_STATUS_IDS = 100


class _Server(Protocol):
    """What the routes use of the server that mounts them (``_server.Server``)."""

    settings: Settings
    auth: Auth
    state: State
    hub: Hub

    def emit(self, published: Published) -> None: ...

    def publish(self, name: str, fields: dict[str, Any]) -> Envelope: ...


class Rest:
    """Plain request/response routes; events they imply go through ``Server.emit``."""

    def __init__(self, server: _Server) -> None:
        self._server = server

    def add_routes(self, app: web.Application) -> None:
        add_get, add_post = app.router.add_get, app.router.add_post
        add_post(f"{API}/auth/login", self._login)
        add_post(f"{API}/auth/refresh", self._refresh)
        add_post(f"{API}/auth/logout", self._logout)
        add_get(f"{API}/auth/me", self._me)
        add_post(f"{API}/auth/validate", self._validate)
        add_post(f"{API}/jobs", self._create_job)
        add_get(f"{API}/jobs", self._list_jobs)
        add_get(f"{API}/jobs/status", self._job_statuses)  # before /jobs/{id}
        add_get(f"{API}/jobs/{{id}}", self._get_job)
        add_post(f"{API}/jobs/{{id}}/cancel", self._cancel_job)
        add_post(f"{API}/queues/{{name}}/pause", self._pause_queue)
        add_post(f"{API}/queues/{{name}}/resume", self._resume_queue)
        add_post(f"{API}/workers/register", self._register_worker)
        add_post(f"{API}/workers/{{id}}/heartbeat", self._heartbeat)
        add_post(f"{API}/workers/{{id}}/deregister", self._deregister_worker)
        add_post("/_emulator/jobs/{id}/status", self._emulator_job_status)
        add_post("/_emulator/publish", self._emulator_publish)

    # -- /auth ------------------------------------------------------------------

    async def _login(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        api_key = field(body, "api_key", str)
        if len(api_key) < 10:
            raise validation_error("api_key", "API key must be at least 10 characters")
        self._server.hub.count("logins")
        return json_response(200, self._server.auth.login(api_key))

    async def _refresh(self, request: web.Request) -> web.Response:
        token = field(await read_json(request), "refresh_token", str)
        if len(token) < 10:
            raise validation_error("refresh_token", "Invalid refresh token")
        return json_response(200, self._server.auth.refresh(token))

    async def _logout(self, request: web.Request) -> web.Response:
        self._server.auth.logout(request.headers.get("Authorization"))
        return web.Response(status=204)

    async def _me(self, request: web.Request) -> web.Response:
        return json_response(200, self._server.auth.me(request.headers.get("Authorization")))

    async def _validate(self, request: web.Request) -> web.Response:
        token = field(await read_json(request), "token", str)
        return json_response(200, self._server.auth.validate(token))

    def _authenticate(self, request: web.Request) -> Identity:
        return self._server.auth.authenticate_header(request.headers.get("Authorization"))

    # -- REST subset -------------------------------------------------------------------

    async def _create_job(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        body = await read_json(request)
        queue_name = field(body, "queue_name", str)
        priority = field(body, "priority", int, required=False) or 0
        max_retries = field(body, "max_retries", int, required=False)
        job, published = self._server.state.create_job(
            queue_name,
            body.get("payload"),
            priority,
            max_retries=3 if max_retries is None else max_retries,
        )
        self._server.emit(published)
        return json_response(201, {"id": job.id})

    # -- job lookups (protocol §8), behind reject_rest() / slow_rest() ----------------

    async def _rest_fault(self, counter: str) -> web.Response | None:
        """An armed ``reject_rest`` answer (after any ``slow_rest`` delay), else ``None``
        and the request counts as served."""
        hub = self._server.hub
        rejection = hub.take_rest_rejection()
        if hub.rest_delay > 0:
            await asyncio.sleep(hub.rest_delay)
        if rejection is not None:
            hub.count("rest_rejected")
            return rejection_response(rejection)
        hub.count(counter)
        return None

    async def _list_jobs(self, request: web.Request) -> web.Response:
        faulted = await self._rest_fault("rest_list")
        if faulted is not None:
            return faulted
        self._authenticate(request)
        strict = self._server.settings.strict
        query = JobQuery.parse(request.query, strict=strict)
        page, has_more = select_jobs(self._server.state.jobs.values(), query)
        response = json_response(200, [job.summary(strict=strict) for job in page])
        if not strict:  # the backend source sends no paging header
            response.headers["X-Has-More"] = "true" if has_more else "false"
        return response

    async def _job_statuses(self, request: web.Request) -> web.Response:
        faulted = await self._rest_fault("rest_status")
        if faulted is not None:
            return faulted
        self._authenticate(request)
        value = request.query.get("ids")
        if value is None:
            return text_response(400, "Failed to deserialize query string: missing field `ids`")
        ids = [part.strip() for part in value.split(",") if part.strip()]
        if len(ids) > _MAX_STATUS_IDS:
            message = f"Maximum {_MAX_STATUS_IDS} job IDs allowed per request"
            return json_response(400, {"error": "bad_request", "message": message})
        jobs = self._server.state.jobs
        return json_response(200, [jobs[i].status_json() for i in dict.fromkeys(ids) if i in jobs])

    async def _get_job(self, request: web.Request) -> web.Response:
        faulted = await self._rest_fault("rest_get")
        if faulted is not None:
            return faulted
        self._authenticate(request)
        job = self._server.state.jobs.get(request.match_info["id"])
        if job is None:
            return json_response(404, _JOB_NOT_FOUND)
        return json_response(200, job.to_json())

    async def _cancel_job(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        job_id = request.match_info["id"]
        if job_id not in self._server.state.jobs:
            return json_response(404, _JOB_NOT_FOUND)
        try:
            self._server.emit(self._server.state.cancel_job(job_id))
        except ValueError as exc:
            return json_response(409, {"error": "conflict", "message": f"Cannot cancel: {exc}"})
        return json_response(200, self._server.state.jobs[job_id].to_json())

    async def _pause_queue(self, request: web.Request) -> web.Response:
        return await self._set_paused(request, paused=True)

    async def _resume_queue(self, request: web.Request) -> web.Response:
        return await self._set_paused(request, paused=False)

    async def _set_paused(self, request: web.Request, *, paused: bool) -> web.Response:
        self._authenticate(request)
        name = request.match_info["name"]
        self._server.emit(self._server.state.pause_queue(name, paused=paused))
        return json_response(200, {"queue_name": name, "paused": paused})

    async def _register_worker(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        body = await read_json(request)
        queue_name = field(body, "queue_name", str)
        field(body, "hostname", str, required=False)
        worker_id, published = self._server.state.register_worker(queue_name)
        self._server.emit(published)
        return json_response(201, {"id": worker_id})

    async def _heartbeat(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        body = await read_json(request) if request.can_read_body else {}
        status = field(body, "status", str, required=False) or "healthy"
        current = field(body, "current_job_id", str, required=False)
        try:
            self._server.emit(
                self._server.state.heartbeat(request.match_info["id"], status, current)
            )
        except KeyError:
            return json_response(404, _WORKER_NOT_FOUND)
        return json_response(200, {"acknowledged": True})

    async def _deregister_worker(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        try:
            self._server.emit(self._server.state.deregister_worker(request.match_info["id"]))
        except KeyError:
            return json_response(404, _WORKER_NOT_FOUND)
        return json_response(200, {"deregistered": True})

    # -- emulator-only controls ---------------------------------------------------------

    async def _emulator_job_status(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        status = field(body, "status", str)
        error = field(body, "error", str, required=False)
        at = field(body, "at", str, required=False)
        job_id = request.match_info["id"]
        if job_id not in self._server.state.jobs:
            return json_response(404, _JOB_NOT_FOUND)
        try:
            moment = None if at is None else parse_timestamp(at)
            self._server.emit(
                self._server.state.set_job_status(job_id, status, error=error, at=moment)
            )
        except ValueError as exc:
            return json_response(400, {"error": "bad_request", "message": str(exc)})
        return json_response(200, self._server.state.jobs[job_id].to_json())

    async def _emulator_publish(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        name = field(body, "type", str)
        data = field(body, "data", dict, required=False) or {}
        return json_response(200, self._server.publish(name, data).body)
