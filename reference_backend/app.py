"""The FastAPI app: health, discovery, MCP info, the e2e auth service, and ``/ws``.

``/api/*`` requires ``Authorization: Bearer <valid token>`` (401 otherwise);
``/health`` and ``/auth/*`` are open. Discovery URLs are built from the
request's own scheme, host and port, so they are right for whatever port was
bound and https/wss under TLS. The HTTP endpoints are the same on every wire
but for the e2e auth service's key header and answer, which the wire names.
"""

from __future__ import annotations

import time

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse

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


def create_app(config: BackendConfig) -> FastAPI:
    """Build the app for one configuration; no global state is shared between apps."""
    # Every endpoint is async: sync ones would hop to a thread pool for no gain.
    app = FastAPI(title="Reference agent backend", version=__version__)
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

    async def require_user(authorization: str | None = Header(default=None)) -> dict:
        token = bearer_token(authorization)
        if token is None:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        try:
            return verify_token(token, config)
        except InvalidToken:
            raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"}) from None

    @app.get("/health")
    async def public_health() -> JSONResponse:
        return health()

    @app.get("/api/health", dependencies=[Depends(require_user)])
    async def api_health() -> JSONResponse:
        return health()

    @app.get("/api/discovery/services", dependencies=[Depends(require_user)])
    async def discovery(request: Request) -> dict:
        base = str(request.base_url).rstrip("/")
        ws_base = "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]
        return {
            "services": {
                "backend": {"url": base, "health": base + "/health"},
                "websocket": {"url": ws_base + "/ws", "subprotocol": "jwt-auth", "wire": wire.name},
                "auth": {"url": base, "health": base + "/auth/health"},
            }
        }

    @app.get("/api/mcp/config", dependencies=[Depends(require_user)])
    async def mcp_config() -> dict:
        return {
            "version": "1",
            "servers": {MCP_SERVER_NAME: {"transport": "builtin", "tools": list(TOOL_NAMES)}},
        }

    @app.get("/api/mcp/servers", dependencies=[Depends(require_user)])
    async def mcp_servers() -> dict:
        return {"data": [{"name": MCP_SERVER_NAME, "status": "connected", "tools": list(TOOL_NAMES)}]}

    @app.get("/auth/health")
    async def auth_health() -> dict:
        return {"status": "healthy", "service": "reference-auth"}

    @app.post("/auth/e2e/test-auth")
    async def e2e_test_auth(request: Request) -> JSONResponse:
        # Key first: a caller without the key learns nothing about the body rules.
        if not simulation_key_ok(request.headers.get(wire.simulation_key_header), config):
            return JSONResponse({"detail": "invalid or missing simulation key"}, status_code=401)
        try:
            body = await request.json()
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
    app.router.add_websocket_route("/ws", agent_ws)
    app.state.agent_websocket = agent_ws
    return app


class WebSocketFastPath:
    """ASGI app: ``/ws`` WebSocket scopes go straight to their handler, all else to FastAPI.

    Same behaviour as the FastAPI route; it only skips the framework's middleware
    and routing layers per connection (~10% of the server CPU per session, measured
    with benchmarks/backend_throughput.py).
    """

    def __init__(self, app: FastAPI) -> None:
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
