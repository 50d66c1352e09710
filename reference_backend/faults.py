"""Fault modes: each one breaks exactly one rule of PROTOCOL.md and nothing else.

Sequence faults rewrite a run's planned steps (:func:`apply_sequence_faults`);
the others act where their rule lives (auth, the WebSocket session, health).
"""

from __future__ import annotations

from collections.abc import Iterable

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

#: Every fault name and the rule it breaks (shown by ``--help``).
FAULTS: dict[str, str] = {
    DROP_TOOL_COMPLETED: "no tool_completed events (rule 3)",
    DROP_AGENT_COMPLETED: "runs end without agent_completed (rule 1)",
    REORDER: "each tool_completed is sent before its tool_executing (rule 3)",
    COMPLETED_FIRST: "agent_completed is sent first, then the rest of the run (rule 1)",
    LEAK: "each run's events also reach another user's connection (rule 5)",
    WRONG_RUN_ID: "events carry a run_id other than the request's (rule 4)",
    ACCEPT_EXPIRED: "expired tokens are accepted on /ws and /api (auth)",
    SLOW_FIRST_EVENT: "the first event of each run is delayed (rule 6)",
    CLOSE_MID_RUN: "the server closes the socket (1011) mid-run (rule 1)",
    NO_CONNECTION_ESTABLISHED: "the connection_established welcome is not sent",
    HEALTH_500: "/health and /api/health answer 500 unhealthy",
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


Step = tuple[str, dict]


def apply_sequence_faults(steps: list[Step], faults: frozenset[str]) -> list[Step]:
    """Rewrite a correct run's ``(event_type, data)`` steps as the active faults dictate."""
    if DROP_TOOL_COMPLETED in faults:
        steps = [s for s in steps if s[0] != "tool_completed"]
    if DROP_AGENT_COMPLETED in faults:
        steps = [s for s in steps if s[0] != "agent_completed"]
    if REORDER in faults:
        steps = _swap_tool_pairs(steps)
    if COMPLETED_FIRST in faults:
        final = [s for s in steps if s[0] == "agent_completed"]
        steps = final + [s for s in steps if s[0] != "agent_completed"]
    return steps


def _swap_tool_pairs(steps: list[Step]) -> list[Step]:
    out = list(steps)
    for i in range(len(out) - 1):
        if out[i][0] == "tool_executing" and out[i + 1][0] == "tool_completed":
            out[i], out[i + 1] = out[i + 1], out[i]
    return out
