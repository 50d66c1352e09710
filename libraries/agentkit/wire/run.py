"""One agent run as a client saw it, and what QA reads from it: the trajectory of tool
calls, the answer, the times. Pure data; the rules in :mod:`agentkit.rules` judge it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .dialect import Dialect, current
from .event import Event


@dataclass
class ToolCall:
    """One tool call of a run: built from its start, argument deltas and result events."""

    name: str | None
    key: Any
    arguments: Any = None
    arguments_text: str = ""
    result: Any = None
    error: Any = None
    started: Event | None = None
    ended: Event | None = None
    start_s: float | None = None
    end_s: float | None = None

    @property
    def completed(self) -> bool:
        return self.ended is not None

    def as_dict(self) -> dict:
        return {"tool": self.name, "call_id": self.key, "arguments": self.arguments, "result": self.result,
                "error": self.error, "start_s": self.start_s, "end_s": self.end_s,
                "duration_ms": None if self.start_s is None or self.end_s is None
                else round((self.end_s - self.start_s) * 1000, 1)}


def _json_or_text(text: str) -> Any:
    """A result that travels as JSON text (an object, a list or a quoted string) as its value;
    any other text (a bare number included: "5" may be meant as text) stays text."""
    if text[:1] not in '[{"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parse_arguments(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass(eq=False)
class RunRecord:
    """One agent run as a client saw it.

    ``events`` are the agent events that belong to the run, in arrival order, including
    any that came after its first terminal event (within the grace window the run kept
    listening for them). ``other`` are frames the dialect does not classify that arrived
    while the run was active (connection-correlated wires only). ``sent_at`` and every
    ``Event.received`` come from ``time.perf_counter()``. ``ended`` is ``terminal``,
    ``closed`` (the connection closed first), ``timeout`` or ``refused`` (the command
    that starts the run was answered with an error, ``reply``)."""

    connection: str
    user_id: str | None
    run_id: str | None
    thread_id: str | None
    sent_at: float
    events: list[Event] = field(default_factory=list)
    ended: str = "terminal"
    close: Event | None = None
    dialect: Dialect = field(default_factory=current, repr=False)
    server_run_id: Any = None
    server_thread_id: Any = None
    reply: Event | None = None
    other: list[Event] = field(default_factory=list)
    grace: float = 0.0
    content: str | None = None
    message_id: str | None = None
    notes: list[str] = field(default_factory=list)
    log_index: int = 0          # frames the connection had when the run's start was sent

    def rel(self, event: Event) -> float:
        return event.received - self.sent_at

    @property
    def terminal(self) -> Event | None:
        return next((e for e in self.events if e.is_terminal), None)

    @property
    def agent_events(self) -> list[Event]:
        # Every rule reads this; built once per length of ``events`` (runs only ever grow).
        cached = self.__dict__.get("_agent_events")
        if cached is None or cached[0] != len(self.events):
            cached = self.__dict__["_agent_events"] = (len(self.events), [e for e in self.events if e.is_agent_event])
        return cached[1]

    @property
    def until_end(self) -> list[Event]:
        """The run's agent events up to and including its first terminal event."""
        out = []
        for e in self.agent_events:
            out.append(e)
            if e.is_terminal:
                break
        return out

    @property
    def after_end(self) -> list[Event]:
        """Agent events that arrived after the run's first terminal event."""
        events = self.agent_events
        for i, e in enumerate(events):
            if e.is_terminal:
                return events[i + 1:]
        return []

    @property
    def succeeded(self) -> bool:
        """Ended well: the first terminal event completes the run and no error followed it
        (AG-UI: a late ``RUN_ERROR`` after ``RUN_FINISHED`` turns the run into a failure), and
        it was not cancelled (``RUN_FINISHED`` with outcome ``cancelled``)."""
        term = self.terminal
        if term is None or term.role != "completed" or term.field("outcome") == "cancelled":
            return False
        return not any(e.role == "error" for e in self.after_end)

    @property
    def failure(self) -> Event | None:
        """The error event that decides a run that did not succeed (a late one included)."""
        term = self.terminal
        if term is not None and term.role == "error":
            return term
        return next((e for e in self.after_end if e.role == "error"), None)

    def at(self, event: Event) -> str:
        return f"{event.type} (#{event.seq}) at {self.rel(event):.3f}s"

    def ending(self) -> str:
        term = self.terminal
        if term is not None:
            return f"the run ended with {self.at(term)}"
        if self.ended == "refused" and self.reply is not None:
            return f"the server refused to start the run: {self.reply.summary(160)}"
        if self.ended == "closed" and self.close is not None:
            return (f"the connection was closed by the {self.close.closed_by} (code {self.close.close_code}"
                    + (f", {self.close.close_reason}" if self.close.close_reason else "")
                    + f") at {self.rel(self.close):.3f}s before the run ended")
        ends = "/".join(self.dialect.names("completed")[:1] + self.dialect.names("error")[:1])
        return f"the run never ended (no {ends})"

    # --- what QA reads from a run -------------------------------------------------
    def trajectory(self) -> list[ToolCall]:
        """The run's tool calls in the order they started, with arguments and results."""
        calls: list[ToolCall] = []
        by_key: dict[Any, ToolCall] = {}
        current: ToolCall | None = None
        key_field = self.dialect.tool_call_key
        for e in self.until_end:
            role = e.role
            if role == "tool_executing" or (role == "tool_chunk" and e.tool_name is not None
                                             and (e.tool_key is None or e.tool_key not in by_key)):
                args = e.field("parameters")
                call = ToolCall(e.tool_name, e.tool_key, arguments=args, started=e, start_s=self.rel(e))
                calls.append(call)
                if key_field != "tool_name" and call.key is not None:
                    by_key[call.key] = call
                current = call
                if role == "tool_chunk":
                    call.arguments_text += e.field("arguments_delta") or ""
                continue
            if role in ("tool_arguments", "tool_chunk"):
                call = by_key.get(e.tool_key) if e.tool_key is not None else current
                if call is not None:
                    call.arguments_text += e.field("arguments_delta") or ""
                continue
            if role in ("tool_completed", "tool_error"):
                call = self._open_call(calls, by_key, e, key_field)
                if call is None:
                    continue
                call.ended, call.end_s = e, self.rel(e)
                if role == "tool_error" or e.field("error") not in (None, ""):
                    call.error = e.field("error")
                call.result = e.field("result") if role == "tool_completed" else None
                if isinstance(call.result, str) and key_field != "tool_name":
                    call.result = _json_or_text(call.result)  # results that travel as JSON text (AG-UI content)
        for call in calls:
            if call.arguments is None and call.arguments_text:
                call.arguments = _parse_arguments(call.arguments_text)
        return calls

    @staticmethod
    def _open_call(calls: list[ToolCall], by_key: dict, e: Event, key_field: str) -> ToolCall | None:
        if key_field == "tool_name":
            return next((c for c in calls if c.ended is None and c.name == e.tool_name), None)
        call = by_key.get(e.tool_key)
        return call if call is not None and call.ended is None else None

    def messages(self) -> list[str]:
        """The assistant's streamed text messages, each assembled from its deltas, in order."""
        texts: dict[Any, list[str]] = {}
        order: list[Any] = []
        current: Any = None
        counter = 0
        for e in self.until_end:
            if e.role == "message_start":
                counter += 1
                current = e.field("message_id") or f"#{counter}"
                if current not in texts:
                    texts[current] = []
                    order.append(current)
            elif e.role == "answer":
                delta = e.field("answer_delta")
                if not isinstance(delta, str):
                    continue
                key = e.field("message_id") or current or "#0"
                current = key
                if key not in texts:
                    texts[key] = []
                    order.append(key)
                texts[key].append(delta)
        return ["".join(texts[k]) for k in order if texts[k]]

    def answer(self) -> str | None:
        """The agent's answer: the last streamed message where the wire streams text,
        else the terminal event's result (as text)."""
        streamed = self.messages()
        if streamed:
            return streamed[-1]
        term = self.terminal
        if term is None or term.role != "completed":
            return None
        result = term.field("result")
        if result is None:
            return None
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)

    def first_answer_event(self) -> Event | None:
        streamed = next((e for e in self.until_end if e.role == "answer"), None)
        if streamed is not None:
            return streamed
        term = self.terminal
        return term if term is not None and term.role == "completed" and term.field("result") is not None else None

    def usage(self) -> Any:
        """Token usage where the wire carries it (AG-UI's ``RUN_FINISHED.usage``)."""
        term = self.terminal
        return term.field("usage") if term is not None else None

    def duration(self) -> float | None:
        term = self.terminal
        return self.rel(term) if term is not None else None

    def first_event_s(self) -> float | None:
        events = self.agent_events
        return self.rel(events[0]) if events else None

    def terminal_names(self) -> str:
        return ", ".join(self.dialect.names("completed") + self.dialect.names("error"))

