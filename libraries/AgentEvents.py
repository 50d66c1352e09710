"""Assertions on agent runs: the rules of PROTOCOL.md, one keyword each, and all at once.

The library documentation (what libdoc shows) is the docstring of :class:`AgentEvents`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from assertionengine import AssertionOperator, verify_assertion
from robot.api import logger
from robot.api.deco import keyword, library

from agentkit import dialect as dialects
from agentkit import rules
from agentkit import target as targets
from agentkit import timeline
from agentkit.assertions import verify
from agentkit.client import REGISTRY
from agentkit.dialect import get_path
from agentkit.event import Event
from agentkit.rules import RunRecord, Violation


def _secs(value: timedelta | None, default: float) -> float:
    return default if value is None else value.total_seconds()


def _budgets(first_event: timedelta | None, whole_run: timedelta | None) -> tuple[float, float]:
    tgt = targets.current()
    return (_secs(first_event, tgt.first_event_timeout if tgt else 2.0),
            _secs(whole_run, tgt.run_timeout if tgt else 30.0))


def _message(event: Event | dict) -> Any:
    return event.message if isinstance(event, Event) else event


@library(scope="GLOBAL", auto_keywords=False)
class AgentEvents:
    """Assertions on agent runs: the rules of PROTOCOL.md, one keyword each, and all at once.

    A run comes from ``Collect Agent Run`` (``AgentSessions``). Every failure names the
    rule it checks and shows the run's event timeline, e.g.:

    | Rule 3 (tool pairing) violated: expected tool_completed for 'search_docs' after
    | tool_executing at 0.041s; the run ended with agent_completed (#6) at 0.130s.

    Event names come from the dialect in force (``Use Event Dialect``; default: the names
    in PROTOCOL.md), so another backend's names map onto the same lifecycle roles.
    """

    def _fail_on(self, run: RunRecord, violations: list[Violation], what: str) -> None:
        if not violations:
            logger.info(f"{what}: holds for run {run.run_id} ({len(run.agent_events)} events).")
            return
        lines = "\n".join(f"- {v}" for v in violations)
        marked = violations[0].event
        raise AssertionError(f"{lines}\nRun {run.run_id} on '{run.connection}', timeline (time since the message):\n"
                             + timeline.text(run.events, run.sent_at, mark=marked))

    def _check(self, run: Any) -> RunRecord:
        if not isinstance(run, RunRecord):
            raise TypeError(f"Expected a run from 'Collect Agent Run', got {type(run).__name__}: {str(run)[:80]}.")
        return run

    @keyword
    def agent_run_should_complete_with_all_required_events(self, run: RunRecord, first_event: timedelta | None = None,
                                                            whole_run: timedelta | None = None,
                                                            check_schemas: bool = True) -> None:
        """Checks every per-run rule at once and reports every violation.

        Rules: 1 start and end, 2 thinking, 3 tool pairing, 4 ids, 6 time budgets
        (``first_event``/``whole_run``, default the target's, else 2s/30s), 7 schemas.
        Also requires the five lifecycle events of a run with a tool call: started,
        thinking, tool_executing, tool_completed, completed.

        Example:
        | ${result}=    Collect Agent Run    ${run}
        | Agent Run Should Complete With All Required Events    ${result}
        """
        run = self._check(run)
        first, whole = _budgets(first_event, whole_run)
        violations = rules.check_run(run, first, whole, check_schemas)
        roles = {e.role for e in run.agent_events}
        missing = [r for r in ("started", "thinking", "tool_executing", "tool_completed", "completed") if r not in roles]
        if missing and not violations:  # otherwise the broken rule already explains it
            names = ", ".join(run.dialect.names(r)[0] for r in missing)
            violations.append(Violation(1, f"required event(s) missing from the run: {names}; got "
                                           f"{[e.type for e in run.agent_events]}."))
        self._fail_on(run, sorted(violations, key=lambda v: v.rule), "All run rules")

    @keyword
    def run_should_start_and_end_once(self, run: RunRecord) -> None:
        """Rule 1: ``agent_started`` first; exactly one terminal event, and it is last."""
        run = self._check(run)
        self._fail_on(run, rules.check_start_end(run), "Rule 1 (start and end)")

    @keyword
    def run_should_contain_thinking(self, run: RunRecord) -> None:
        """Rule 2: at least one ``agent_thinking`` event."""
        run = self._check(run)
        self._fail_on(run, rules.check_thinking(run), "Rule 2 (thinking)")

    @keyword
    def tool_calls_should_be_paired(self, run: RunRecord) -> None:
        """Rule 3: each ``tool_executing`` is followed by a ``tool_completed`` of the same tool, and
        no ``tool_completed`` comes without its ``tool_executing``."""
        run = self._check(run)
        self._fail_on(run, rules.check_tool_pairing(run), "Rule 3 (tool pairing)")

    @keyword
    def run_events_should_carry_ids(self, run: RunRecord) -> None:
        """Rule 4: every event carries the request's ``run_id`` and ``thread_id`` and the
        connection's ``user_id``."""
        run = self._check(run)
        self._fail_on(run, rules.check_ids(run), "Rule 4 (ids)")

    @keyword
    def run_should_meet_time_budgets(self, run: RunRecord, first_event: timedelta | None = None,
                                     whole_run: timedelta | None = None) -> None:
        """Rule 6: first event within ``first_event`` of the message, run within ``whole_run``.

        Default budgets: the target's (``E2E_FIRST_EVENT_TIMEOUT``, ``E2E_RUN_TIMEOUT``), else 2s and 30s.

        Example:
        | Run Should Meet Time Budgets    ${result}    first_event=2s    whole_run=30s
        """
        run = self._check(run)
        first, whole = _budgets(first_event, whole_run)
        self._fail_on(run, rules.check_timing(run, first, whole), f"Rule 6 (timing, {first:g}s/{whole:g}s)")

    @keyword
    def run_events_should_match_schemas(self, run: RunRecord) -> None:
        """Rule 7: each event validates against its JSON Schema in ``resources/schemas/``."""
        run = self._check(run)
        self._fail_on(run, rules.check_schemas(run), "Rule 7 (schemas)")

    @keyword
    def connection_should_not_receive_foreign_events(self, alias: str | None = None) -> None:
        """Rule 5: no event on the connection carries another user's ``user_id`` (top level or
        under ``data``). Checks every frame received so far.

        Example:
        | Connection Should Not Receive Foreign Events    alice
        """
        conn = REGISTRY.get(alias)
        frames = conn.snapshot()
        violations = rules.check_isolation(frames, conn.user_id, conn.alias)
        if violations:
            raise AssertionError("\n".join(f"- {v}" for v in violations[:10])
                                 + (f"\n... {len(violations) - 10} more" if len(violations) > 10 else "")
                                 + f"\nFrames on '{conn.alias}':\n" + timeline.text(frames, conn.opened_at,
                                                                                   mark=violations[0].event))
        logger.info(f"Rule 5 (isolation): none of the {len(frames)} frames on '{conn.alias}' belongs to another user "
                    f"than {conn.user_id!r}.")

    @keyword
    def run_should_contain_events_in_order(self, run: RunRecord, *event_types: str) -> None:
        """The run contains these event types as a subsequence, in this order.

        Example:
        | Run Should Contain Events In Order    ${result}    agent_started    tool_executing    tool_completed    agent_completed
        """
        run = self._check(run)
        types = [e.type for e in run.agent_events]
        pos = 0
        for wanted in event_types:
            try:
                pos = types.index(wanted, pos) + 1
            except ValueError:
                raise AssertionError(f"Expected {list(event_types)} in this order; '{wanted}' is missing "
                                     f"after position {pos}. Got {types}.\n"
                                     + timeline.text(run.events, run.sent_at)) from None

    @keyword
    def get_run_events(self, run: RunRecord, event_type: str | None = None) -> list:
        """Returns the run's events as messages (dictionaries), optionally of one type."""
        run = self._check(run)
        return [e.message for e in run.agent_events if event_type is None or e.type == event_type]

    @keyword
    def get_run_event_count(self, run: RunRecord, event_type: str | None = None,
                            assertion_operator: AssertionOperator | None = None, expected: Any = None) -> int:
        """Number of the run's events (of ``event_type``), with an optional inline assertion.

        Example:
        | Get Run Event Count    ${result}    tool_completed    ==    1
        | Get Run Event Count    ${result}    agent_thinking    >=    1
        """
        count = len(self.get_run_events(run, event_type))
        return verify_assertion(count, assertion_operator, int(expected) if expected is not None else None,
                                f"Number of {event_type or 'agent'} events in run {run.run_id}")

    @keyword
    def get_event_field(self, event: Event | dict, path: str, assertion_operator: AssertionOperator | None = None,
                        expected: Any = None) -> Any:
        """Value at a dotted ``path`` of an event, with an optional inline assertion.

        ``path`` is a dotted path (``data.tool_name``) or a dialect field name (``tool_name``,
        ``result``, ``thought``, ``run_id``) that resolves the backend's own field layout.

        Example:
        | ${event}=    Wait For Event    tool_executing
        | Get Event Field    ${event}    data.tool_name    ==    search_docs
        | Get Event Field    ${event}    tool_name    ^=    search
        """
        message = _message(event)
        sentinel = object()
        value = get_path(message, path, sentinel)
        if value is sentinel:
            value = dialects.current().field(message, path, sentinel)
        if value is sentinel:
            if assertion_operator is None:
                raise AssertionError(f"Event has no field '{path}': {str(message)[:300]}")
            value = None
        return verify(value, assertion_operator, expected, f"Field '{path}' of {get_path(message, 'type')}")

    @keyword
    def use_event_dialect(self, name_or_path: str) -> str:
        """Loads the event dialect (a built-in name from ``resources/dialects/`` or a JSON file)
        that maps the backend's event names and field paths onto the lifecycle roles.

        Example:
        | Use Event Dialect    ${CURDIR}/my_backend.json
        """
        try:
            d = dialects.use(name_or_path)
        except dialects.DialectError as err:
            raise ValueError(str(err)) from None
        logger.info(f"Event dialect '{d.name}' from {d.source}: {d.events}")
        return d.name
