"""The AG-UI rule set: what AG-UI's spec (1.x) requires of an event stream, checked the
way its TypeScript client verifies a stream, each violation naming the event and id.

Sources (docs.ag-ui.com, spec 1.x): "Runs and Steps" (events/lifecycle), "Streaming
Messages" (basic/patterns/streaming), "Processing Model" (basic/processing). Chunk
events are expanded into start/content/end first, as the spec requires of a consumer;
the retired ``THINKING_*`` events are read as their ``REASONING_*`` counterparts.

Reported under the kit's rule numbers: 1 run lifecycle (first event, one run at a time,
nothing after the end, no truncated run), 3 pairing (text messages, tool calls,
reasoning, steps, chunks; a tool result names a known call; nothing open at
``RUN_FINISHED``), 4 ids (``RUN_FINISHED`` names the run ``RUN_STARTED`` opened). What the
spec tolerates (unknown types and fields, ids that differ from the input under 1.1) goes
into the run's notes as a warning, not a failure.
"""

from __future__ import annotations

from typing import Any

from ..wire.event import Event
from ..wire.run import RunRecord
from . import Violation
from .schemas import agui_errors

LIFECYCLE = "AG-UI spec: Runs and Steps"
STREAMING = "AG-UI spec: Streaming Messages"
PROCESSING = "AG-UI spec: Processing Model"

LEGACY = {
    "THINKING_START": "REASONING_START",
    "THINKING_END": "REASONING_END",
    "THINKING_TEXT_MESSAGE_START": "REASONING_MESSAGE_START",
    "THINKING_TEXT_MESSAGE_CONTENT": "REASONING_MESSAGE_CONTENT",
    "THINKING_TEXT_MESSAGE_END": "REASONING_MESSAGE_END",
}
CHUNKS = {"TEXT_MESSAGE_CHUNK": "text", "TOOL_CALL_CHUNK": "tool", "REASONING_MESSAGE_CHUNK": "reasoning"}
# Events that close an open chunk stream (spec: implicit end); RAW, ACTIVITY_*,
# REASONING_ENCRYPTED_VALUE and SUBAGENT_STARTED close nothing.
_CLOSES_LANE_PREFIXES = ("TEXT_MESSAGE_", "TOOL_CALL_", "STEP_", "STATE_", "REASONING_START", "REASONING_END",
                         "REASONING_MESSAGE_")
_CLOSES_ALL = ("RUN_STARTED", "RUN_FINISHED", "RUN_ERROR", "MESSAGES_SNAPSHOT")


class _Item:
    __slots__ = ("type", "fields", "event")

    def __init__(self, kind: str, fields: dict, event: Event) -> None:
        self.type, self.fields, self.event = kind, fields, event


class _Expander:
    """Chunk events into start/content/end items (spec: "Streaming Messages")."""

    def __init__(self, run: RunRecord, out: list[Violation]) -> None:
        self.run = run
        self.out = out
        self.items: list[_Item] = []
        self.lane: tuple[str, dict] | None = None  # (kind, opener fields)
        self._legacy = 0

    def close_lane(self, event: Event) -> None:
        if self.lane is None:
            return
        kind, opener = self.lane
        self.lane = None
        end = {"text": "TEXT_MESSAGE_END", "tool": "TOOL_CALL_END", "reasoning": "REASONING_MESSAGE_END"}[kind]
        key = "toolCallId" if kind == "tool" else "messageId"
        self.items.append(_Item(end, {key: opener[key], "implicit": True}, event))

    def feed(self, e: Event) -> None:
        m = e.message
        kind = LEGACY.get(m.get("type"), m.get("type"))
        if kind != m.get("type"):
            m = dict(m, type=kind)
            if kind in ("REASONING_START", "REASONING_END") and "messageId" not in m:
                if kind == "REASONING_START":
                    self._legacy += 1
                m["messageId"] = f"thinking-{self._legacy}"
            if kind.startswith("REASONING_MESSAGE_") and "messageId" not in m:
                m["messageId"] = f"thinking-text-{self._legacy}"
        if kind in CHUNKS:
            self.chunk(CHUNKS[kind], kind, m, e)
            return
        if kind in _CLOSES_ALL or kind == "CUSTOM" or kind.startswith(_CLOSES_LANE_PREFIXES):
            self.close_lane(e)
        self.items.append(_Item(kind, m, e))

    def chunk(self, kind: str, name: str, m: dict, e: Event) -> None:
        key = "toolCallId" if kind == "tool" else "messageId"
        same_kind = self.lane is not None and self.lane[0] == kind
        if same_kind and (m.get(key) is None or m.get(key) == self.lane[1][key]):
            opener = self.lane[1]
            for field in (("toolCallName", "parentMessageId") if kind == "tool" else ("role", "name")):
                if m.get(field) is not None and m.get(field) != opener.get(field):
                    self.out.append(Violation(3, f"{self.run.at(e)}: cannot continue {kind} {opener[key]!r}: chunk "
                                                 f"{field} {m.get(field)!r} does not match the open stream's "
                                                 f"{field} {opener.get(field)!r}.", e, STREAMING))
                    return
        else:
            self.close_lane(e)
            if m.get(key) is None:
                self.out.append(Violation(3, f"{self.run.at(e)}: the first {name} of a stream must carry {key}.",
                                          e, STREAMING))
                return
            if kind == "tool" and not m.get("toolCallName"):
                self.out.append(Violation(3, f"{self.run.at(e)}: the first TOOL_CALL_CHUNK of tool call "
                                             f"{m.get(key)!r} must carry toolCallName.", e, STREAMING))
                return
            opener = {key: m[key]}
            if kind == "tool":
                opener.update(toolCallName=m.get("toolCallName"), parentMessageId=m.get("parentMessageId"))
                start = "TOOL_CALL_START"
            elif kind == "text":
                opener.update(role=m.get("role") or "assistant", name=m.get("name"))
                start = "TEXT_MESSAGE_START"
            else:
                opener.update(role="reasoning")
                start = "REASONING_MESSAGE_START"
            self.lane = (kind, opener)
            self.items.append(_Item(start, dict(opener), e))
        if m.get("delta") is not None:
            content = {"tool": "TOOL_CALL_ARGS", "text": "TEXT_MESSAGE_CONTENT",
                       "reasoning": "REASONING_MESSAGE_CONTENT"}[kind]
            self.items.append(_Item(content, {key: self.lane[1][key], "delta": m["delta"]}, e))


_SEQUENCES = {
    # kind: (start, continuations, end, id field, what, open-set name at RUN_FINISHED)
    "text": ("TEXT_MESSAGE_START", ("TEXT_MESSAGE_CONTENT",), "TEXT_MESSAGE_END", "messageId", "text message"),
    "tool": ("TOOL_CALL_START", ("TOOL_CALL_ARGS",), "TOOL_CALL_END", "toolCallId", "tool call"),
    "reasoning_message": ("REASONING_MESSAGE_START", ("REASONING_MESSAGE_CONTENT",), "REASONING_MESSAGE_END",
                          "messageId", "reasoning message"),
    "reasoning": ("REASONING_START", (), "REASONING_END", "messageId", "reasoning span"),
    "step": ("STEP_STARTED", (), "STEP_FINISHED", "stepName", "step"),
}
_BY_TYPE: dict[str, tuple[str, str]] = {}
for _kind, (_start, _conts, _end, _id, _what) in _SEQUENCES.items():
    _BY_TYPE[_start] = (_kind, "start")
    _BY_TYPE[_end] = (_kind, "end")
    for _c in _conts:
        _BY_TYPE[_c] = (_kind, "content")


def check(run: RunRecord) -> list[Violation]:
    out: list[Violation] = []
    expander = _Expander(run, out)
    for e in run.agent_events:
        if e.is_json_object:
            expander.feed(e)
    _verify(run, expander.items, out)
    _notes(run)
    return out


def _verify(run: RunRecord, items: list[_Item], out: list[Violation]) -> None:
    state = "none"
    started: dict | None = None
    open_sets: dict[str, dict[Any, Event]] = {k: {} for k in _SEQUENCES}
    known_calls: set = set()
    for n, item in enumerate(items):
        t, m, e = item.type, item.fields, item.event
        if state == "errored" and t != "RUN_STARTED":
            out.append(Violation(1, f"{run.at(e)} after RUN_ERROR: the run has already errored; only a new "
                                    f"RUN_STARTED may follow.", e, LIFECYCLE))
            continue
        if state == "finished" and t not in ("RUN_ERROR", "RUN_STARTED"):
            out.append(Violation(1, f"{run.at(e)} after RUN_FINISHED: the run has already finished; only a new "
                                    f"RUN_STARTED or a late RUN_ERROR may follow.", e, LIFECYCLE))
            continue
        if n == 0 and t not in ("RUN_STARTED", "RUN_ERROR"):
            out.append(Violation(1, f"the first event must be RUN_STARTED (or RUN_ERROR), got {run.at(e)}.",
                                 e, LIFECYCLE))
        if t == "RUN_STARTED":
            if state == "active":
                out.append(Violation(1, f"{run.at(e)} while run {started.get('runId')!r} is still active: the "
                                        f"previous run must end with RUN_FINISHED first.", e, LIFECYCLE))
                continue
            state, started = "active", m
            open_sets = {k: {} for k in _SEQUENCES}
            known_calls = set()
            continue
        if t == "RUN_ERROR":
            state = "errored"
            continue
        if t == "RUN_FINISHED":
            for kind, (_s, _c, _e, _id, what) in sorted(_SEQUENCES.items(), key=lambda kv: kv[0] != "step"):
                still = open_sets[kind]
                if still:
                    rule = 3
                    out.append(Violation(rule, f"{run.at(e)} while {what}s are still open: "
                                               + ", ".join(f"{k!r} (opened by #{v.seq})" for k, v in still.items())
                                               + ".", next(iter(still.values())), LIFECYCLE))
            if started is not None:
                for key in ("runId", "threadId"):
                    if m.get(key) is not None and started.get(key) is not None and m.get(key) != started.get(key):
                        out.append(Violation(4, f"{run.at(e)} carries {key} {m.get(key)!r}, but the run's "
                                                f"RUN_STARTED carries {started.get(key)!r}: a run's boundary events "
                                                f"must agree on it.", e, LIFECYCLE))
            state = "finished"
            continue
        if t == "TOOL_CALL_RESULT":
            call = m.get("toolCallId")
            if call not in known_calls:
                out.append(Violation(3, f"{run.at(e)} answers tool call {call!r}, which no TOOL_CALL_START of this "
                                        f"run opened.", e, PROCESSING))
            continue
        seq = _BY_TYPE.get(t)
        if seq is None:
            continue
        kind, step = seq
        _start, _conts, _end, id_field, what = _SEQUENCES[kind]
        key = m.get(id_field)
        opened = open_sets[kind]
        if step == "start":
            if key in opened:
                out.append(Violation(3, f"{run.at(e)} opens {what} {key!r}, which is already open (opened by "
                                        f"#{opened[key].seq}): end it with {_end} first.", e, STREAMING))
                continue
            opened[key] = e
            if kind == "tool":
                known_calls.add(key)
        elif key not in opened:
            verb = "continues" if step == "content" else "ends"
            implicit = " (implicit end of a chunk stream)" if m.get("implicit") else ""
            out.append(Violation(3, f"{run.at(e)}{implicit} {verb} {what} {key!r}, which is not open: "
                                    f"{_start} must come first.", e, STREAMING))
        elif step == "end":
            del opened[key]
    if state == "active" or state == "none":
        out.append(Violation(1, f"the stream ended without RUN_FINISHED or RUN_ERROR ({run.ending()}): a truncated "
                                f"run is never a success.", None, LIFECYCLE))


def _notes(run: RunRecord) -> None:
    """What the spec tolerates, written down once per run as warnings."""
    if run.__dict__.get("_agui_noted"):
        return
    run.__dict__["_agui_noted"] = True
    start = next((e for e in run.agent_events if e.role == "started"), None)
    if start is not None:
        differs = [f"{k} {start.field(f)!r} (input {sent!r})" for k, f, sent in
                   (("threadId", "thread_id", run.thread_id), ("runId", "run_id", run.run_id))
                   if sent is not None and start.field(f) is not None and start.field(f) != sent]
        if differs:
            run.notes.append(f"RUN_STARTED carries {', '.join(differs)}: spec 1.1 lets the server choose its ids; "
                             f"reported, not failed.")
    for e in run.agent_events + run.other:
        if not e.is_json_object:
            continue
        kind = e.message.get("type")
        if kind in LEGACY:
            run.notes.append(f"#{e.seq}: retired {kind} read as {LEGACY[kind]} (AG-UI 1.0 replaced THINKING_* events)")
            continue
        _, warnings = agui_errors(e.message)
        run.notes.extend(f"#{e.seq}: {w}" for w in warnings)
