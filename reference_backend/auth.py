"""Token checks and token issuing (HS256 JWTs, docs/protocol.md "Tokens").

A token is valid when its signature verifies with the shared secret, it has
``sub`` and ``exp``, it has not expired, and its ``type`` is absent or
``access``. The ``accept-expired`` fault skips only the expiry check.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qs

import jwt

from .config import BackendConfig
from .faults import ACCEPT_EXPIRED

SUBPROTOCOL_SELECTED = "jwt-auth"
SUBPROTOCOL_TOKEN_PREFIX = "jwt."


class InvalidToken(Exception):
    """The token was refused; the message says why (for logs, never for clients)."""


def verify_token(token: str, config: BackendConfig) -> dict:
    """Return the claims of a valid token, or raise :class:`InvalidToken`."""
    options = {"require": ["sub", "exp"], "verify_exp": not config.has(ACCEPT_EXPIRED)}
    try:
        claims = jwt.decode(token, config.jwt_secret, algorithms=["HS256"], options=options)
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"{type(exc).__name__}: {exc}") from None
    if claims.get("type", "access") != "access":
        raise InvalidToken(f"token type {claims.get('type')!r} is not 'access'")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise InvalidToken("sub is empty")
    return claims


def issue_token(email: str, name: str | None, config: BackendConfig, token_type: str = "access",
                ttl: int | None = None) -> tuple[str, dict]:
    """Sign a token for the e2e auth service: (token, claims); the same email always gets the same ``sub``."""
    now = int(time.time())
    claims = {
        # Deterministic id, so one email is one user across logins.
        "sub": "user_" + hashlib.sha256(email.lower().encode()).hexdigest()[:16],
        "email": email,
        "iat": now,
        "exp": now + (config.token_ttl if ttl is None else ttl),
        "type": token_type,
    }
    if name:
        claims["name"] = name
    return jwt.encode(claims, config.jwt_secret, algorithm="HS256"), claims


def simulation_key_ok(provided: str | None, config: BackendConfig) -> bool:
    """Compare the e2e simulation key in constant time."""
    if not provided:
        return False
    return hmac.compare_digest(provided.encode(), config.simulation_key.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def websocket_token(scope: dict) -> str | None:
    """Find the token of a WebSocket upgrade: subprotocol ``jwt.<t>``, then bearer header, then ``?token=``."""
    for proto in scope.get("subprotocols") or ():
        if proto.startswith(SUBPROTOCOL_TOKEN_PREFIX):
            return proto[len(SUBPROTOCOL_TOKEN_PREFIX):]
    return header_or_query_token(scope)


def header_or_query_token(scope: dict) -> str | None:
    """The token of an upgrade's ``Authorization: Bearer`` header, else of its ``?token=``."""
    for key, value in scope.get("headers") or ():
        if key == b"authorization":
            token = bearer_token(value.decode("latin-1"))
            if token:
                return token
    query = scope.get("query_string") or b""
    if query:
        values = parse_qs(query.decode("latin-1")).get("token")
        if values:
            return values[0]
    return None
