"""The rules that judge a run, as pure checks over recorded events.

Each check returns a list of :class:`Violation`; an empty list means the rule holds.
The dialect picks the rule set (``rules.set``): ``protocol`` (the seven rules of
``docs/protocol.md``) or ``ag-ui`` (the rules AG-UI's spec states). Both report under
the kit's rule numbers, so a report reads the same whatever the wire:

1 start and end, 2 thinking, 3 pairing (tool calls; under AG-UI also messages,
reasoning and steps), 4 ids, 5 isolation, 6 timing, 7 schema.

The assertion keywords and the concurrency engine both call :func:`check_run`, so a run
is judged the same way whether one test or a thousand sessions produced it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wire.event import Event
from ..wire.run import RunRecord

RULES = {
    1: "start and end: the run starts first, ends exactly once, and nothing follows its end",
    2: "thinking: at least one thinking event between start and end",
    3: "pairing: every tool call (and, under AG-UI, every message, reasoning item and step) opened is closed, "
       "nothing is closed or continued that was not opened",
    4: "ids: every event carries the ids that tie it to its run and user",
    5: "isolation: a connection never receives events of a run it did not start",
    6: "timing: first event and whole run within their budgets",
    7: "schema: each event validates against its JSON Schema",
}
RULE_NAMES = {n: text.split(":")[0] for n, text in RULES.items()}
DOCS = "docs/protocol.md"


@dataclass
class Violation:
    """One broken rule: the kit's rule number, what happened, the event concerned and,
    for rules a spec states, where it says so (``source``)."""

    rule: int
    message: str
    event: Event | None = None
    source: str | None = None

    def __str__(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"Rule {self.rule} ({RULE_NAMES[self.rule]}) violated{where}: {self.message}"


def check_timing(run: RunRecord, first_event: float, whole_run: float) -> list[Violation]:
    """Rule 6: first agent event within ``first_event`` seconds of the message, the
    terminal event within ``whole_run``."""
    out: list[Violation] = []
    events = run.agent_events
    if events:
        first = run.rel(events[0])
        if first > first_event:
            out.append(Violation(6, f"first event {events[0].type} arrived {first:.3f}s after the message; "
                                    f"budget {first_event:g}s.", events[0]))
    else:
        out.append(Violation(6, f"no event arrived within the first-event budget of {first_event:g}s; {run.ending()}."))
    term = run.terminal
    if term is not None and run.rel(term) > whole_run:
        out.append(Violation(6, f"the run took {run.rel(term):.3f}s ({term.type}); budget {whole_run:g}s.", term))
    return out


def foreign_violations(events: list[Event], user_id: str | None, connection: str) -> list[Violation]:
    """Rule 5 for the agent events a connection received that belong to no run it started."""
    out = []
    for e in events:
        who = f" of user {e.user_id!r}" if e.user_id is not None else ""
        ids = ", ".join(f"{k} {v!r}" for k, v in (("run", e.run_id), ("thread", e.thread_id)) if v is not None)
        out.append(Violation(5, f"connection '{connection}' of user {user_id!r} received {e.type} (#{e.seq}){who}"
                                f"{', ' + ids if ids else ''}, an event of a run this connection never started.", e))
    return out


def _rule_set(run: RunRecord):
    if run.dialect.rule_set == "ag-ui":
        from . import agui

        return agui
    from . import protocol

    return protocol


def check_conformance(run: RunRecord, schemas: bool = True) -> list[Violation]:
    """Only the dialect's own rules: order, pairing, ids, schemas (and thinking where the
    dialect requires it). A run that ended in a well-formed error passes."""
    out = _rule_set(run).check(run)
    if run.dialect.thinking_required and run.dialect.rule_set != "protocol":
        from .protocol import check_thinking

        out += check_thinking(run)
    if schemas:
        from .schemas import check_schemas

        out += check_schemas(run)
    return sorted(out, key=lambda v: v.rule)


def check_run(run: RunRecord, first_event: float = 2.0, whole_run: float = 30.0,
              schemas: bool = True) -> list[Violation]:
    """Every per-run rule (1-4, 6, 7). Isolation (5) is a property of the connection."""
    return sorted(check_conformance(run, schemas) + check_timing(run, first_event, whole_run), key=lambda v: v.rule)


def check_rule(run: RunRecord, rule: int) -> list[Violation]:
    """One rule of the dialect's rule set (1 start and end, 2 thinking, 3 pairing, 4 ids)."""
    return [v for v in _rule_set(run).check(run) if v.rule == rule]


def required_missing(run: RunRecord) -> list[str]:
    """Roles the dialect requires in a run (``rules.required_roles``) that the run lacks."""
    roles = {e.role for e in run.until_end}
    return [r for r in run.dialect.required_roles if r not in roles]
