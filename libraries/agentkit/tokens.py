"""JWT test tokens per docs/protocol.md (PyJWT): claims sub, email, iat, exp, type=access."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt

from .transports import http
from .transports.http import HttpFailure
from .wire.masking import REDACTOR
from .wire.paths import render
from .wire.tls import TLSConfig

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
        token = jwt.encode(claims, key, algorithm=algorithm)
        REDACTOR.add(token)
        return token
    except (ValueError, TypeError, jwt.PyJWTError) as err:
        source = f"key file '{key_file}'" if key_file else "the secret"
        raise TokenError(f"Cannot sign a {algorithm} token with {source}: {err}.") from None


def make_token(secret: str, user_id: str, lifetime: float = 3600.0, email: str | None = None) -> str:
    """HS256 access token for ``user_id``: the common case, one call."""
    return encode(build_claims(user_id, email, lifetime), "HS256", secret)


AuthServiceError = HttpFailure


def request_test_token(target, email: str, simulation_key: str | None, header: str | None = None,
                       name: str | None = None, timeout: float | None = None, auth_url: str | None = None,
                       tls: TLSConfig | None = None) -> tuple[int, Any, str]:
    """``POST`` the auth service's test-auth endpoint (the dialect's ``auth_service``:
    path, key header, body); returns ``(status, body, url)``.

    ``target`` gives the defaults (``None`` for none). ``simulation_key=None`` sends no
    key header (for refusal checks). The body is the parsed JSON, or the text when it is
    not JSON; every token in it is remembered so it is masked wherever it appears. Raises
    :class:`~agentkit.transports.http.HttpFailure` (a diagnosis) when no answer came."""
    from .wire import dialect as dialects

    service = (target.dialect if target is not None else dialects.current()).auth_service
    base = auth_url or (target.auth_url if target is not None else None)
    if not base:
        raise ValueError("No auth service URL: pass auth_url=... or set E2E_AUTH_URL.")
    url = base.rstrip("/") + service.get("path", "/auth/e2e/test-auth")
    header = header or (target.key_header if target is not None else None) or \
        service.get("simulation_key_header", "X-E2E-OAuth-Simulation-Key")
    headers = {header: simulation_key} if simulation_key else {}
    REDACTOR.add(simulation_key, keep=0)
    body_template = service.get("body", {"email": "{email}", "name": "{name}"})
    body = render(body_template, {"email": email, "name": name or email.split("@")[0]})
    answer = http.request("POST", url, tls=tls or (target.tls if target is not None else None), headers=headers,
                          json=body, timeout=timeout or (target.connect_timeout if target is not None else 10.0),
                          what=f"POST {url} (the auth service's test-auth endpoint)")
    if isinstance(answer.body, dict):
        for field in service.get("secret_fields", ["access_token", "refresh_token"]):
            REDACTOR.add(answer.body.get(field) if isinstance(answer.body.get(field), str) else None)
    return answer.status, answer.body, url
