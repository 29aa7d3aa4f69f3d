"""HTTP plumbing shared by the emulator's routes: bodies, error shapes, common headers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from spooled_integrations.testing._auth import Rejected
from spooled_integrations.testing._hub import Rejection

__all__ = [
    "API",
    "add_api_headers",
    "api_middleware",
    "field",
    "invalid_json",
    "json_response",
    "read_json",
    "rejection_response",
    "text_response",
    "validation_error",
]

API = "/api/v1"


def text_response(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


def json_response(status: int, value: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(value), content_type="application/json")


def rejection_response(rejection: Rejection) -> web.Response:
    """The answer an armed fault gives: its status, body and ``Retry-After``."""
    body = rejection.body
    if body is None:
        body = HTTPStatus(rejection.status).phrase
    if isinstance(body, (dict, list)):
        response = json_response(rejection.status, body)
    elif isinstance(body, bytes):
        response = web.Response(status=rejection.status, body=body)
    else:
        response = text_response(rejection.status, body)
    if rejection.retry_after is not None:
        response.headers["Retry-After"] = str(rejection.retry_after)
    return response


def invalid_json(message: str) -> Rejected:
    detail = {"field": "body", "message": message, "code": "PARSE_ERROR"}
    return Rejected(400, {"error": "Invalid JSON", "code": "INVALID_JSON", "details": [detail]})


def validation_error(field: str, message: str) -> Rejected:
    detail = {"field": field, "message": message, "code": "length"}
    return Rejected(
        400, {"error": "Validation failed", "code": "VALIDATION_ERROR", "details": [detail]}
    )


def _respond(rejected: Rejected) -> web.Response:
    if isinstance(rejected.body, str):
        return text_response(rejected.status, rejected.body)
    return json_response(rejected.status, rejected.body)


async def read_json(request: web.Request) -> dict[str, Any]:
    """A JSON object body, with the backend's ``Invalid JSON`` answer for anything else."""
    if "json" not in request.content_type:
        raise invalid_json("Expected request with `Content-Type: application/json`")
    try:
        value = json.loads(await request.read())
    except ValueError:
        raise invalid_json("Failed to parse the request body as JSON") from None
    if not isinstance(value, dict):
        raise invalid_json("Expected a JSON object")
    return value


def field(body: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise invalid_json(f"missing field `{name}`")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid_json(f"invalid type for `{name}`: expected {kind.__name__}")
    return value


@web.middleware
async def api_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path.startswith(API):
        version = request.headers.get("X-API-Version")
        if (
            version
            and len(version) <= 16
            and all(c.isascii() and (c.isalnum() or c == ".") for c in version)
            and version != "1"
        ):
            return text_response(400, f"Unsupported API version: {version}. Supported versions: 1")
    try:
        return await handler(request)
    except Rejected as rejected:
        return _respond(rejected)


async def add_api_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith(API):
        response.headers["x-request-id"] = request.headers.get("x-request-id") or str(uuid.uuid4())
        response.headers["x-api-version"] = "1"
