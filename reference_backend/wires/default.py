"""The default wire: docs/protocol.md's main sections, exactly.

- handshake: token from ``jwt.<t>`` / bearer header / ``?token=``; refusal = HTTP 403;
- welcome ``{"type": "system_message", "data": {"event": "connection_established", ...}}``;
- ``ping`` -> ``pong``; ``user_message`` (``payload.content``) or ``message`` (top-level
  ``content``) -> a run; anything else, non-JSON or binary -> an ``error`` frame;
- events ``{"type", "run_id", "thread_id", "user_id", "timestamp": <unix s>, "data": {...}}``.

This is the wire the throughput benchmark measures: a run's JSON is built once when it
is planned, and sending a frame only joins its text around the timestamp.
"""

from __future__ import annotations

import json
import time

from .. import faults as f
from .. import scenarios as s
from ..connections import Connection
from ..runs import RunRequest, new_run_id, new_thread_id
from .base import Part, RunRenderer, Wire


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


class DefaultRenderer(RunRenderer):
    def __init__(self, request: RunRequest, user_id: str, faults: frozenset[str]) -> None:
        run_id = new_run_id() if f.WRONG_RUN_ID in faults else request.run_id
        # The envelope's fixed part, serialized once for the whole run.
        self.ids = json.dumps({"run_id": run_id, "thread_id": request.thread_id, "user_id": user_id})[1:-1]

    def _part(self, role: str, call: str | None, event_type: str, data: dict) -> Part:
        return role, call, f'{{"type":"{event_type}",{self.ids},"timestamp":', f',"data":{json.dumps(data)}}}'

    def parts(self, beat: s.Beat) -> list[Part]:
        kind = beat.kind
        if kind == s.THINK:
            return [self._part(f.THINKING, None, "agent_thinking", {"thought": beat.text})]
        if kind == s.TOOL_START:
            tool = beat.tool
            return [self._part(f.TOOL_START, tool.id, "tool_executing",
                               {"tool_name": tool.name, "parameters": tool.arguments})]
        if kind == s.TOOL_END:
            tool = beat.tool
            data = {"tool_name": tool.name, "result": tool.result, "duration_ms": tool.duration_ms}
            if tool.error is not None:
                data["error"] = tool.error
            return [self._part(f.TOOL_END, tool.id, "tool_completed", data)]
        if kind == s.ANSWER:
            return []  # no delta event on this wire: the answer is the terminal event's result
        if kind == s.START:
            return [self._part(f.STARTED, None, "agent_started", {"agent_name": s.AGENT_NAME})]
        if kind == s.FINISH:
            return [self._part(f.COMPLETED, None, "agent_completed", {"result": beat.text})]
        if kind == s.FAIL:
            return [self._part(f.FAILED, None, "agent_error", {"error": beat.text})]
        raise ValueError(f"unknown beat {kind!r}")


class DefaultWire(Wire):
    name = "default"

    @staticmethod
    def stamp() -> str:
        return repr(time.time())

    def welcome(self, conn: Connection) -> str | None:
        return json.dumps({
            "type": "system_message",
            "data": {"event": "connection_established", "connection_id": conn.id, "user_id": conn.user_id},
        })

    async def on_text(self, conn: Connection, text: str | None) -> RunRequest | None:
        if text is None:
            await conn.send_text(_INVALID_JSON)
            return None
        try:
            message = json.loads(text)
        except ValueError:
            await conn.send_text(_INVALID_JSON)
            return None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            await conn.send_text(f'{{"type":"pong","timestamp":{time.time()!r}}}')
        elif kind in ("user_message", "message"):
            try:
                return parse_run_request(message)
            except InvalidMessage as exc:
                await conn.send_text(error_frame("invalid_message", str(exc)))
        else:
            await conn.send_text(error_frame("unknown_message_type", f"unknown message type {kind!r}"))
        return None

    def renderer(self, request: RunRequest, user_id: str) -> RunRenderer:
        return DefaultRenderer(request, user_id, self.config.faults)
