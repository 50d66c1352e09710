"""The netra wire: every row of the "Variants: the netra wire" section of docs/protocol.md.

- handshake: token in subprotocol ``jwt.<base64url of the jwt>`` (base64url tried first,
  then the raw value), ``jwt-auth.<t>``, ``bearer.<t>``, ``Authorization: Bearer`` or
  ``?token=``; the server selects the token-bearing subprotocol it found the token in;
- refusal: the upgrade is accepted (101), then an ``error_message`` frame with
  ``error_code`` ``AUTH_FAILED``, then close 1008 "Authentication failed", before any welcome;
- welcome ``connection_established`` with the user id cut to its first 8 characters;
- client messages: ``user_message`` (``payload.content``, ``payload.message`` or
  ``payload.text``), ``message`` / ``chat_message`` with top-level ``content``; ``ping``;
  ``pong`` (answers the server's heartbeat); any other type -> ``ack``;
- events flat (no ``data``), ISO 8601 timestamps; error frames ``error_message``;
- the e2e auth service reads ``X-E2E-Bypass-Key`` and adds ``refresh_token`` and ``user``;
- the server pings (:mod:`reference_backend.heartbeat`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import time
from datetime import datetime, timezone

from .. import faults as f
from .. import scenarios as s
from ..auth import SUBPROTOCOL_SELECTED, InvalidToken, header_or_query_token, issue_token, verify_token
from ..connections import AsgiSend, Connection
from ..runs import RunRequest, new_run_id, new_thread_id
from .base import Part, RunRenderer, Wire, peer, split_at_timestamp

log = logging.getLogger("reference_backend.ws")

TOKEN_PREFIXES = ("jwt.", "jwt-auth.", "bearer.")
GOLDEN_PATH_EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
AUTH_FAILED_REASON = "Authentication failed"
RUN_TYPES = ("user_message", "message", "chat_message")
_URLSAFE = str.maketrans("-_", "+/")
_NOT_JSON = object()


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def error_frame(code: str, message: str) -> str:
    return json.dumps({"type": "error_message", "error_code": code, "error_message": message,
                       "details": {}, "timestamp": time.time()})


def _base64url_text(value: str) -> str | None:
    """``value`` decoded from base64url (padding optional), if it is that and ASCII inside."""
    try:
        raw = base64.b64decode(value.translate(_URLSAFE) + "=" * (-len(value) % 4), validate=True)
        return raw.decode("ascii")
    except (binascii.Error, ValueError):
        return None


def find_token(scope: dict) -> tuple[list[str], str | None]:
    """(token candidates in the order to try, the subprotocol to select)."""
    offered = scope.get("subprotocols") or ()
    for proto in offered:
        for prefix in TOKEN_PREFIXES:
            if proto.startswith(prefix) and len(proto) > len(prefix):
                value = proto[len(prefix):]
                decoded = _base64url_text(value)
                return ([decoded, value] if decoded and decoded != value else [value]), proto
    token = header_or_query_token(scope)
    return ([token] if token else []), (SUBPROTOCOL_SELECTED if SUBPROTOCOL_SELECTED in offered else None)


class InvalidMessage(ValueError):
    """A run request the server cannot run; the text goes into the error frame."""


def parse_run_request(message: dict) -> RunRequest:
    """``user_message`` reads its payload first, ``message``/``chat_message`` the top level first."""
    payload = message.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    sources = (payload, message) if message["type"] == "user_message" else (message, payload)
    content = next((source[key] for source in sources for key in ("content", "message", "text")
                    if isinstance(source.get(key), str) and source[key]), None)
    if content is None:
        raise InvalidMessage(f"{message['type']} needs a non-empty string content "
                             "(payload.content, payload.message, payload.text or top-level content)")
    ids = {}
    for key in ("thread_id", "run_id"):
        value = next((source[key] for source in sources if source.get(key) is not None), None)
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidMessage(f"{key} must be a non-empty string when given")
        ids[key] = value
    return RunRequest(content, ids["thread_id"] or new_thread_id(), ids["run_id"] or new_run_id())


class NetraRenderer(RunRenderer):
    def __init__(self, request: RunRequest, user_id: str, faults: frozenset[str]) -> None:
        run_id = new_run_id() if f.WRONG_RUN_ID in faults else request.run_id
        self.ids = {"run_id": run_id, "thread_id": request.thread_id,
                    "request_id": "req_" + secrets.token_hex(8), "user_id": user_id}
        self.task = request.content
        self.step = 0

    def _part(self, role: str, call: str | None, event_type: str, **fields) -> Part:
        return (role, call, *split_at_timestamp({"type": event_type, **self.ids, **fields}))

    def parts(self, beat: s.Beat) -> list[Part]:
        kind, tool = beat.kind, beat.tool
        if kind == s.THINK:
            self.step += 1
            return [self._part(f.THINKING, None, "agent_thinking", reasoning=beat.text, step_number=self.step)]
        if kind == s.TOOL_START:
            return [self._part(f.TOOL_START, tool.id, "tool_executing", tool_name=tool.name,
                               tool_args=tool.arguments, parameters=tool.arguments, execution_id=tool.id)]
        if kind == s.TOOL_END:
            fields = {"tool_name": tool.name, "execution_id": tool.id, "results": tool.result,
                      "execution_time": tool.duration_ms, "success": tool.error is None}
            if tool.error is not None:
                fields["error"] = tool.error
            return [self._part(f.TOOL_END, tool.id, "tool_completed", **fields)]
        if kind == s.ANSWER:
            return []  # no delta event on this wire: the answer is final_response
        if kind == s.START:
            return [self._part(f.STARTED, None, "agent_started", agent_name=s.AGENT_NAME,
                               task_description=self.task)]
        if kind == s.FINISH:
            return [self._part(f.COMPLETED, None, "agent_completed", status="completed",
                               final_response=beat.text)]
        if kind == s.FAIL:
            return [self._part(f.FAILED, None, "agent_error", error=beat.text)]
        raise ValueError(f"unknown beat {kind!r}")


class NetraWire(Wire):
    name = "netra"
    simulation_key_header = "X-E2E-Bypass-Key"

    @staticmethod
    def stamp() -> str:
        return '"' + iso_now() + '"'

    async def open(self, scope: dict, send: AsgiSend) -> Connection | None:
        candidates, subprotocol = find_token(scope)
        claims, reason = None, "no token"
        for token in candidates:
            try:
                claims = verify_token(token, self.config)
                break
            except InvalidToken as exc:
                reason = str(exc)
        # That backend accepts first and judges the token after: a refusal is a close.
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        if claims is None:
            log.info("refused connection from %s: %s", peer(scope), reason)
            await send({"type": "websocket.send", "text": error_frame(
                "AUTH_FAILED", "Authentication failed: token missing, invalid or expired")})
            await send({"type": "websocket.close", "code": 1008, "reason": AUTH_FAILED_REASON})
            return None
        return Connection(claims["sub"], send)

    def welcome(self, conn: Connection) -> str | None:
        return json.dumps({
            "type": "connection_established",
            "data": {
                "mode": "main",
                "user_id": conn.user_id[:8] + "...",  # that backend's own truncation
                "connection_id": conn.id,
                "golden_path_events": GOLDEN_PATH_EVENTS,
                "timestamp": iso_now(),
            },
            "timestamp": time.time(),
        })

    async def on_text(self, conn: Connection, text: str | None) -> RunRequest | None:
        try:
            message = json.loads(text) if text is not None else _NOT_JSON
        except ValueError:
            message = _NOT_JSON
        if message is _NOT_JSON:
            await conn.send_text(error_frame("INVALID_JSON", "frame is not a JSON text message"))
            return None
        if not isinstance(message, dict):
            await conn.send_text(error_frame("INVALID_MESSAGE", "a message is a JSON object with a type"))
            return None
        kind = message.get("type")
        if kind == "ping":
            await conn.send_text(f'{{"type":"pong","timestamp":{time.time()!r}}}')
        elif kind == "pong":
            if conn.heartbeat is not None:
                conn.heartbeat.answered()
        elif kind in RUN_TYPES:
            try:
                return parse_run_request(message)
            except InvalidMessage as exc:
                await conn.send_text(error_frame("INVALID_MESSAGE", str(exc)))
        else:
            await conn.send_text(json.dumps({"type": "ack", "received_type": kind}))
        return None

    def renderer(self, request: RunRequest, user_id: str) -> RunRenderer:
        return NetraRenderer(request, user_id, self.config.faults)

    def test_auth_body(self, access_token: str, claims: dict) -> dict:
        refresh_token, _ = issue_token(claims["email"], claims.get("name"), self.config, "refresh",
                                       ttl=7 * 24 * 3600)
        user = {"id": claims["sub"], "email": claims["email"]}
        if claims.get("name"):
            user["name"] = claims["name"]
        return {**super().test_auth_body(access_token, claims), "refresh_token": refresh_token, "user": user}
