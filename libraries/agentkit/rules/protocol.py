"""The protocol rule set: rules 1-4 of ``docs/protocol.md``, read through the dialect
(event names, the tool call key, which ids events carry, whether thinking is required)."""

from __future__ import annotations

from ..wire.run import RunRecord
from . import Violation


def check(run: RunRecord) -> list[Violation]:
    out = check_start_end(run) + check_tool_pairing(run) + check_ids(run)
    if run.dialect.thinking_required:
        out += check_thinking(run)
    return out


def check_start_end(run: RunRecord) -> list[Violation]:
    """Rule 1: the started event first; exactly one terminal event, and it is last (the
    run's grace window after its end included)."""
    out: list[Violation] = []
    events = run.agent_events
    d = run.dialect
    started = d.label("started")
    if not events:
        return [Violation(1, f"no agent event arrived for run {run.run_id}; {run.ending()}.")]
    if events[0].role != "started":
        out.append(Violation(1, f"expected {started} as the first event, got {run.at(events[0])}.", events[0]))
    starts = [e for e in events if e.role == "started"]
    if len(starts) > 1:
        out.append(Violation(1, f"expected one {started}, got {len(starts)}: "
                                + ", ".join(run.at(e) for e in starts) + ".", starts[1]))
    terminals = [e for e in events if e.is_terminal]
    if not terminals:
        out.append(Violation(1, f"expected exactly one terminal event ({run.terminal_names()}); {run.ending()}."))
        return out
    if len(terminals) > 1:
        out.append(Violation(1, f"expected exactly one terminal event, got {len(terminals)}: "
                                + ", ".join(run.at(e) for e in terminals)
                                + f" (the run listened {run.grace:g}s after its end).", terminals[1]))
    last = events[-1]
    if not last.is_terminal:
        out.append(Violation(1, f"expected the terminal event last, but {run.at(last)} came after "
                                f"{run.at(terminals[0])}.", last))
    return out


def check_thinking(run: RunRecord) -> list[Violation]:
    """Rule 2. Judged only when the run starts with the started event and has a terminal
    event: "between start and end" means nothing otherwise, and rule 1 names that problem."""
    events = run.agent_events
    end = next((i for i, e in enumerate(events) if e.is_terminal), None)
    if not events or events[0].role != "started" or end is None:
        return []
    if not any(e.role == "thinking" for e in events[1:end]):
        return [Violation(2, f"expected at least one {run.dialect.label('thinking')} between start and end; got "
                             f"{[e.type for e in events]}; {run.ending()}.")]
    return []


def check_tool_pairing(run: RunRecord) -> list[Violation]:
    """Rule 3: each tool call started is ended (completed or failed) before the run ends,
    matched by the dialect's tool call key; no end without its start."""
    out: list[Violation] = []
    d = run.dialect
    by_name = d.tool_call_key == "tool_name"
    executing, completed = d.label("tool_executing"), d.label("tool_completed")
    open_calls: list = []
    for e in run.until_end:
        if e.role == "tool_executing":
            if not by_name and any(c.tool_key == e.tool_key for c in open_calls):
                out.append(Violation(3, f"{run.at(e)} starts tool call {d.tool_call_key} {e.tool_key!r} again "
                                        f"while it is still open.", e))
                continue
            open_calls.append(e)
        elif e.role in ("tool_completed", "tool_error"):
            if by_name:
                match = next((c for c in open_calls if c.tool_name == e.tool_name), None)
            else:
                match = next((c for c in open_calls if c.tool_key == e.tool_key), None)
            if match is None:
                key = f"tool '{e.tool_name}'" if by_name else f"tool call {d.tool_call_key} {e.tool_key!r}"
                out.append(Violation(3, f"{run.at(e)} for {key} has no {executing} before it.", e))
            else:
                open_calls.remove(match)
    for call in open_calls:
        key = "" if by_name else f" ({d.tool_call_key} {call.tool_key!r})"
        out.append(Violation(3, f"expected {completed} for '{call.tool_name}'{key} after {executing} at "
                                f"{run.rel(call):.3f}s; {run.ending()}.", call))
    return out


def check_ids(run: RunRecord) -> list[Violation]:
    """Rule 4: every event carries the ids the dialect says events carry (``run.event_ids``):
    the request's run_id and thread_id, the connection's user (the token's subject)."""
    out: list[Violation] = []
    expected = {"run_id": run.run_id, "thread_id": run.thread_id, "user_id": run.user_id}
    names = run.dialect.event_ids
    for e in run.agent_events:
        wrong = []
        for name in names:
            want = expected[name]
            if want is None:
                continue
            got = e.field(name)
            if got != want:
                wrong.append(f"{name} {got!r} (expected {want!r})")
        if wrong:
            out.append(Violation(4, f"{run.at(e)} carries " + ", ".join(wrong) + ".", e))
    return out
