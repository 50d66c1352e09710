"""The ``/ws`` endpoint: token check at the upgrade, welcome frame, message dispatch.

A raw ASGI app (mounted in the FastAPI router) so that no per-frame framework
layer sits between uvicorn and the protocol. Contract (PROTOCOL.md):

- no valid token -> ``websocket.close`` before ``accept``, which uvicorn turns
  into an HTTP 403 refusal of the upgrade;
- accepted -> first frame ``system_message``/``connection_established``;
- ``ping`` -> ``pong``; ``user_message`` (or ``message``) -> one run task;
  unknown type / non-JSON / binary -> an ``error`` frame, the connection stays open;
- on close, the connection's run tasks are cancelled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from . import faults as f
from .auth import SUBPROTOCOL_SELECTED, InvalidToken, verify_token, websocket_token
from .config import BackendConfig
from .connections import Connection, ConnectionRegistry
from .runs import RunRequest, new_run_id, new_thread_id, stream_run

log = logging.getLogger("reference_backend.ws")

# Policy violation; uvicorn answers a close-before-accept with HTTP 403 anyway.
_REFUSE = {"type": "websocket.close", "code": 1008}


def error_frame(code: str, message: str) -> str:
    return json.dumps({"type": "error", "data": {"code": code, "message": message}})


_INVALID_JSON = error_frame("invalid_json", "frame is not a JSON text message")


class InvalidMessage(ValueError):
    """A ``user_message`` the server cannot run; the text goes into the error frame."""


def parse_run_request(message: dict) -> RunRequest:
    """Build a run request from ``user_message`` (payload) or ``message`` (top level)."""
    if message.get("type") == "user_message":
        source = message.get("payload")
        if not isinstance(source, dict):
            raise InvalidMessage("user_message needs a payload object with content")
    else:
        source = message
    content = source.get("content")
    if not isinstance(content, str) or not content:
        raise InvalidMessage("content is required and must be a non-empty string")
    ids = {}
    for key in ("thread_id", "run_id"):
        value = source.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidMessage(f"{key} must be a non-empty string when given")
        ids[key] = value
    return RunRequest(content, ids["thread_id"] or new_thread_id(), ids["run_id"] or new_run_id())


class AgentWebSocket:
    """ASGI app for one path; one call per WebSocket connection."""

    def __init__(self, config: BackendConfig, registry: ConnectionRegistry) -> None:
        self.config = config
        self.registry = registry

    async def __call__(self, scope: dict, receive, send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        token = websocket_token(scope)
        if token is None:
            log.info("refused upgrade from %s: no token", _peer(scope))
            await send(_REFUSE)
            return
        try:
            claims = verify_token(token, self.config)
        except InvalidToken as exc:
            log.info("refused upgrade from %s: %s", _peer(scope), exc)
            await send(_REFUSE)
            return
        offered = scope.get("subprotocols") or ()
        subprotocol = SUBPROTOCOL_SELECTED if SUBPROTOCOL_SELECTED in offered else None
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        conn = Connection(claims["sub"], send)
        self.registry.add(conn)
        log.info("connection %s opened: user %s from %s", conn.id, conn.user_id, _peer(scope))
        try:
            await self._serve(conn, receive)
        finally:
            conn.closed = True
            self.registry.remove(conn)
            in_flight = len(conn.runs)
            conn.cancel_runs()
            log.info("connection %s closed: user %s, %d run(s) cancelled", conn.id, conn.user_id, in_flight)

    async def _serve(self, conn: Connection, receive) -> None:
        if not self.config.has(f.NO_CONNECTION_ESTABLISHED):
            welcome = {
                "type": "system_message",
                "data": {"event": "connection_established", "connection_id": conn.id, "user_id": conn.user_id},
            }
            await conn.send_text(json.dumps(welcome))
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive":
                continue
            text = message.get("text")
            if text is None:
                await conn.send_text(_INVALID_JSON)
                continue
            await self._dispatch(conn, text)

    async def _dispatch(self, conn: Connection, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            await conn.send_text(_INVALID_JSON)
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            await conn.send_text(f'{{"type":"pong","timestamp":{time.time()!r}}}')
        elif kind in ("user_message", "message"):
            try:
                request = parse_run_request(message)
            except InvalidMessage as exc:
                await conn.send_text(error_frame("invalid_message", str(exc)))
                return
            task = asyncio.create_task(stream_run(conn, request, self.config, self.registry))
            conn.runs.add(task)
            task.add_done_callback(conn.runs.discard)
        else:
            await conn.send_text(error_frame("unknown_message_type", f"unknown message type {kind!r}"))


def _peer(scope: dict) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"
