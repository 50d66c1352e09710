"""What a run does, independent of the wire: a list of beats that each wire renders as events.

Every run plays the built-in default (:func:`default_beats`): ``agent_started``, a
thought, ``--tools`` tool calls (search_docs, summarize, ...), another thought,
``agent_completed``, ``--think-delay`` seconds between events. A beat's delay is the
time since the previous beat; a beat with no frame on a wire (an answer chunk on the
default wire) still takes its time, so a run takes as long on every wire.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, NamedTuple

from .config import TOOL_NAMES

AGENT_NAME = "reference_agent"

# --- what a run does, independent of the wire ------------------------------------------

START, THINK, TOOL_START, TOOL_END, ANSWER, FINISH, FAIL = (
    "start", "think", "tool_start", "tool_end", "answer", "finish", "fail")


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict
    result: Any = None
    error: str | None = None     # set when the call failed; result is then None
    duration_ms: float = 0.0


class Beat(NamedTuple):
    """One moment of a run; a wire renders it as zero or more frames."""

    kind: str                    # START, THINK, TOOL_START, TOOL_END, ANSWER, FINISH or FAIL
    delay: float                 # seconds after the previous beat
    text: str = ""               # the thought, answer chunk, final answer or failure message
    tool: ToolCall | None = None


def new_call_id() -> str:
    return "call_" + secrets.token_hex(8)


def default_beats(content: str, tools: int, think_delay: float) -> list[Beat]:
    """The built-in run: the one every message gets when no scenario matches."""
    preview = content[:80]
    beats = [Beat(START, 0.0), Beat(THINK, think_delay, f"Planning an answer to: {preview}")]
    duration_ms = round(think_delay * 1000, 3)
    for i in range(tools):
        name = TOOL_NAMES[i % len(TOOL_NAMES)]
        call = ToolCall(new_call_id(), name, {"query": preview, "call": i + 1},
                        {"summary": f"{name} result {i + 1} for: {preview}"}, None, duration_ms)
        beats.append(Beat(TOOL_START, think_delay, tool=call))
        beats.append(Beat(TOOL_END, think_delay, tool=call))
    beats.append(Beat(THINK, think_delay, f"Composing the answer from {tools} tool result(s)"))
    answer = f"Reference answer to: {preview}"
    beats.append(Beat(ANSWER, think_delay, answer))
    beats.append(Beat(FINISH, 0.0, answer))
    return beats


class Player:
    """Chooses the run for each message: today always the built-in one."""

    def __init__(self, think_delay: float, tools: int) -> None:
        self.think_delay = think_delay
        self.tools = tools

    def play(self, content: str, user_id: str, thread_id: str) -> tuple[str, list[Beat]]:
        """The name of what is played ("default" for the built-in run) and its beats."""
        return "default", default_beats(content, self.tools, self.think_delay)
