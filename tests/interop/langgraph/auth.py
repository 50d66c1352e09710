"""Our JWT auth for the LangGraph Agent Server: HS256 tokens, and every thread owned by its user.

Authentication: the token comes from ``Authorization: Bearer <jwt>``, else from the
``?token=`` query parameter (a WebSocket client may not be able to set headers). It must be
HS256, signed with ``E2E_JWT_SECRET``, and carry ``sub`` and ``exp``. Any failure raises
401; on a WebSocket the server turns that into a refused upgrade (HTTP 403, empty body).

Authorization (owner scoping): a thread is stamped ``metadata.owner = <sub>`` when it is
created, and every other thread action (read, update, delete, search, runs, the event
stream) is filtered to the caller's own threads. Another user's thread is "not found" to
you. Assistants (the graphs) are shared, so their actions are left open. See README.md for
what a second user sees on the WebSocket of the first user's thread.
"""

from __future__ import annotations

import os

import jwt
from langgraph_sdk import Auth

auth = Auth()
# The kit's own tests switch scoping off once, to show that "A Thread Belongs To Its User"
# fails against a server that lets a second user join a thread.
OWNER_SCOPING = os.environ.get("AGENTKIT_LG_OWNER_SCOPING", "on") != "off"


def _secret() -> str:
    secret = os.environ.get("E2E_JWT_SECRET", "")
    if not secret:
        raise Auth.exceptions.HTTPException(status_code=500, detail="E2E_JWT_SECRET is not set on the server")
    return secret


def _token(authorization: str | None, query_params: dict | None) -> str:
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Auth.exceptions.HTTPException(status_code=401, detail="Authorization header must be 'Bearer <jwt>'")
        return token.strip()
    token = (query_params or {}).get("token")
    if isinstance(token, list):  # a multi-valued query parameter
        token = token[0] if token else None
    if not token:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Missing token")
    return token


@auth.authenticate
async def authenticate(authorization: str | None, query_params: dict | None) -> Auth.types.MinimalUserDict:
    token = _token(authorization, query_params)
    try:
        claims = jwt.decode(token, _secret(), algorithms=["HS256"], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Token expired") from None
    except jwt.InvalidSignatureError:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token signature") from None
    except jwt.InvalidTokenError as exc:
        raise Auth.exceptions.HTTPException(status_code=401, detail=f"Invalid token: {exc}") from None
    return {"identity": str(claims["sub"]), "permissions": list(claims.get("permissions") or [])}


@auth.on.threads.create
async def stamp_owner(ctx: Auth.types.AuthContext, value: dict) -> dict:
    """A new thread belongs to its creator; the filter also guards an existing id."""
    if not OWNER_SCOPING:
        return None
    if isinstance(value.get("metadata"), dict):
        value["metadata"]["owner"] = ctx.user.identity  # in place: the server keeps this dict
    else:
        value["metadata"] = {"owner": ctx.user.identity}
    return {"owner": ctx.user.identity}


@auth.on.threads
async def own_threads_only(ctx: Auth.types.AuthContext, value: dict) -> dict:
    """Every other thread action, runs on a thread included: only the caller's own threads."""
    return {"owner": ctx.user.identity} if OWNER_SCOPING else None


@auth.on.assistants
async def shared_assistants(ctx: Auth.types.AuthContext, value: dict) -> None:
    """The graphs are shared by every authenticated user."""
    return None


@auth.on
async def deny_everything_else(ctx: Auth.types.AuthContext, value: dict) -> bool:
    """Crons and the store are not part of these tests: closed, so nothing leaks through them."""
    return False
