"""Assertions on agent runs: the dialect's rules, one keyword each, and all at once.

The library documentation (what libdoc shows) is the docstring of :class:`AgentEvents`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from assertionengine import AssertionOperator, verify_assertion
from robot.api import SkipExecution, logger
from robot.api.deco import keyword, library

from agentkit import rules
from agentkit import target as targets
from agentkit import timeline
from agentkit.assertions import verify
from agentkit.rules import Violation
from agentkit.rules.schemas import SchemaCheckUnavailable, schemas_off_reason
from agentkit.transports.threaded import REGISTRY
from agentkit.wire import dialect as dialects
from agentkit.wire.event import Event
from agentkit.wire.masking import redact
from agentkit.wire.paths import MISSING, get_path
from agentkit.wire.run import RunRecord


MAX_VIOLATIONS_SHOWN = 6


def _secs(value: timedelta | None, default: float) -> float:
    return default if value is None else value.total_seconds()


def _budgets(first_event: timedelta | None, whole_run: timedelta | None) -> tuple[float, float]:
    tgt = targets.current()
    return (_secs(first_event, tgt.first_event_timeout if tgt else 2.0),
            _secs(whole_run, tgt.run_timeout if tgt else 30.0))


def _message(event: Event | dict) -> Any:
    return event.message if isinstance(event, Event) else event


def check_run(run: Any) -> RunRecord:
    if not isinstance(run, RunRecord):
        raise TypeError(f"Expected a run from 'Collect Agent Run', got {type(run).__name__}: {str(run)[:80]}.")
    return run


def fail_on(run: RunRecord, violations: list[Violation], what: str) -> None:
    """Log that ``what`` holds, or fail with every violation and the run's timeline."""
    for note in run.notes:
        logger.info(redact(f"Note on run {run.run_id}: {note}"))
    if not violations:
        logger.info(f"{what}: holds for run {run.run_id} ({len(run.agent_events)} events).")
        return
    # Robot keeps 40 lines of a failure message: the violations and a timeline fit.
    shown = violations[:MAX_VIOLATIONS_SHOWN]
    lines = "\n".join(f"- {v}" for v in shown)
    if len(violations) > len(shown):
        rest = sorted({v.rule for v in violations[len(shown):]})
        lines += f"\n- ... and {len(violations) - len(shown)} more violation(s) of rule(s) {rest} (all in the log)"
        logger.info(redact("All violations:\n" + "\n".join(f"- {v}" for v in violations)))
    marked = [v.event for v in violations if v.event is not None]
    raise AssertionError(redact(f"{lines}\nRun {run.run_id} on '{run.connection}' (dialect '{run.dialect.name}'), "
                                f"timeline (time since the message, -> marks the events concerned):\n"
                                + timeline.text(sorted(run.events + run.other, key=lambda e: e.seq), run.sent_at,
                                                limit=24, mark=marked)
                                + "\nThe rules are explained in docs/protocol.md."))


def _role_or_name(run: RunRecord, wanted: str) -> list[Event]:
    """The run's events of a role (``completed``) or a frame name (``agent_completed``)."""
    events = run.agent_events
    if wanted in dialects.ROLES:
        return [e for e in events if e.role == wanted]
    return [e for e in events if e.type == wanted]


@library(scope="GLOBAL", auto_keywords=False)
class AgentEvents:
    """Assertions on agent runs: the dialect's rules, one keyword each, and all at once.

    A run comes from ``Collect Agent Run`` (``AgentSessions``). The rule set is the
    dialect's: ``protocol`` (docs/protocol.md, rules 1-7) or ``ag-ui`` (AG-UI's spec
    rules, reported under the same rule numbers and naming the spec page). Every failure
    names the rule it checks, the event and id concerned, and shows the run's timeline::

        Rule 3 (pairing) violated: expected tool_completed for 'search_docs' after
        tool_executing at 0.041s; the run ended with agent_completed (#6) at 0.130s.

    Event names may be given as the wire's names (``agent_completed``, ``RUN_FINISHED``)
    or as lifecycle roles (``started``, ``thinking``, ``tool_executing``,
    ``tool_completed``, ``completed``, ``error``), which read the same on every dialect.
    A check that does not apply to the dialect (thinking on AG-UI) is skipped with the
    reason, never passed.
    """

    @keyword
    def agent_run_should_complete_with_all_required_events(self, run: RunRecord, first_event: timedelta | None = None,
                                                            whole_run: timedelta | None = None,
                                                            check_schemas: bool = True) -> None:
        """Checks every per-run rule at once, demands a successful end and the dialect's
        required events, and reports every violation.

        | =Argument= | =Meaning= |
        | ``run`` | A run from ``Collect Agent Run``. |
        | ``first_event`` | First-event budget (rule 6), e.g. ``2s``. Default: the target's ``E2E_FIRST_EVENT_TIMEOUT``. |
        | ``whole_run`` | Whole-run budget (rule 6). Default: the target's ``E2E_RUN_TIMEOUT``. |
        | ``check_schemas`` | Rule 7; default true. |

        Rules: 1 start and end, 2 thinking (where the dialect requires it), 3 pairing, 4 ids,
        6 time budgets, 7 schemas. A run that ended in a well-formed error fails here
        (use ``Run Should Conform To Protocol`` to accept it). Skips, saying why, when rule
        7 cannot be checked in this environment.

        Example:
        | ${result}=    Collect Agent Run    ${run}
        | Agent Run Should Complete With All Required Events    ${result}
        """
        run = check_run(run)
        first, whole = _budgets(first_event, whole_run)
        try:
            violations = rules.check_run(run, first, whole, check_schemas)
        except SchemaCheckUnavailable as err:
            raise SkipExecution(str(err)) from None
        term = run.terminal
        if term is not None and not violations and not run.succeeded:
            term = run.failure or term
            errors = [e for e in run.until_end if e.role == "tool_error"]
            calls = run.trajectory()
            why = "; ".join(f"tool {c.name!r} failed: {c.error!r}" for c in calls if c.error)
            if not why and calls:  # the wire marks no tool error (AG-UI): name the last tool call
                last = calls[-1]
                why = f"its last tool call was {last.name}({last.arguments}) -> {last.result!r}"
            what = ("the run was cancelled" if term.role == "completed" else
                    f"the run ended with the agent's error {run.at(term)}: {term.field('error')!r}")
            violations.append(Violation(1, what + (f" ({why})" if why else "")
                                           + "; a well-formed error run is not a completed one.",
                                        errors[0] if errors else term))
        missing = rules.required_missing(run)
        if missing and not violations and (term is None or run.succeeded):  # otherwise the broken rule already explains it
            names = ", ".join(run.dialect.label(r) for r in missing)
            violations.append(Violation(1, f"required event(s) missing from the run: {names} (rules.required_roles "
                                           f"of dialect '{run.dialect.name}'); got {[e.type for e in run.agent_events]}."))
        fail_on(run, sorted(violations, key=lambda v: v.rule), "All run rules")

    @keyword
    def run_should_conform_to_protocol(self, run: RunRecord, check_schemas: bool = True) -> None:
        """Only the dialect's own rules: order, pairing, ids and schemas (and thinking where
        the dialect requires it). A run that ended in a well-formed error passes; timing and
        success are not judged (``Agent Run Should Complete With All Required Events`` does).

        Example:
        | Run Should Conform To Protocol    ${result}
        """
        run = check_run(run)
        try:
            violations = rules.check_conformance(run, check_schemas)
        except SchemaCheckUnavailable as err:
            raise SkipExecution(str(err)) from None
        fail_on(run, violations, f"The rules of dialect '{run.dialect.name}' ({run.dialect.rule_set})")

    @keyword
    def run_should_start_and_end_once(self, run: RunRecord) -> None:
        """Rule 1: the run starts with its started event (``agent_started``, ``RUN_STARTED``);
        exactly one terminal event ends it, last, with nothing after it in the grace window.

        Example:
        | Run Should Start And End Once    ${result}
        """
        run = check_run(run)
        fail_on(run, rules.check_rule(run, 1), "Rule 1 (start and end)")

    @keyword
    def run_should_contain_thinking(self, run: RunRecord) -> None:
        """Rule 2: at least one thinking event between start and end. Skips, saying why, when
        the dialect does not require thinking (``rules.thinking: optional``, e.g. AG-UI).

        Example:
        | Run Should Contain Thinking    ${result}
        """
        run = check_run(run)
        if not run.dialect.thinking_required:
            raise SkipExecution(f"dialect '{run.dialect.name}' does not require thinking events (rules.thinking: "
                                f"optional)")
        from agentkit.rules.protocol import check_thinking

        fail_on(run, check_thinking(run), "Rule 2 (thinking)")

    @keyword
    def tool_calls_should_be_paired(self, run: RunRecord) -> None:
        """Rule 3: every tool call started ends (completed or failed) before the run ends,
        matched by the dialect's tool call key (tool name, ``execution_id``, ``toolCallId``);
        nothing ends that did not start. Under AG-UI also messages, reasoning and steps.

        Example:
        | Tool Calls Should Be Paired    ${result}
        """
        run = check_run(run)
        fail_on(run, rules.check_rule(run, 3), "Rule 3 (pairing)")

    @keyword
    def run_events_should_carry_ids(self, run: RunRecord) -> None:
        """Rule 4: every event carries the ids the dialect says events carry (the request's
        ``run_id`` and ``thread_id``, the connection's user). Under AG-UI: the run's
        boundary events agree on ``threadId``/``runId``. Skips, saying why, when the
        dialect's events carry no ids (runs tied to the connection).

        Example:
        | Run Events Should Carry Ids    ${result}
        """
        run = check_run(run)
        if run.dialect.rule_set != "ag-ui" and not run.dialect.event_ids:
            raise SkipExecution(f"dialect '{run.dialect.name}'s events carry no ids (run.event_ids is empty): the "
                                f"run is tied to the connection")
        fail_on(run, rules.check_rule(run, 4), "Rule 4 (ids)")

    @keyword
    def run_should_meet_time_budgets(self, run: RunRecord, first_event: timedelta | None = None,
                                     whole_run: timedelta | None = None) -> None:
        """Rule 6: first event within ``first_event`` of the message, run within ``whole_run``.

        Default budgets: the target's (``E2E_FIRST_EVENT_TIMEOUT``, ``E2E_RUN_TIMEOUT``), else 2s and 30s.

        Example:
        | Run Should Meet Time Budgets    ${result}    first_event=2s    whole_run=30s
        """
        run = check_run(run)
        first, whole = _budgets(first_event, whole_run)
        fail_on(run, rules.check_timing(run, first, whole), f"Rule 6 (timing, {first:g}s/{whole:g}s)")

    @keyword
    def run_events_should_match_schemas(self, run: RunRecord) -> None:
        """Rule 7: each agent event validates against its JSON Schema (the dialect's
        ``schemas``; AG-UI events against the ``ag-ui-protocol`` models), formats included.
        Skips, saying why, when the dialect switches schemas off or formats cannot be checked.

        Example:
        | Run Events Should Match Schemas    ${result}
        """
        run = check_run(run)
        reason = schemas_off_reason(run.dialect)
        if reason:
            raise SkipExecution(f"Rule 7 (schema) cannot be checked: {reason}")
        from agentkit.rules.schemas import check_schemas

        fail_on(run, check_schemas(run), "Rule 7 (schemas)")

    @keyword
    def connection_should_not_receive_foreign_events(self, alias: str | None = None,
                                                     quiet: timedelta | None = None) -> None:
        """Rule 5: the connection received no event of a run it did not start, whatever
        that event says about its user. Listens for a quiet window first (``quiet``, default
        the target's ``E2E_RUN_GRACE``; 0.3s when that is off), so events arriving just after
        the last run are judged too. Every foreign frame is listed and marked.

        Example:
        | Connection Should Not Receive Foreign Events    alice
        """
        self.connections_should_not_receive_foreign_events(alias, quiet=quiet)

    @keyword
    def connections_should_not_receive_foreign_events(self, *aliases: str | None,
                                                      quiet: timedelta | None = None) -> None:
        """Rule 5 for several connections at once (default: the current one): every
        connection that received an event of a run it did not start is reported, each with
        its foreign frames marked in its timeline.

        Example:
        | Connections Should Not Receive Foreign Events    alice    bob
        """
        tgt = targets.current()
        window = _secs(quiet, tgt.grace if tgt is not None and tgt.grace > 0 else 0.3)
        conns = [REGISTRY.get(a) for a in (aliases or (None,))]
        for conn in conns:
            conn.wait_quiet(window, window + 5.0)
        reports, total = [], 0
        for conn in conns:
            violations = rules.foreign_violations(list(conn.session.foreign), conn.user_id, conn.alias)
            if not violations:
                logger.info(f"Rule 5 (isolation): none of the {len(conn.snapshot())} frames on '{conn.alias}' belongs "
                            f"to a run it did not start (user {conn.user_id!r}, listened {window:g}s after the last "
                            f"frame).")
                continue
            total += len(violations)
            shown = "\n".join(f"- {v}" for v in violations[:10])
            more = f"\n... {len(violations) - 10} more" if len(violations) > 10 else ""
            reports.append(f"Connection '{conn.alias}': {len(violations)} foreign event(s)\n{shown}{more}\n"
                           f"Frames on '{conn.alias}' (-> foreign):\n"
                           + timeline.text(conn.snapshot(), conn.opened_at, limit=16, mark=[v.event for v in violations]))
        if reports:
            head = (f"Rule 5 (isolation) violated on {len(reports)} of {len(conns)} connection(s), {total} foreign "
                    f"event(s) in all:\n")
            raise AssertionError(redact(head + "\n\n".join(reports)))

    @keyword
    def run_should_contain_events_in_order(self, run: RunRecord, *event_types: str) -> None:
        """Rule 1: the run contains these events as a subsequence, in this order; each given
        as a role (``started``, ``tool_executing``) or a frame name (``agent_started``).

        Example:
        | Run Should Contain Events In Order    ${result}    started    tool_executing    tool_completed    completed
        """
        run = check_run(run)
        events = run.agent_events
        pos = 0
        for wanted in event_types:
            is_role = wanted in dialects.ROLES
            index = next((i for i in range(pos, len(events))
                          if (events[i].role == wanted if is_role else events[i].type == wanted)), None)
            if index is None:
                got = [f"{e.type} ({e.role})" for e in events]
                fail_on(run, [Violation(1, f"expected {list(event_types)} in this order; '{wanted}' is missing "
                                           f"after position {pos}. Got {got}.")], "Events in order")
            pos = index + 1
        logger.info(f"Run {run.run_id} contains {list(event_types)} in this order.")

    @keyword
    def run_should_contain_the_required_events(self, run: RunRecord) -> None:
        """Rule 1: the run contains every event the dialect requires (``rules.required_roles``:
        started, thinking, tool_executing, tool_completed, completed for ``default``;
        started and completed for ``ag-ui``).

        Example:
        | Run Should Contain The Required Events    ${result}
        """
        run = check_run(run)
        self.run_should_contain_events_in_order(run, *run.dialect.required_roles)

    @keyword
    def get_run_events(self, run: RunRecord, event_type: str | None = None) -> list:
        """Returns the run's agent events as messages (dictionaries), optionally of one role
        (``tool_completed``) or frame name (``RUN_FINISHED``).

        Example:
        | ${completed}=    Get Run Events    ${result}    completed
        """
        run = check_run(run)
        events = run.agent_events if event_type is None else _role_or_name(run, event_type)
        return [e.message for e in events]

    @keyword
    def get_run_event_count(self, run: RunRecord, event_type: str | None = None,
                            assertion_operator: AssertionOperator | None = None, expected: Any = None) -> int:
        """Number of the run's events (of a role or frame name), with an optional inline assertion.
        The grace window after the end is included, so a second terminal event is counted.

        Example:
        | Get Run Event Count    ${result}    completed    ==    1
        | Get Run Event Count    ${result}    thinking    >=    1
        """
        count = len(self.get_run_events(run, event_type))
        return verify_assertion(count, assertion_operator, int(expected) if expected is not None else None,
                                f"Number of {event_type or 'agent'} events in run {run.run_id}")

    @keyword
    def get_event_field(self, event: Event | dict, path: str, assertion_operator: AssertionOperator | None = None,
                        expected: Any = None) -> Any:
        """Value of a field of an event, with an optional inline assertion.

        ``path`` is a dialect field name (``tool_name``, ``parameters``, ``result``, ``run_id``,
        ``error_code``) that reads the backend's own layout, a dialect field plus a sub-path
        (``parameters.city``), or a dotted path into the frame (``data.tool_name``). Fails
        with "no field X; the event has: ..." when the event has no such field.

        Example:
        | ${event}=    Wait For Event    tool_executing
        | Get Event Field    ${event}    tool_name    ==    search_docs
        | Get Event Field    ${event}    parameters.query    contains    docs
        """
        message = _message(event)
        d = event.dialect if isinstance(event, Event) else dialects.current()
        value = get_path(message, path, MISSING)
        if value is MISSING:
            value = d.field(message, path, MISSING)
        if value is MISSING and path in ("error_code",):
            paths = d.frames.get("error_code") or []
            from agentkit.wire.paths import first_present

            value = first_present(message, paths, MISSING)
        if value is MISSING:
            keys = sorted(message) if isinstance(message, dict) else []
            raise AssertionError(redact(f"No field '{path}' in {get_path(message, 'type', 'the event')!r}; the event "
                                        f"has: {', '.join(keys) or '(no fields)'}: {str(message)[:300]}"))
        return verify(value, assertion_operator, expected, f"Field '{path}' of {get_path(message, 'type')}")

    @keyword
    def use_event_dialect(self, name_or_path: str) -> str:
        """Switches the dialect in force (a built-in name from ``resources/dialects/`` or a
        JSON file), checked completely; connections opened from now on use it.

        Example:
        | Use Event Dialect    ${CURDIR}/my_backend.json
        """
        try:
            d = dialects.use(name_or_path)
        except dialects.DialectError as err:
            raise ValueError(str(err)) from None
        logger.info(f"Dialect '{d.name}' from {d.source} (rule set {d.rule_set}).")
        return d.name
