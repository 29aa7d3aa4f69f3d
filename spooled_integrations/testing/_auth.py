"""API key, JWTs, the login limiter and the protected-route checks (protocol §1.3-§1.6).

Everything here runs on the emulator's event-loop thread (control calls are marshalled
there), so no locks are needed.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

__all__ = ["ACCESS", "REFRESH", "Auth", "Identity", "Rejected", "new_api_key", "new_secret"]

_REQUIRED_CLAIMS = (
    "sub",
    "api_key_id",
    "org_id",
    "iat",
    "exp",
    "nbf",
    "jti",
    "queues",
    "token_type",
)
_CLAIM_TYPES: dict[str, type] = {
    "sub": str,
    "api_key_id": str,
    "org_id": str,
    "iat": int,
    "exp": int,
    "nbf": int,
    "jti": str,
    "queues": list,
    "token_type": str,
}

ACCESS = "access"  # token_type claim values
REFRESH = "refresh"

UNAUTHORIZED = {"error": "unauthorized", "message": "Invalid credentials"}
RATE_LIMITED = {
    "error": "rate_limit_exceeded",
    "message": "Too many login attempts. Please try again later.",
}


class Rejected(Exception):
    """An HTTP answer instead of the normal one: ``status`` plus a text or JSON body."""

    def __init__(self, status: int, body: str | dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Identity:
    """What a successful authentication attaches (the backend's ``ApiKeyContext``)."""

    org_id: str
    api_key_id: str
    queues: tuple[str, ...] = ()
    claims: dict[str, Any] | None = None


@dataclass
class _Bucket:
    count: int = 0
    expires_at: float = 0.0


@dataclass
class Auth:
    """One organisation with one API key, a JWT secret, a blacklist and a login limiter."""

    api_key: str
    secret: str
    lifetime: float
    leeway: float
    login_limit: int
    login_window: float
    clock: Callable[[], float] = time.time
    org_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    api_key_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    queues: tuple[str, ...] = ("*",)
    revoked: bool = False
    blacklist: dict[str, float] = field(default_factory=dict)
    _buckets: dict[str, _Bucket] = field(default_factory=dict, init=False, repr=False)

    # -- tokens ---------------------------------------------------------------

    def issue(
        self, token_type: str = ACCESS, *, lifetime: float | None = None, **overrides: Any
    ) -> str:
        """A signed HS256 JWT with the nine backend claims (``overrides`` replace any)."""
        now = int(self.clock())
        seconds = self.lifetime * (24 if token_type == REFRESH else 1)
        if lifetime is not None:
            seconds = lifetime
        claims: dict[str, Any] = {
            "sub": self.org_id,
            "api_key_id": self.api_key_id,
            "org_id": self.org_id,
            "iat": now,
            "exp": now + int(seconds),
            "nbf": now,
            "jti": str(uuid.uuid4()),
            "queues": list(self.queues),
            "token_type": token_type,
        }
        claims.update(overrides)
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def decode(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid token (signature, ``exp`` with leeway, all claims), else None."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                leeway=self.leeway,
                options={
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": list(_REQUIRED_CLAIMS),
                },
            )
        except jwt.PyJWTError:
            return None
        for name, kind in _CLAIM_TYPES.items():
            value = claims.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                return None
        if not all(isinstance(queue, str) for queue in claims["queues"]):
            return None
        return claims

    def is_blacklisted(self, claims: dict[str, Any]) -> bool:
        expires = self.blacklist.get(claims["jti"])
        if expires is None:
            return False
        if expires < self.clock():
            del self.blacklist[claims["jti"]]
            return False
        return True

    def _identity(self, claims: dict[str, Any]) -> Identity:
        return Identity(claims["org_id"], claims["api_key_id"], tuple(claims["queues"]), claims)

    # -- protected routes (§1.3) ---------------------------------------------

    def authenticate_header(self, header: str | None) -> Identity:
        """The protected-route middleware: ``Authorization: Bearer <JWT or API key>``."""
        if header is None or not header.startswith("Bearer "):
            raise Rejected(401, "Missing or invalid Authorization header")
        return self.authenticate_credential(header[len("Bearer ") :])

    def authenticate_credential(self, credential: str) -> Identity:
        if credential.startswith("eyJ"):
            return self.authenticate_jwt(credential)
        if credential != self.api_key:
            raise Rejected(401, "Invalid API key")
        if self.revoked:
            raise Rejected(401, "API key is inactive")
        return Identity(self.org_id, self.api_key_id, self.queues)

    def authenticate_jwt(self, token: str) -> Identity:
        claims = self.decode(token)
        if claims is None:
            raise Rejected(401, "Invalid token")
        if claims["token_type"] != ACCESS:
            raise Rejected(401, "Invalid token type")
        if self.is_blacklisted(claims):
            raise Rejected(401, "Token has been revoked")
        if claims["api_key_id"] != self.api_key_id:
            raise Rejected(401, "API key not found")
        if self.revoked:
            raise Rejected(401, "API key has been revoked")
        return self._identity(claims)

    def authenticate_ws_query_token(
        self, token: str | None, *, check_key: bool = False
    ) -> Identity:
        """Step 4 of the WS handshake: a JWT (any token type), not blacklisted.

        The backend source does not look at the API key here; ``check_key`` adds the
        revoked/deleted-key checks (default mode, where the query token may be the only
        credential).
        """
        if token is None:
            raise Rejected(401, "Missing authentication token")
        claims = self.decode(token)
        if claims is None:
            raise Rejected(401, "Invalid or expired token")
        if self.is_blacklisted(claims):
            raise Rejected(401, "Token has been revoked")
        if check_key and claims["api_key_id"] != self.api_key_id:
            raise Rejected(401, "API key not found")
        if check_key and self.revoked:
            raise Rejected(401, "API key has been revoked")
        return self._identity(claims)

    # -- /auth/* (§1.5) --------------------------------------------------------

    def login(self, api_key: str) -> dict[str, Any]:
        """Exchange the API key for tokens; raises :class:`Rejected` with the JSON body."""
        prefix = api_key[:8]
        bucket_id = hashlib.sha256(prefix.encode()).hexdigest()[:16]
        now = self.clock()
        bucket = self._buckets.get(bucket_id)
        if bucket is None or bucket.expires_at <= now:
            bucket = self._buckets[bucket_id] = _Bucket()
        if bucket.count >= self.login_limit:
            raise Rejected(429, RATE_LIMITED)
        bucket.count += 1
        bucket.expires_at = now + self.login_window
        if api_key != self.api_key or self.revoked:
            raise Rejected(401, UNAUTHORIZED)
        seconds = int(self.lifetime)
        return {
            "access_token": self.issue(ACCESS),
            "refresh_token": self.issue(REFRESH),
            "token_type": "Bearer",
            "expires_in": seconds,
            "refresh_expires_in": seconds * 24,
        }

    def refresh(self, token: str) -> dict[str, Any]:
        claims = self.decode(token)
        if (
            claims is None
            or claims["token_type"] != REFRESH
            or self.is_blacklisted(claims)
            or claims["api_key_id"] != self.api_key_id
            or self.revoked
        ):
            raise Rejected(401, UNAUTHORIZED)
        return {
            "access_token": self.issue(ACCESS, queues=claims["queues"]),
            "token_type": "Bearer",
            "expires_in": int(self.lifetime),
        }

    def logout(self, header: str | None) -> None:
        """Blacklist the presented JWT's ``jti`` for the rest of its life."""
        self.authenticate_header(header)
        claims = self._bearer_claims(header)
        self.blacklist[claims["jti"]] = max(float(claims["exp"]), self.clock() + 1)

    def me(self, header: str | None) -> dict[str, Any]:
        claims = self._bearer_claims(header)
        if self.is_blacklisted(claims):
            raise Rejected(401, UNAUTHORIZED)
        return {
            "organization_id": claims["org_id"],
            "api_key_id": claims["api_key_id"],
            "queues": claims["queues"],
            "issued_at": _rfc3339(claims["iat"]),
            "expires_at": _rfc3339(claims["exp"]),
            "organization": None,
        }

    def validate(self, token: str) -> dict[str, Any]:
        claims = self.decode(token)
        if claims is None:
            return {"valid": False, "error": "Invalid token"}
        if self.is_blacklisted(claims):
            return {"valid": False, "error": "Token has been revoked"}
        ordered = {name: claims[name] for name in _REQUIRED_CLAIMS}
        return {"valid": True, "claims": ordered}

    def _bearer_claims(self, header: str | None) -> dict[str, Any]:
        if header is None or not header.startswith("Bearer "):
            raise Rejected(401, UNAUTHORIZED)
        claims = self.decode(header[len("Bearer ") :])
        if claims is None:
            raise Rejected(401, UNAUTHORIZED)
        return claims


def _rfc3339(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def new_api_key() -> str:
    return "sk_test_" + secrets.token_urlsafe(24)


def new_secret() -> str:
    return secrets.token_urlsafe(48)
