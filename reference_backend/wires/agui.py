"""The ag-ui wire: AG-UI events (spec 1.x) over the WebSocket, one event object per text frame.

- handshake as on the default wire (``jwt.<t>`` / bearer header / ``?token=``, refusal =
  HTTP 403, ``jwt-auth`` selected only when offered); no welcome frame;
- every client text frame is a ``RunAgentInput`` (``threadId``, ``runId``, ``messages``,
  ...), and starts a run on the last user message's text; each input is its own run, so
  a client that sends two before the first ends has two in flight;
- a frame that is not JSON, or not a valid ``RunAgentInput``, gets
  ``{"type": "RUN_ERROR", "message": ..., "code": "INVALID_INPUT"}`` and the connection
  stays open: AG-UI allows ``RUN_ERROR`` as the first event of a run that failed before
  it started, and one bad frame should not cost the client its other runs;
- a run: ``RUN_STARTED`` (the input's ids), per thought ``REASONING_START``,
  ``REASONING_MESSAGE_START/CONTENT/END``, ``REASONING_END``; per tool call
  ``TOOL_CALL_START``, ``TOOL_CALL_ARGS`` (the arguments' JSON, in two deltas),
  then after its duration ``TOOL_CALL_END`` and ``TOOL_CALL_RESULT`` (content: the result
  as JSON text, or ``"Error: <text>"``); the answer as ``TEXT_MESSAGE_START``, one
  ``TEXT_MESSAGE_CONTENT`` per chunk, ``TEXT_MESSAGE_END``; ``RUN_FINISHED`` with
  ``result`` = the answer (``RUN_ERROR`` for a failing scenario).

Events are built with the ``ag-ui-protocol`` package's models, so field names are
camelCase and absent optional fields are omitted; timestamps are integer milliseconds.
"""

from __future__ import annotations

import json
import secrets
import time

from ag_ui.core import (
    ReasoningEndEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    ReasoningStartEvent,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from pydantic import BaseModel, ValidationError

from .. import faults as f
from .. import scenarios as s
from ..connections import Connection
from ..runs import RunRequest, new_run_id
from .base import Part, RunRenderer, Wire, split_at_timestamp

INVALID_INPUT = "INVALID_INPUT"


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def encode(event: BaseModel) -> tuple[str, str]:
    """An event model's wire JSON (camelCase, no absent fields) around its timestamp."""
    return split_at_timestamp(event.model_dump(mode="json", by_alias=True))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class InvalidInput(ValueError):
    """A frame that is not a usable RunAgentInput; the text goes into the RUN_ERROR."""


def parse_run_input(text: str | None) -> RunRequest:
    if text is None:
        raise InvalidInput("binary frame: a run input is a RunAgentInput JSON text frame")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"frame is not JSON ({exc}); a run input is a RunAgentInput object") from None
    if not isinstance(data, dict):
        raise InvalidInput("a run input is a RunAgentInput JSON object, got " + type(data).__name__)
    try:
        run_input = RunAgentInput.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}"
                             for e in exc.errors()[:3])
        raise InvalidInput(f"not a valid RunAgentInput: {problems}") from None
    content = None
    for message in reversed(run_input.messages):
        if message.role == "user":
            content = _text_of(message.content)
            break
    if not content:
        raise InvalidInput("RunAgentInput.messages has no user message with text content")
    if not run_input.thread_id or not run_input.run_id:
        raise InvalidInput("RunAgentInput threadId and runId must be non-empty")
    return RunRequest(content, run_input.thread_id, run_input.run_id)


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(getattr(part, "text", None) or "" for part in content)  # the text parts of a multimodal message


def run_error(message: str, code: str) -> str:
    head, tail = encode(RunErrorEvent(message=message, code=code))
    return head + str(now_ms()) + tail


class AgUiRenderer(RunRenderer):
    def __init__(self, request: RunRequest, faults: frozenset[str]) -> None:
        self.request = request
        # wrong-run-id: the run is closed under another run's id than the one it opened.
        self.finished_run_id = new_run_id() if f.WRONG_RUN_ID in faults else request.run_id
        self.message_id = _id("msg_")   # the assistant message: its text, and parent of its tool calls
        self.text_open = False

    def parts(self, beat: s.Beat) -> list[Part]:
        kind, tool = beat.kind, beat.tool
        if kind == s.THINK:
            span, message = _id("reasoning_"), _id("reasoning_msg_")
            return [(f.THINKING, None, *encode(event)) for event in (
                ReasoningStartEvent(message_id=span),
                ReasoningMessageStartEvent(message_id=message),
                ReasoningMessageContentEvent(message_id=message, delta=beat.text),
                ReasoningMessageEndEvent(message_id=message),
                ReasoningEndEvent(message_id=span),
            )]
        if kind == s.TOOL_START:
            args = json.dumps(tool.arguments)
            half = len(args) // 2
            deltas = [args[:half], args[half:]] if half else [args]
            return [(f.TOOL_START, tool.id, *encode(event)) for event in (
                ToolCallStartEvent(tool_call_id=tool.id, tool_call_name=tool.name, parent_message_id=self.message_id),
                *(ToolCallArgsEvent(tool_call_id=tool.id, delta=delta) for delta in deltas),
            )]
        if kind == s.TOOL_END:
            content = f"Error: {tool.error}" if tool.error is not None else json.dumps(tool.result)
            return [(f.TOOL_END, tool.id, *encode(event)) for event in (
                ToolCallEndEvent(tool_call_id=tool.id),
                ToolCallResultEvent(message_id=_id("tool_msg_"), tool_call_id=tool.id, content=content, role="tool"),
            )]
        if kind == s.ANSWER:
            events = [] if self.text_open else [TextMessageStartEvent(message_id=self.message_id, role="assistant")]
            self.text_open = True
            events.append(TextMessageContentEvent(message_id=self.message_id, delta=beat.text))
            return [(f.ANSWER, None, *encode(event)) for event in events]
        if kind == s.START:
            request = self.request
            return [(f.STARTED, None, *encode(RunStartedEvent(thread_id=request.thread_id, run_id=request.run_id)))]
        if kind in (s.FINISH, s.FAIL):
            parts = self._close_text()
            if kind == s.FINISH:
                event = RunFinishedEvent(thread_id=self.request.thread_id, run_id=self.finished_run_id,
                                         result=beat.text)
                parts.append((f.COMPLETED, None, *encode(event)))
            else:
                parts.append((f.FAILED, None, *encode(RunErrorEvent(message=beat.text, code="AGENT_ERROR"))))
            return parts
        raise ValueError(f"unknown beat {kind!r}")

    def _close_text(self) -> list[Part]:
        if not self.text_open:
            return []
        self.text_open = False
        return [(f.ANSWER, None, *encode(TextMessageEndEvent(message_id=self.message_id)))]


class AgUiWire(Wire):
    name = "ag-ui"

    @staticmethod
    def stamp() -> str:
        return str(time.time_ns() // 1_000_000)

    async def on_text(self, conn: Connection, text: str | None) -> RunRequest | None:
        try:
            return parse_run_input(text)
        except InvalidInput as exc:
            await conn.send_text(run_error(str(exc), INVALID_INPUT))
            return None

    def renderer(self, request: RunRequest, user_id: str) -> RunRenderer:
        return AgUiRenderer(request, self.config.faults)
