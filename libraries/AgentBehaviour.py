"""What QA asks of an agent: behaviour assertions on a collected run.

The library documentation (what libdoc shows) is the docstring of :class:`AgentBehaviour`.
"""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from robot.api import SkipExecution, logger
from robot.api.deco import keyword, library
from robot.libraries.BuiltIn import BuiltIn

from agentkit import timeline
from agentkit.wire.masking import redact
from agentkit.wire.run import RunRecord, ToolCall

OrderMode = Literal["in_order", "exact", "unordered", "subset", "superset"]
REGEXP = "regexp:"
# Keys that make a dictionary read as a JSON Schema (when it is not simply equal to the value).
SCHEMA_KEYS = {"type", "enum", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "const",
               "properties", "required", "items", "minLength", "maxLength", "minItems", "maxItems", "format",
               "anyOf", "oneOf", "allOf", "not", "$ref", "multipleOf", "additionalProperties"}
MODES = ("in_order", "exact", "unordered", "subset", "superset")


def _run(run: Any) -> RunRecord:
    if not isinstance(run, RunRecord):
        raise TypeError(f"Expected a run from 'Collect Agent Run', got {type(run).__name__}: {str(run)[:80]}.")
    return run


def _value_matches(actual: Any, expected: Any) -> tuple[bool, str]:
    """One argument value against what the test expects: equality, ``regexp:<pattern>``
    (searched in the value as text) or a JSON Schema (a dictionary with ``type``,
    ``enum``, ``pattern``, ... keys)."""
    if isinstance(expected, str) and expected.startswith(REGEXP):
        pattern = expected[len(REGEXP):]
        text = actual if isinstance(actual, str) else json.dumps(actual)
        return re.search(pattern, text) is not None, f"matching /{pattern}/"
    if actual == expected:
        return True, repr(expected)
    if isinstance(expected, dict) and expected and set(expected) & SCHEMA_KEYS:
        from jsonschema import Draft202012Validator, FormatChecker
        from jsonschema.exceptions import SchemaError, UnknownType

        try:
            Draft202012Validator.check_schema(expected)
            errors = list(Draft202012Validator(expected, format_checker=FormatChecker()).iter_errors(actual))
        except (SchemaError, UnknownType):
            return False, repr(expected)  # not a schema after all: an object compared by equality
        return not errors, f"valid against {json.dumps(expected)}" + (f" ({errors[0].message})" if errors else "")
    if isinstance(expected, str) and not isinstance(actual, str) and actual is not None:
        # Robot passes text: 18 == "18", true == "True"
        return json.dumps(actual) == expected or str(actual) == expected, repr(expected)
    return False, repr(expected)


def _arguments_match(call: ToolCall, expected: dict, exact: bool, ignore: list[str]) -> tuple[bool, list[str]]:
    args = call.arguments if isinstance(call.arguments, dict) else {}
    problems = []
    for key, want in expected.items():
        if key not in args:
            problems.append(f"no argument {key!r}")
            continue
        ok, shown = _value_matches(args[key], want)
        if not ok:
            problems.append(f"{key}={args[key]!r}, expected {shown}")
    if exact:
        extra = sorted(set(args) - set(expected) - set(ignore))
        if extra:
            problems.append(f"unexpected argument(s) {extra} (exact=True)")
    return not problems, problems


@library(scope="GLOBAL", auto_keywords=False)
class AgentBehaviour:
    """What QA asks of an agent: did it do the right thing?

    Assertions on a run from ``Collect Agent Run``, in the vocabulary of the
    agent-evaluation tools (promptfoo's trajectory assertions, deepeval's tool
    correctness, LangSmith's trajectory match modes), on every dialect:

    - the *trajectory*: the tool calls the agent made, in order, each with its arguments,
      result (or error) and time: `Get Tool Calls`, `Agent Should Call Tool`,
      `Agent Should Not Call Tool`, `Tool Call Count Should Be`, `Tool Calls Should Be In Order`;
    - the *answer*: assembled from streamed text deltas where the wire streams text,
      else the terminal event's result: `Get Agent Answer`, `Agent Answer Should Contain`,
      `Agent Answer Should Match`, `Agent Answer Should Validate Against Schema`;
    - time and cost: `Get Run Timing`, `Run Timing Should Be Within`, `Get Token Usage`;
    - non-deterministic agents: `Run Prompt Repeatedly` judges N runs and passes at a
      minimum pass rate; multi-turn: `Send Follow-Up Message`.

    Argument values are matched by equality, by a regular expression (``regexp:^Par``)
    or by a JSON Schema (a dictionary such as ``${{ {"type": "string", "minLength": 2} }}``).
    A failure shows what was expected next to what the agent did: the trajectory as a
    table (tool, arguments, result, time) in the log and as text in the message.
    """

    def _fail(self, run: RunRecord, message: str) -> None:
        calls = run.trajectory()
        logger.info(timeline.trajectory_table(calls, f"What the agent did in run {run.run_id}"), html=True)
        answer = run.answer()
        raise AssertionError(redact(f"{message}\nWhat the agent did (run {run.run_id}):\n"
                                    f"{timeline.trajectory_text(calls)}\nAnswer: {answer!r}"))

    # --- the trajectory -------------------------------------------------------------
    @keyword
    def get_tool_calls(self, run: RunRecord, skip_if_none: bool = False) -> list[dict]:
        """Returns the run's tool calls in the order they started: dictionaries with ``tool``,
        ``call_id``, ``arguments``, ``result``, ``error``, ``start_s``, ``end_s`` (seconds
        since the message) and ``duration_ms``.

        With ``skip_if_none=True`` a run without tool calls skips the test, saying why,
        unless the dialect requires tool events (then it fails).

        Example:
        | ${calls}=    Get Tool Calls    ${result}
        | Should Be Equal    ${calls}[0][tool]    get_weather
        """
        run = _run(run)
        calls = run.trajectory()
        logger.info(timeline.trajectory_table(calls, f"Tool calls of run {run.run_id}"), html=True)
        if not calls and skip_if_none:
            if "tool_executing" in run.dialect.required_roles:
                self._fail(run, f"The run made no tool call, but dialect '{run.dialect.name}' requires one "
                                f"(rules.required_roles).")
            raise SkipExecution(f"the run called no tool, so there is no tool call to check (dialect "
                                f"'{run.dialect.name}' does not require one)")
        return [c.as_dict() for c in calls]

    @keyword
    def agent_should_call_tool(self, run: RunRecord, tool: str, exact: bool = False, ignore: list[str] | None = None,
                               times: int | None = None, **arguments: Any) -> dict:
        """The agent called ``tool`` with these ``arguments`` (at least once; ``times``: exactly
        that often). Returns the first matching call.

        | =Argument= | =Meaning= |
        | ``tool`` | The tool's name. |
        | ``arguments`` | ``name=value`` pairs, matched as a subset of the call's arguments: each value by equality, ``regexp:<pattern>``, or a JSON Schema (a dictionary). |
        | ``exact`` | When true, the call may have no other arguments than these (and ``ignore``). |
        | ``ignore`` | Argument names left out of the ``exact`` comparison (volatile ones: ids, timestamps). |
        | ``times`` | Exactly this many matching calls. |

        Example:
        | Agent Should Call Tool    ${result}    get_weather    city=Paris
        | Agent Should Call Tool    ${result}    search    query=regexp:(?i)weather    exact=True    ignore=${{["request_id"]}}
        """
        run = _run(run)
        calls = run.trajectory()
        named = [c for c in calls if c.name == tool]
        matching, near = [], []
        for call in named:
            ok, problems = _arguments_match(call, arguments, exact, list(ignore or []))
            (matching if ok else near).append((call, problems))
        wanted = f"{tool}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
        if not matching:
            if not named:
                self._fail(run, f"Expected the agent to call {wanted}; it never called {tool!r} "
                                f"(it called {[c.name for c in calls] or 'no tool'}).")
            detail = "; ".join(f"call {n}: " + ", ".join(p) for n, (_, p) in enumerate(near, 1))
            self._fail(run, f"Expected the agent to call {wanted}; it called {tool!r} {len(named)} time(s), with other "
                            f"arguments: {detail}.")
        if times is not None and len(matching) != int(times):
            self._fail(run, f"Expected {int(times)} call(s) of {wanted}, got {len(matching)}.")
        logger.info(f"The agent called {wanted}: {len(matching)} matching call(s).")
        return matching[0][0].as_dict()

    @keyword
    def agent_should_not_call_tool(self, run: RunRecord, tool: str, **arguments: Any) -> None:
        """The agent did not call ``tool`` (with ``arguments`` given: not with those arguments).

        Example:
        | Agent Should Not Call Tool    ${result}    delete_account
        """
        run = _run(run)
        bad = [c for c in run.trajectory() if c.name == tool and _arguments_match(c, arguments, False, [])[0]]
        if bad:
            args = f" with {arguments}" if arguments else ""
            self._fail(run, f"Expected the agent not to call {tool!r}{args}; it did, {len(bad)} time(s).")

    @keyword
    def tool_call_count_should_be(self, run: RunRecord, expected: int, tool: str | None = None,
                                  at_most: bool = False) -> int:
        """The run made ``expected`` tool calls (of ``tool``, or of any tool); with
        ``at_most=True`` a step budget: no more than ``expected``. Returns the count.

        Example:
        | Tool Call Count Should Be    ${result}    1    tool=get_weather
        | Tool Call Count Should Be    ${result}    3    at_most=True
        """
        run = _run(run)
        calls = [c for c in run.trajectory() if tool is None or c.name == tool]
        count = len(calls)
        what = f"call(s) of {tool!r}" if tool else "tool call(s)"
        if (count > int(expected)) if at_most else (count != int(expected)):
            self._fail(run, f"Expected {'at most ' if at_most else ''}{int(expected)} {what}, got {count}.")
        return count

    @keyword
    def tool_calls_should_be_in_order(self, run: RunRecord, *tools: str, mode: OrderMode = "in_order") -> None:
        """The run's tool calls against the expected tool names, by ``mode``:

        | =Mode= | =Passes when= |
        | ``in_order`` | the expected tools appear in this order, other calls may come between (default) |
        | ``exact`` | the calls are exactly these, in this order |
        | ``unordered`` | the calls are exactly these, in any order |
        | ``subset`` | every call the agent made is among the expected ones |
        | ``superset`` | every expected tool was called (in any order), others may be too |

        Example:
        | Tool Calls Should Be In Order    ${result}    search    summarise
        | Tool Calls Should Be In Order    ${result}    get_weather    mode=exact
        """
        run = _run(run)
        if mode not in MODES:
            raise ValueError(f"Mode '{mode}' is not valid: expected one of {', '.join(MODES)}.")
        actual = [c.name for c in run.trajectory()]
        expected = list(tools)
        if mode == "in_order":
            it = iter(actual)
            ok = all(any(name == want for name in it) for want in expected)
        elif mode == "exact":
            ok = actual == expected
        elif mode == "unordered":
            ok = sorted(actual) == sorted(expected)
        elif mode == "subset":
            ok = all(name in expected for name in actual)
        else:
            ok = all(want in actual for want in expected)
        if not ok:
            self._fail(run, f"Expected tool calls {expected} ({mode}); the agent called {actual}.")
        logger.info(f"Tool calls {actual} match {expected} ({mode}).")

    # --- the answer -------------------------------------------------------------------
    @keyword
    def get_agent_answer(self, run: RunRecord) -> str:
        """The agent's answer: the last streamed text message (assembled from its deltas)
        where the wire streams text, else the terminal event's result as text. Fails when
        the run has no answer.

        Example:
        | ${answer}=    Get Agent Answer    ${result}
        """
        run = _run(run)
        answer = run.answer()
        if answer is None:
            self._fail(run, f"The run has no answer: no streamed text and no result on its terminal event "
                            f"({run.ending()}).")
        return answer

    @keyword
    def agent_answer_should_contain(self, run: RunRecord, text: str, ignore_case: bool = False) -> None:
        """The answer contains ``text``.

        Example:
        | Agent Answer Should Contain    ${result}    Paris
        """
        answer = self.get_agent_answer(run)
        found = text.lower() in answer.lower() if ignore_case else text in answer
        if not found:
            self._fail(run, f"Expected the answer to contain {text!r}; it is {answer!r}.")

    @keyword
    def agent_answer_should_match(self, run: RunRecord, pattern: str) -> re.Match | None:
        """The answer matches the regular expression ``pattern`` (searched, Python syntax).

        Example:
        | Agent Answer Should Match    ${result}    \\\\d+°C
        """
        answer = self.get_agent_answer(run)
        match = re.search(pattern, answer)
        if match is None:
            self._fail(run, f"Expected the answer to match /{pattern}/; it is {answer!r}.")
        return match.group(0)

    @keyword
    def agent_answer_should_validate_against_schema(self, run: RunRecord, schema: dict | str) -> Any:
        """The answer, read as JSON, validates against a JSON Schema (a dictionary, or a
        path to a ``.json`` file). Returns the parsed answer.

        Example:
        | Agent Answer Should Validate Against Schema    ${result}    ${CURDIR}/answer.schema.json
        """
        answer = self.get_agent_answer(run)
        if isinstance(schema, str):
            path = Path(schema)
            try:
                schema = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise ValueError(f"Schema '{path}' cannot be read as JSON: {err}.") from None
        try:
            value = json.loads(answer)
        except ValueError as err:
            self._fail(run, f"Expected the answer to be JSON valid against the schema; it is not JSON ({err}): "
                            f"{answer!r}.")
        from jsonschema import Draft202012Validator, FormatChecker

        errors = list(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(value))
        if errors:
            shown = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:3])
            self._fail(run, f"The answer does not validate against the schema: {shown}.")
        return value

    # --- time and cost ----------------------------------------------------------------
    @keyword
    def get_run_timing(self, run: RunRecord) -> dict:
        """Seconds since the message: ``first_event_s``, ``first_answer_s`` (the first answer
        token, or the final answer where the wire does not stream), ``run_s`` (the terminal
        event), and ``tool_calls``.

        Example:
        | ${timing}=    Get Run Timing    ${result}
        | Should Be True    ${timing}[first_answer_s] < 3
        """
        run = _run(run)
        first_answer = run.first_answer_event()
        return {"first_event_s": run.first_event_s(), "run_s": run.duration(),
                "first_answer_s": run.rel(first_answer) if first_answer is not None else None,
                "tool_calls": len(run.trajectory())}

    @keyword
    def run_timing_should_be_within(self, run: RunRecord, first_event: timedelta | None = None,
                                    first_answer: timedelta | None = None, whole_run: timedelta | None = None) -> dict:
        """The run's time to its first event, to its first answer token and to its end are
        within the given limits (each optional, e.g. ``2s``). Returns the timing.

        Example:
        | Run Timing Should Be Within    ${result}    first_answer=3s    whole_run=10s
        """
        run = _run(run)
        timing = self.get_run_timing(run)
        problems = []
        for key, limit, label in (("first_event_s", first_event, "first event"),
                                  ("first_answer_s", first_answer, "first answer token"),
                                  ("run_s", whole_run, "end of the run")):
            if limit is None:
                continue
            value = timing[key]
            if value is None:
                problems.append(f"no {label} arrived (limit {limit.total_seconds():g}s)")
            elif value > limit.total_seconds():
                problems.append(f"{label} after {value:.3f}s, limit {limit.total_seconds():g}s")
        if problems:
            self._fail(run, "Run timing out of its limits: " + "; ".join(problems) + ".")
        return timing

    @keyword
    def get_token_usage(self, run: RunRecord) -> Any:
        """Token usage where the wire carries it (AG-UI: ``RUN_FINISHED.usage``, a list with one
        entry per provider and model). Skips, saying why, when the run carries none.

        Example:
        | ${usage}=    Get Token Usage    ${result}
        """
        run = _run(run)
        usage = run.usage()
        if usage is None:
            raise SkipExecution(f"run {run.run_id} carries no token usage (dialect '{run.dialect.name}', field usage)")
        return usage

    # --- non-deterministic agents and multi-turn ------------------------------------
    def _sessions(self):
        try:
            return BuiltIn().get_library_instance("AgentSessions")
        except RuntimeError:
            from AgentSessions import AgentSessions

            return AgentSessions()

    @keyword
    def run_prompt_repeatedly(self, prompt: str, times: int, judge: str, *judge_args: Any,
                              min_pass_rate: str = "100%", alias: str | None = None) -> dict:
        """Sends ``prompt`` ``times`` times on one connection (``alias``, default the current
        one), collects each run and judges it with the keyword ``judge`` (called with the run
        first, then ``judge_args``); passes when at least ``min_pass_rate`` of the runs pass.

        Returns ``runs``, ``passed``, ``failed``, ``pass_rate`` (percent) and ``failures``
        (each failing run's number and message). The log shows every run's verdict; the
        stakeholder summary shows the rate and every failing run. A run that does not
        complete counts as a failing run, with why.

        Example:
        | ${rate}=    Run Prompt Repeatedly    What is the capital of France?    10
        | ...    Agent Answer Should Contain    Paris    min_pass_rate=80%
        """
        times = int(times)
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}.")
        text = str(min_pass_rate).strip().rstrip("%")
        try:
            minimum = float(text)
        except ValueError:
            raise ValueError(f"min_pass_rate '{min_pass_rate}' is not valid: expected a percent such as 80%.") from None
        if not 0 <= minimum <= 100:
            raise ValueError(f"min_pass_rate '{min_pass_rate}' is not valid: expected 0% to 100%.")
        sessions = self._sessions()
        builtin = BuiltIn()
        verdicts = []
        for n in range(1, times + 1):
            handle = sessions.send_user_message(prompt, alias=alias)
            try:
                record = sessions.collect_agent_run(handle)
            except AssertionError as err:
                verdicts.append((n, False, f"the run did not complete: {str(err).splitlines()[0]}", None))
                continue
            status, message = builtin.run_keyword_and_ignore_error(judge, record, *judge_args)
            verdicts.append((n, status == "PASS", "" if status == "PASS" else str(message), record))
        passed = sum(ok for _, ok, _, _ in verdicts)
        rate = round(100.0 * passed / times, 1)
        failures = [{"run": n, "run_id": r.run_id if r else None, "message": m} for n, ok, m, r in verdicts if not ok]
        rows = "".join(f"<tr style=\"background:{'#d4edda' if ok else '#f8d7da'}\"><td>{n}</td><td>{'PASS' if ok else 'FAIL'}"
                       f"</td><td>{html.escape(str((r.run_id if r else '') or ''))}</td>"
                       f"<td>{html.escape((m or '')[:300])}</td></tr>" for n, ok, m, r in verdicts)
        logger.info(redact(f"<b>{html.escape(repr(prompt))} judged by {html.escape(judge)}: {passed}/{times} passed ({rate:g}%), minimum "
                           f"{minimum:g}%</b><table border=\"1\" style=\"border-collapse:collapse;font-family:monospace;"
                           f"font-size:12px\"><tr><th>run</th><th>verdict</th><th>run id</th><th>why</th></tr>{rows}"
                           f"</table>"), html=True)
        result = {"runs": times, "passed": passed, "failed": times - passed, "pass_rate": rate,
                  "min_pass_rate": minimum, "judge": judge, "prompt": prompt, "failures": failures}
        try:
            report = builtin.get_library_instance("AgentReport")
            report.record_repeated_runs(result)
        except (RuntimeError, AttributeError):
            pass
        if rate < minimum:
            lines = "\n".join(f"- run {f['run']}: {f['message'].splitlines()[0] if f['message'] else ''}"
                              for f in failures)
            raise AssertionError(redact(f"Pass rate {rate:g}% ({passed}/{times} runs) is below the minimum {minimum:g}% "
                                        f"for {prompt!r} judged by {judge}. Failing runs:\n{lines}"))
        return result

    @keyword("Send Follow-Up Message")
    def send_follow_up_message(self, previous: Any, content: str) -> dict:
        """Sends a follow-up turn in the thread of ``previous`` (a run handle from ``Send User
        Message``), on the same connection; returns the new run handle. The run carries that
        thread id (check it with `Run Should Belong To Thread`).

        Example:
        | ${first}=    Send User Message    What is the weather in Paris?
        | ${turn1}=    Collect Agent Run    ${first}
        | ${second}=    Send Follow-Up Message    ${first}    What about tomorrow?
        """
        if isinstance(previous, RunRecord):
            thread_id, alias = previous.thread_id, previous.connection
        elif isinstance(previous, dict) and "thread_id" in previous and "connection" in previous:
            thread_id, alias = previous["thread_id"], previous["connection"]
        else:
            raise TypeError(f"Expected a run handle from 'Send User Message' or a run from 'Collect Agent Run', got "
                            f"{type(previous).__name__}: {str(previous)[:80]}.")
        return self._sessions().send_user_message(content, thread_id=thread_id, alias=alias)

    @keyword
    def run_should_belong_to_thread(self, run: RunRecord, thread_id: str) -> None:
        """Every event of the run that names a thread names ``thread_id``, and at least one
        does, or the dialect ties the thread to the connection (then nothing can differ).

        Example:
        | Run Should Belong To Thread    ${turn2}    ${first}[thread_id]
        """
        run = _run(run)
        named = [(e, e.thread_id) for e in run.agent_events if e.thread_id is not None]
        wrong = [(e, t) for e, t in named if t != thread_id]
        if wrong:
            e, t = wrong[0]
            self._fail(run, f"Expected the run in thread {thread_id!r}; {run.at(e)} names thread {t!r} "
                            f"({len(wrong)} event(s) differ).")
        if not named and run.thread_id != thread_id:
            self._fail(run, f"Expected the run in thread {thread_id!r}; it was sent in thread {run.thread_id!r}.")
        logger.info(f"Run {run.run_id} is in thread {thread_id!r} ({len(named)} event(s) name it).")
