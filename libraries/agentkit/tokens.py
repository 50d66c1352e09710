"""JWT test tokens per PROTOCOL.md (PyJWT): claims sub, email, iat, exp, type=access."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import requests

ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256")


class TokenError(ValueError):
    """Bad token input; the message names the value and what was expected."""


def signing_key(algorithm: str, secret: str | None = None, key_file: str | None = None) -> str:
    if algorithm not in ALGORITHMS:
        raise TokenError(f"Algorithm '{algorithm}' is not supported: expected one of {', '.join(ALGORITHMS)}.")
    if algorithm.startswith("HS"):
        if not secret:
            raise TokenError(f"{algorithm} needs a shared secret (E2E_JWT_SECRET), got none.")
        return secret
    if not key_file:
        raise TokenError(f"{algorithm} needs a private key file, got none.")
    path = Path(key_file)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise TokenError(f"Key file '{key_file}' cannot be read: {err.strerror or err}.") from None


def build_claims(user_id: str, email: str | None = None, lifetime: float = 3600.0,
                 permissions: list[str] | None = None, issued_at: float | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    now = int(issued_at if issued_at is not None else time.time())
    claims: dict[str, Any] = {"sub": user_id, "email": email or f"{user_id}@e2e.test", "iat": now,
                              "exp": now + int(lifetime), "type": "access", "jti": uuid.uuid4().hex}
    if permissions:
        claims["permissions"] = list(permissions)
    if extra:
        claims.update(extra)
    return claims


def encode(claims: dict[str, Any], algorithm: str = "HS256", secret: str | None = None,
           key_file: str | None = None) -> str:
    key = signing_key(algorithm, secret, key_file)
    try:
        return jwt.encode(claims, key, algorithm=algorithm)
    except (ValueError, TypeError, jwt.PyJWTError) as err:
        source = f"key file '{key_file}'" if key_file else "the secret"
        raise TokenError(f"Cannot sign a {algorithm} token with {source}: {err}.") from None


def make_token(secret: str, user_id: str, lifetime: float = 3600.0, email: str | None = None) -> str:
    """HS256 access token for ``user_id``: the common case, one call."""
    return encode(build_claims(user_id, email, lifetime), "HS256", secret)


class AuthServiceError(ConnectionError):
    """The auth service could not be reached."""


def request_test_token(auth_url: str, email: str, simulation_key: str | None,
                       header: str = "X-E2E-OAuth-Simulation-Key", name: str | None = None,
                       timeout: float = 10.0, session: requests.Session | None = None) -> tuple[int, Any, str]:
    """``POST <auth_url>/auth/e2e/test-auth``; returns ``(status, body, url)``.

    ``simulation_key=None`` sends no key header (for refusal checks). The body is the
    parsed JSON, or the text when it is not JSON."""
    url = auth_url.rstrip("/") + "/auth/e2e/test-auth"
    headers = {header: simulation_key} if simulation_key else {}
    try:
        resp = (session or requests).post(url, json={"email": email, "name": name or email.split("@")[0]},
                                          headers=headers, timeout=timeout)
    except requests.RequestException as err:
        raise AuthServiceError(f"Cannot reach the auth service at {url}: {err}") from None
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    return resp.status_code, body, url
