"""The Starlette app: health, discovery, MCP info, the e2e auth service, and ``/ws``.

``/api/*`` requires ``Authorization: Bearer <valid token>`` (401 otherwise);
``/health`` and ``/auth/*`` are open. Discovery URLs are built from the
request's own scheme, host and port, so they are right for whatever port was
bound and https/wss under TLS. The HTTP endpoints are the same on every wire
but for the e2e auth service's key header and answer, which the wire names.
"""

from __future__ import annotations

import json
import time
from typing import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from . import __version__
from . import faults as f
from .auth import InvalidToken, bearer_token, issue_token, simulation_key_ok, verify_token
from .config import TOOL_NAMES, BackendConfig
from .connections import ConnectionRegistry
from .runs import Runner
from .scenarios import Player
from .wires import create_wire
from .ws import AgentWebSocket

MCP_SERVER_NAME = "reference-tools"

Endpoint = Callable[[Request], Awaitable[JSONResponse]]


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Every HTTP error as ``{"detail": ...}`` with the exception's headers (FastAPI's shape)."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(config: BackendConfig) -> Starlette:
    """Build the app for one configuration; no global state is shared between apps."""
    # Starlette, not FastAPI: seven plain JSON routes need no models, and the backend's
    # import is 0.33 s instead of 0.8 s on every start (benchmarks/README.md, "What a whole
    # suite run costs").
    registry = ConnectionRegistry()
    wire = create_wire(config)
    started = time.time()

    def health() -> JSONResponse:
        if config.has(f.HEALTH_500):
            return JSONResponse({"status": "unhealthy"}, status_code=500)
        return JSONResponse(
            {
                "status": "healthy",
                "service": "reference-backend",
                "version": __version__,
                "uptime_s": round(time.time() - started, 3),
                "connections": len(registry),
            }
        )

    def require_user(endpoint: Endpoint) -> Endpoint:
        """``/api/*``: a valid ``Authorization: Bearer`` token, else 401 with a challenge."""
        async def guarded(request: Request) -> JSONResponse:
            token = bearer_token(request.headers.get("authorization"))
            if token is None:
                raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
            try:
                verify_token(token, config)
            except InvalidToken:
                raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"}) from None
            return await endpoint(request)
        return guarded

    async def public_health(request: Request) -> JSONResponse:
        return health()

    async def discovery(request: Request) -> JSONResponse:
        base = str(request.base_url).rstrip("/")
        ws_base = "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]
        return JSONResponse({
            "services": {
                "backend": {"url": base, "health": base + "/health"},
                "websocket": {"url": ws_base + "/ws", "subprotocol": "jwt-auth", "wire": wire.name},
                "auth": {"url": base, "health": base + "/auth/health"},
            }
        })

    async def mcp_config(request: Request) -> JSONResponse:
        return JSONResponse({
            "version": "1",
            "servers": {MCP_SERVER_NAME: {"transport": "builtin", "tools": list(TOOL_NAMES)}},
        })

    async def mcp_servers(request: Request) -> JSONResponse:
        return JSONResponse({"data": [{"name": MCP_SERVER_NAME, "status": "connected", "tools": list(TOOL_NAMES)}]})

    async def auth_health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "healthy", "service": "reference-auth"})

    async def e2e_test_auth(request: Request) -> JSONResponse:
        # Key first: a caller without the key learns nothing about the body rules.
        if not simulation_key_ok(request.headers.get(wire.simulation_key_header), config):
            return JSONResponse({"detail": "invalid or missing simulation key"}, status_code=401)
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        email = body.get("email") if isinstance(body, dict) else None
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(email, str) or "@" not in email or (name is not None and not isinstance(name, str)):
            return JSONResponse({"detail": "body must be {\"email\": <address>, \"name\": <string>}"}, status_code=400)
        token, claims = issue_token(email, name, config)
        return JSONResponse(wire.test_auth_body(token, claims))

    player = Player(config.scenarios, config.think_delay, config.tools)
    agent_ws = AgentWebSocket(config, registry, wire, Runner(config, registry, wire, player))
    routes = [
        Route("/health", public_health, methods=["GET"]),
        Route("/api/health", require_user(public_health), methods=["GET"]),
        Route("/api/discovery/services", require_user(discovery), methods=["GET"]),
        Route("/api/mcp/config", require_user(mcp_config), methods=["GET"]),
        Route("/api/mcp/servers", require_user(mcp_servers), methods=["GET"]),
        Route("/auth/health", auth_health, methods=["GET"]),
        Route("/auth/e2e/test-auth", e2e_test_auth, methods=["POST"]),
        WebSocketRoute("/ws", agent_ws),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.agent_websocket = agent_ws
    return app


class WebSocketFastPath:
    """ASGI app: ``/ws`` WebSocket scopes go straight to their handler, all else to Starlette.

    Same behaviour as the routed ``/ws``; it only skips the framework's middleware
    and routing layers per connection (~10% of the server CPU per session, measured
    with benchmarks/backend_throughput.py).
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self._ws = app.state.agent_websocket

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await self._ws(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_asgi_app(config: BackendConfig) -> WebSocketFastPath:
    """The app the server runs: :func:`create_app` behind the ``/ws`` fast path."""
    return WebSocketFastPath(create_app(config))
