"""Fault modes: each one breaks exactly one rule and nothing else, on every wire.

Sequence faults rewrite a run's frames by their lifecycle role
(:func:`apply_sequence_faults`), so one rewrite serves every wire; the others
act where their rule lives (auth, the WebSocket session, health, and the
wire's renderer for ``wrong-run-id``). :data:`FAULT_EFFECTS` says what each
fault does on each wire; ``--help`` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

DROP_TOOL_COMPLETED = "drop-tool-completed"
DROP_AGENT_COMPLETED = "drop-agent-completed"
REORDER = "reorder"
COMPLETED_FIRST = "completed-first"
LEAK = "leak"
WRONG_RUN_ID = "wrong-run-id"
ACCEPT_EXPIRED = "accept-expired"
SLOW_FIRST_EVENT = "slow-first-event"
CLOSE_MID_RUN = "close-mid-run"
NO_CONNECTION_ESTABLISHED = "no-connection-established"
HEALTH_500 = "health-500"

#: Every fault name and the rule it breaks.
FAULTS: dict[str, str] = {
    DROP_TOOL_COMPLETED: "tool calls are never completed (rule 3)",
    DROP_AGENT_COMPLETED: "runs end without their terminal event (rule 1)",
    REORDER: "each tool call's completion is sent before its start (rule 3)",
    COMPLETED_FIRST: "the terminal event is sent first, then the rest of the run (rule 1)",
    LEAK: "each run's events also reach another user's connection (rule 5)",
    WRONG_RUN_ID: "events carry a run id other than the request's (rule 4)",
    ACCEPT_EXPIRED: "expired tokens are accepted on /ws and /api (auth)",
    SLOW_FIRST_EVENT: "the first event of each run is delayed (rule 6)",
    CLOSE_MID_RUN: "the server closes the socket (1011) after a run's 2nd event (rule 1)",
    NO_CONNECTION_ESTABLISHED: "the welcome frame is not sent",
    HEALTH_500: "/health and /api/health answer 500 unhealthy",
}

_SAME = "the same"

#: What each fault does on each wire (default and netra share event names).
FAULT_EFFECTS: dict[str, dict[str, str]] = {
    DROP_TOOL_COMPLETED: {
        "default/netra": "no tool_completed",
        "ag-ui": "no TOOL_CALL_END and no TOOL_CALL_RESULT: the call is never closed",
    },
    DROP_AGENT_COMPLETED: {
        "default/netra": "no agent_completed (nor agent_error)",
        "ag-ui": "no RUN_FINISHED (nor RUN_ERROR)",
    },
    REORDER: {
        "default/netra": "tool_completed before its tool_executing",
        "ag-ui": "TOOL_CALL_END + TOOL_CALL_RESULT before TOOL_CALL_START/ARGS",
    },
    COMPLETED_FIRST: {
        "default/netra": "agent_completed first",
        "ag-ui": "RUN_FINISHED first",
    },
    LEAK: {
        "default/netra": "a copy of every event to another user's connection",
        "ag-ui": "another user's connection receives a copy of a whole run it never started",
    },
    WRONG_RUN_ID: {
        "default/netra": "every event carries another run_id",
        "ag-ui": "RUN_FINISHED carries a runId other than its RUN_STARTED's",
    },
    ACCEPT_EXPIRED: {"every wire": _SAME},
    SLOW_FIRST_EVENT: {"every wire": _SAME + " (the delay is --slow-first-delay)"},
    CLOSE_MID_RUN: {"every wire": _SAME + ", whatever the 2nd event is"},
    NO_CONNECTION_ESTABLISHED: {
        "default": "no system_message welcome",
        "netra": "no connection_established welcome",
        "ag-ui": "no effect: this wire has no welcome frame (accepted, does nothing)",
    },
    HEALTH_500: {"every wire": _SAME},
}


def parse_faults(names: Iterable[str]) -> frozenset[str]:
    """Return the set of fault names, or raise ValueError naming the bad one and the valid ones."""
    chosen = set()
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; valid faults: {', '.join(FAULTS)}")
        chosen.add(name)
    return frozenset(chosen)


def help_text() -> str:
    """The ``--help`` epilog's fault table: the rule each breaks, and its effect per wire."""
    lines = []
    for name, rule in FAULTS.items():
        lines.append(f"  {name:<27} {rule}")
        for wire, effect in FAULT_EFFECTS[name].items():
            lines.append(f"  {'':<29}{wire + ':':<15}{effect}")
    return "\n".join(lines)


# --- sequence faults, on a run's frames ------------------------------------------------

# Lifecycle roles of a run's frames, named by what they mean on every wire.
STARTED = "started"
THINKING = "thinking"
TOOL_START = "tool_start"      # tool_executing / TOOL_CALL_START + ARGS
TOOL_END = "tool_end"          # tool_completed / TOOL_CALL_END + RESULT
ANSWER = "answer"              # TEXT_MESSAGE_* (no frame on default/netra)
COMPLETED = "completed"        # agent_completed / RUN_FINISHED
FAILED = "failed"              # agent_error / RUN_ERROR
TERMINAL = (COMPLETED, FAILED)


class Frame(NamedTuple):
    """One frame of a run: the JSON text around its timestamp, which is filled in at send time."""

    delay: float        # seconds to wait before sending it (a run's first frame goes at once)
    role: str           # one of the roles above
    call: str | None    # the tool call it belongs to; pairs a call's start and end
    head: str           # JSON text before the timestamp value
    tail: str           # JSON text after it


def apply_sequence_faults(frames: list[Frame], faults: frozenset[str]) -> list[Frame]:
    """Rewrite a correct run's frames as the active faults dictate."""
    if DROP_TOOL_COMPLETED in faults:
        frames = [f for f in frames if f.role != TOOL_END]
    if DROP_AGENT_COMPLETED in faults:
        frames = [f for f in frames if f.role not in TERMINAL]
    if REORDER in faults:
        frames = _ends_before_starts(frames)
    if COMPLETED_FIRST in faults:
        frames = [f for f in frames if f.role in TERMINAL] + [f for f in frames if f.role not in TERMINAL]
    return frames


def _ends_before_starts(frames: list[Frame]) -> list[Frame]:
    """Move each tool call's end frames to just before its first start frame."""
    ends: dict[str, list[Frame]] = {}
    for frame in frames:
        if frame.role == TOOL_END:
            ends.setdefault(frame.call, []).append(frame)
    out: list[Frame] = []
    for frame in frames:
        if frame.role == TOOL_END:
            continue
        if frame.role == TOOL_START and frame.call in ends:
            out.extend(ends.pop(frame.call))
        out.append(frame)
    for rest in ends.values():  # an end without a start keeps its place at the end
        out.extend(rest)
    return out
