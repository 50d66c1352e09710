"""A minimal second implementation of docs/protocol.md on the raw ``websockets`` package.

Two jobs: the baseline of ``backend_throughput.py`` (how fast the protocol can
be served in pure asyncio Python without a web framework), and an independent
implementation of the contract, written from docs/protocol.md without sharing code
with ``reference_backend/`` or ``libraries/``.

Serves: ``/ws`` (JWT from subprotocol ``jwt.<t>``, ``Authorization: Bearer`` or
``?token=``; refusal is HTTP 403 before the upgrade), and the GET endpoints
``/health``, ``/api/health``, ``/api/discovery/services``, ``/api/mcp/config``,
``/api/mcp/servers`` (bearer required, else 401), ``/auth/health``.
``POST /auth/e2e/test-auth`` cannot be served on the WebSocket port (the websockets
HTTP parser rejects request bodies before any hook runs), so with ``--auth-port`` an
auth service on its own port (docs/protocol.md allows that) serves ``GET /auth/health`` and
``POST /auth/e2e/test-auth`` with the standard library's HTTP server.

Usage: ``python benchmarks/raw_protocol_server.py --port 0 [--think-delay S] [--tools N]
[--auth-port 0]``; prints ``reference backend listening on http://127.0.0.1:<port>`` once
serving, preceded by ``auth service listening on http://127.0.0.1:<port>`` with ``--auth-port``.
Simulation key: ``E2E_OAUTH_SIMULATION_KEY`` (default ``reference-backend-dev-simulation-key``).
Secret: ``E2E_JWT_SECRET`` (default ``reference-backend-dev-secret-not-for-shared-use``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import time
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import jwt
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

SECRET = os.environ.get("E2E_JWT_SECRET") or "reference-backend-dev-secret-not-for-shared-use"
TOOLS = ("search_docs", "summarize", "fetch_url", "calculate", "lookup_user")


def check_token(token):
    """Claims of a valid access token (HS256, sub and exp, unexpired), else None."""
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"require": ["sub", "exp"]})
    except jwt.PyJWTError:
        return None
    return claims if claims.get("type", "access") == "access" and claims["sub"] else None


def token_of(request):
    for header in request.headers.get_all("Sec-WebSocket-Protocol"):
        for proto in header.split(","):
            if proto.strip().startswith("jwt."):
                return proto.strip()[4:]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return (parse_qs(urlsplit(request.path).query).get("token") or [None])[0]


def json_response(connection, status, body):
    response = connection.respond(status, json.dumps(body))
    response.headers["Content-Type"] = "application/json"
    return response


def http_get(connection, request, path):
    host = request.headers.get("Host", "127.0.0.1")
    if path.startswith("/api/") and not check_token(token_of(request) or ""):
        return json_response(connection, HTTPStatus.UNAUTHORIZED, {"detail": "invalid or missing bearer token"})
    bodies = {
        "/health": {"status": "healthy"},
        "/api/health": {"status": "healthy"},
        "/auth/health": {"status": "healthy"},
        "/api/discovery/services": {"services": {
            "backend": {"url": f"http://{host}"}, "websocket": {"url": f"ws://{host}/ws"},
            "auth": {"url": f"http://{host}"}}},
        "/api/mcp/config": {"servers": {"raw-tools": {"tools": list(TOOLS)}}},
        "/api/mcp/servers": {"data": [{"name": "raw-tools", "status": "connected"}]},
    }
    if path in bodies and request.method == "GET":
        return json_response(connection, HTTPStatus.OK, bodies[path])
    return json_response(connection, HTTPStatus.NOT_FOUND, {"detail": "not found"})


def process_request(connection, request):
    path = urlsplit(request.path).path
    if path != "/ws" or "upgrade" not in request.headers.get("Connection", "").lower():
        return http_get(connection, request, path)
    claims = check_token(token_of(request) or "")
    if claims is None:
        return connection.respond(HTTPStatus.FORBIDDEN, "invalid or missing token\n")
    connection.user_id = claims["sub"]
    return None


def select_subprotocol(connection, offered):
    return "jwt-auth" if "jwt-auth" in offered else None


async def run(ws, user_id, payload, think_delay, tools):
    ids = {"run_id": payload.get("run_id") or "run_" + secrets.token_hex(8),
           "thread_id": payload.get("thread_id") or "thread_" + secrets.token_hex(8), "user_id": user_id}
    content = payload["content"][:80]
    steps = [("agent_started", {"agent_name": "raw_agent"}), ("agent_thinking", {"thought": "Planning: " + content})]
    for i in range(tools):
        name = TOOLS[i % len(TOOLS)]
        steps += [("tool_executing", {"tool_name": name, "parameters": {"query": content}}),
                  ("tool_completed", {"tool_name": name, "result": {"summary": "ok"},
                                      "duration_ms": think_delay * 1000})]
    steps += [("agent_thinking", {"thought": "Composing"}), ("agent_completed", {"result": "Answer to: " + content})]
    for index, (kind, data) in enumerate(steps):
        if index and think_delay:
            await asyncio.sleep(think_delay)
        await ws.send(json.dumps({"type": kind, **ids, "timestamp": time.time(), "data": data}))


async def handler(ws, think_delay, tools):
    user_id, tasks = ws.user_id, set()
    await ws.send(json.dumps({"type": "system_message", "data": {
        "event": "connection_established", "connection_id": "ws_" + secrets.token_hex(8), "user_id": user_id}}))
    try:
        async for frame in ws:
            try:
                message = json.loads(frame) if isinstance(frame, str) else None
            except ValueError:
                message = None
            if not isinstance(message, dict):
                code = "invalid_json" if message is None else "unknown_message_type"
                await ws.send(json.dumps({"type": "error", "data": {"code": code}}))
            elif message.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong", "timestamp": time.time()}))
            elif message.get("type") in ("user_message", "message"):
                payload = message.get("payload") if message["type"] == "user_message" else message
                if not isinstance(payload, dict) or not isinstance(payload.get("content"), str):
                    await ws.send(json.dumps({"type": "error", "data": {"code": "invalid_message"}}))
                    continue
                task = asyncio.create_task(run(ws, user_id, payload, think_delay, tools))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                await ws.send(json.dumps({"type": "error", "data": {"code": "unknown_message_type"}}))
    except ConnectionClosed:
        pass
    finally:
        for task in tasks:
            task.cancel()


SIMULATION_KEY = os.environ.get("E2E_OAUTH_SIMULATION_KEY") or "reference-backend-dev-simulation-key"


def start_auth_service(host, port):
    """The auth service on its own port, in a thread: health and test-auth token issue."""
    import hmac
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet: one line per request would swamp the log
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/auth/health":
                return self.reply(200, {"status": "healthy"})
            self.reply(404, {"detail": "not found"})

        def do_POST(self):
            if self.path != "/auth/e2e/test-auth":
                return self.reply(404, {"detail": "not found"})
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return self.reply(400, {"detail": "invalid json"})
            key = self.headers.get("X-E2E-OAuth-Simulation-Key") or ""
            if not hmac.compare_digest(key.encode(), SIMULATION_KEY.encode()):
                return self.reply(401, {"detail": "invalid simulation key"})
            email = str(body.get("email") or "")
            if not email:
                return self.reply(422, {"detail": "email required"})
            now = int(time.time())
            token = jwt.encode({"sub": email.split("@")[0], "email": email, "iat": now, "exp": now + 900,
                                "type": "access"}, SECRET, algorithm="HS256")
            self.reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 900})

    httpd = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


async def main(args):
    auth = start_auth_service(args.host, args.auth_port) if args.auth_port is not None else None
    if auth is not None:
        print(f"auth service listening on http://{args.host}:{auth.server_address[1]}", flush=True)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(lambda ws: handler(ws, args.think_delay, args.tools), args.host, args.port,
                     process_request=process_request, select_subprotocol=select_subprotocol,
                     compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"reference backend listening on http://{args.host}:{port}", flush=True)
        await stop
    if auth is not None:
        auth.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--think-delay", type=float, default=0.02)
    parser.add_argument("--tools", type=int, default=1)
    parser.add_argument("--auth-port", type=int, default=None, help="serve the auth service on this port (0: free)")
    asyncio.run(main(parser.parse_args()))
