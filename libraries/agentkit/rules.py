"""PROTOCOL.md's run rules as pure checks over recorded events.

Each check returns a list of :class:`Violation`; an empty list means the rule holds.
The assertion keywords and the concurrency engine both call these, so a run is judged
the same way whether one test or a thousand sessions produced it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .dialect import SCHEMAS, Dialect, current
from .event import Event

RULES = {
    1: "start and end: agent_started first, exactly one terminal event last",
    2: "thinking: at least one agent_thinking between start and end",
    3: "tool pairing: every tool_executing followed by its tool_completed, none unpaired",
    4: "ids: every event carries the request's run_id and thread_id and the connection's user_id",
    5: "isolation: a connection never receives another user's events",
    6: "timing: first event and whole run within their budgets",
    7: "schema: each event validates against its JSON Schema",
}


@dataclass
class Violation:
    rule: int
    message: str
    event: Event | None = None

    def __str__(self) -> str:
        return f"Rule {self.rule} ({RULES[self.rule].split(':')[0]}) violated: {self.message}"


@dataclass
class RunRecord:
    """One agent run as a client saw it.

    ``events`` are the frames that belong to the run (its run_id or thread_id), in arrival
    order, including any that came after the terminal event. ``sent_at`` and every
    ``Event.received`` come from ``time.perf_counter()``. ``ended`` is ``terminal``,
    ``closed`` (the connection closed first) or ``timeout``."""

    connection: str
    user_id: str | None
    run_id: str | None
    thread_id: str | None
    sent_at: float
    events: list[Event] = field(default_factory=list)
    ended: str = "terminal"
    close: Event | None = None
    dialect: Dialect = field(default_factory=current, repr=False)

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

    def at(self, event: Event) -> str:
        return f"{event.type} (#{event.seq}) at {self.rel(event):.3f}s"

    def ending(self) -> str:
        term = self.terminal
        if term is not None:
            return f"the run ended with {self.at(term)}"
        if self.ended == "closed" and self.close is not None:
            return f"the connection closed (code {self.close.close_code}) at {self.rel(self.close):.3f}s before the run ended"
        return "the run never ended (no agent_completed or agent_error)"


def check_start_end(run: RunRecord) -> list[Violation]:
    out: list[Violation] = []
    events = run.agent_events
    started = run.dialect.names("started")
    if not events:
        return [Violation(1, f"no agent event arrived for run {run.run_id}; {run.ending()}.")]
    if events[0].role != "started":
        out.append(Violation(1, f"expected {'/'.join(started)} as the first event, got {run.at(events[0])}.", events[0]))
    starts = [e for e in events if e.role == "started"]
    if len(starts) > 1:
        out.append(Violation(1, f"expected one {started[0]}, got {len(starts)}.", starts[1]))
    terminals = [e for e in events if e.is_terminal]
    if not terminals:
        out.append(Violation(1, f"expected exactly one terminal event ({', '.join(run.dialect.names('completed') + run.dialect.names('error'))}); {run.ending()}."))
    else:
        if len(terminals) > 1:
            out.append(Violation(1, f"expected exactly one terminal event, got {len(terminals)}: "
                                    + ", ".join(run.at(e) for e in terminals) + ".", terminals[1]))
        last = events[-1]
        if not last.is_terminal:
            out.append(Violation(1, f"expected the terminal event last, but {run.at(last)} came after "
                                    f"{run.at(terminals[0])}.", last))
    return out


def check_thinking(run: RunRecord) -> list[Violation]:
    """Judged only when the run starts with agent_started and has a terminal event:
    "between start and end" means nothing otherwise, and rule 1 names that problem."""
    events = run.agent_events
    end = next((i for i, e in enumerate(events) if e.is_terminal), None)
    if not events or events[0].role != "started" or end is None:
        return []
    if not any(e.role == "thinking" for e in events[1:end]):
        names = "/".join(run.dialect.names("thinking"))
        return [Violation(2, f"expected at least one {names} between start and end; got "
                             f"{[e.type for e in events]}; {run.ending()}.")]
    return []


def check_tool_pairing(run: RunRecord) -> list[Violation]:
    out: list[Violation] = []
    open_calls: list[Event] = []
    for e in run.agent_events:
        if e.role == "tool_executing":
            open_calls.append(e)
        elif e.role == "tool_completed":
            match = next((c for c in open_calls if c.tool_name == e.tool_name), None)
            if match is None:
                out.append(Violation(3, f"{run.at(e)} for tool '{e.tool_name}' has no tool_executing before it.", e))
            else:
                open_calls.remove(match)
    for call in open_calls:
        out.append(Violation(3, f"expected tool_completed for '{call.tool_name}' after tool_executing at "
                                f"{run.rel(call):.3f}s; {run.ending()}.", call))
    return out


def check_ids(run: RunRecord) -> list[Violation]:
    out: list[Violation] = []
    for e in run.agent_events:
        wrong = []
        for name, expected in (("run_id", run.run_id), ("thread_id", run.thread_id), ("user_id", run.user_id)):
            if expected is None:
                continue
            got = e.field(name)
            if got != expected:
                wrong.append(f"{name} {got!r} (expected {expected!r})")
        if wrong:
            out.append(Violation(4, f"{run.at(e)} carries " + ", ".join(wrong) + ".", e))
    return out


def foreign_events(events: list[Event], user_id: str | None) -> list[Event]:
    """Agent events whose user_id (top level or under data) is not the connection's user."""
    if user_id is None:
        return []
    return [e for e in events if e.is_agent_event and e.user_id is not None and e.user_id != user_id]


def check_isolation(events: list[Event], user_id: str | None, connection: str = "") -> list[Violation]:
    return [Violation(5, f"connection '{connection or e.connection}' of user {user_id!r} received {e.type} "
                         f"(#{e.seq}) of user {e.user_id!r}, run {e.run_id!r}.", e)
            for e in foreign_events(events, user_id)]


def check_timing(run: RunRecord, first_event: float, whole_run: float) -> list[Violation]:
    out: list[Violation] = []
    events = run.agent_events
    if events:
        first = run.rel(events[0])
        if first > first_event:
            out.append(Violation(6, f"first event {events[0].type} arrived {first:.3f}s after the message; "
                                    f"budget {first_event:g}s.", events[0]))
    else:
        out.append(Violation(6, f"no event arrived within the first-event budget of {first_event:g}s."))
    term = run.terminal
    if term is not None and run.rel(term) > whole_run:
        out.append(Violation(6, f"the run took {run.rel(term):.3f}s ({term.type}); budget {whole_run:g}s.", term))
    return out


@lru_cache(maxsize=64)
def _fast_validator(schema_dir: Path, name: str):
    """fastjsonschema compiles a schema to Python once: a verdict in a few microseconds per
    event, where jsonschema takes tens. Used for the verdict only; messages come from jsonschema.
    Returns ``(validate, exception class)``; cached per schema, so the per-event cost is the check."""
    import fastjsonschema  # first use only: keeps library import light

    schema = json.loads((Path(schema_dir) / name).read_text(encoding="utf-8"))
    return fastjsonschema.compile(schema), fastjsonschema.JsonSchemaException


def schema_valid(event: Event, schema_dir: Path = SCHEMAS) -> bool:
    name = event.dialect.schemas.get(event.type or "")
    if not name:
        return True
    validate, invalid = _fast_validator(schema_dir, name)
    try:
        validate(event.message)
    except invalid:
        return False
    return True


@lru_cache(maxsize=64)
def _validator(path: str):
    from jsonschema import Draft202012Validator  # imported on first use: keeps startup light

    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(event: Event, schema_dir: Path = SCHEMAS) -> list[str]:
    name = event.dialect.schemas.get(event.type or "")
    if not name:
        return []
    validator = _validator(str(Path(schema_dir) / name))
    return [f"{'.'.join(map(str, err.absolute_path)) or '<root>'}: {err.message}"
            for err in validator.iter_errors(event.message)]


def check_schemas(run: RunRecord, schema_dir: Path = SCHEMAS) -> list[Violation]:
    out = []
    for e in run.agent_events:
        if schema_valid(e, schema_dir):
            continue
        errors = schema_errors(e, schema_dir)
        if errors:
            out.append(Violation(7, f"{run.at(e)} does not match {e.dialect.schemas[e.type]}: " + "; ".join(errors[:3]), e))
    return out


def check_run(run: RunRecord, first_event: float = 2.0, whole_run: float = 30.0,
              schemas: bool = True) -> list[Violation]:
    """Every per-run rule (1-4, 6, 7). Isolation (5) is a property of the connection."""
    out = (check_start_end(run) + check_thinking(run) + check_tool_pairing(run)
           + check_ids(run) + check_timing(run, first_event, whole_run))
    if schemas:
        out += check_schemas(run)
    return out
