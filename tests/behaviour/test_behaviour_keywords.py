"""AgentBehaviour, keyword by keyword, on runs built by hand from default and AG-UI events:
each keyword passes on a run that does what it asks, and fails on one that does not with
a message that puts what was expected next to what the agent did (the trajectory: tool,
arguments, result; and the answer)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from robot.api import SkipExecution

import AgentBehaviour as behaviour_module
from AgentBehaviour import AgentBehaviour
from behaviour_runs import Call, agent_run

WIRES = ["default", "ag-ui"]
PARIS = Call("get_weather", {"city": "Paris", "units": "metric"}, {"city": "Paris", "temperature_c": 18})
LONDON = Call("get_weather", {"city": "London"}, {"city": "London", "temperature_c": 12})
SEARCH = Call("search_docs", {"query": "weather in Paris"}, ["Paris weather page"])
SUMMARIZE = Call("summarize", {"text": "..."}, {"summary": "short"})


@pytest.fixture
def kw():
    return AgentBehaviour()


@pytest.fixture
def logged(monkeypatch):
    """What the library logs (``logger.info``), as (message, html) pairs."""
    lines: list[tuple[str, bool]] = []

    class Recorder:
        @staticmethod
        def info(msg, html=False):
            lines.append((msg, html))

    monkeypatch.setattr(behaviour_module, "logger", Recorder)
    return lines


def fails(fn, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as err:
        fn(*args, **kwargs)
    return str(err.value)


def shows_trajectory(message: str, *lines: str, answer: str | None = None) -> None:
    """The failure message ends with what the agent did: one line per call, then the answer."""
    assert "What the agent did (run run_1):\n" in message, message
    for line in lines:
        assert line in message, f"{line!r} not in:\n{message}"
    if answer is not None:
        assert message.rstrip().endswith(f"Answer: {answer!r}"), message


LONDON_LINE = '1. get_weather({"city": "London"}) -> result {"city": "London", "temperature_c": 12} at +0.0'
PARIS_LINE = '1. get_weather({"city": "Paris", "units": "metric"}) -> result {"city": "Paris", "temperature_c": 18}'
SEARCH_LINE = '1. search_docs({"query": "weather in Paris"}) -> result ["Paris weather page"]'


# --- Get Tool Calls ----------------------------------------------------------------------
@pytest.mark.parametrize("wire", WIRES)
def test_get_tool_calls_returns_each_call_with_arguments_result_and_time(kw, logged, wire):
    run = agent_run(wire, [SEARCH, PARIS], "It is 18°C in Paris.")
    calls = kw.get_tool_calls(run)
    assert [c["tool"] for c in calls] == ["search_docs", "get_weather"]
    assert calls[1]["arguments"] == {"city": "Paris", "units": "metric"}   # AG-UI: assembled from two deltas
    assert calls[1]["result"] == {"city": "Paris", "temperature_c": 18}    # AG-UI: parsed from the JSON text
    assert calls[1]["error"] is None
    assert 0 < calls[0]["start_s"] < calls[0]["end_s"] <= calls[1]["start_s"]
    assert calls[1]["duration_ms"] > 0
    table = [m for m, html in logged if html]
    assert table and "<td>get_weather</td>" in table[-1] and "&quot;city&quot;: &quot;Paris&quot;" in table[-1]


def test_get_tool_calls_of_a_failing_tool_carries_its_error(kw):
    [call] = kw.get_tool_calls(agent_run("default", [Call("get_weather", {"city": "Atlantis"}, error="unknown city")]))
    assert call["error"] == "unknown city" and call["result"] is None


@pytest.mark.parametrize("wire", WIRES)
def test_get_tool_calls_without_calls_returns_an_empty_list(kw, wire):
    assert kw.get_tool_calls(agent_run(wire, [], "Hello.")) == []


def test_get_tool_calls_skip_if_none_skips_where_the_dialect_does_not_require_tools(kw):
    with pytest.raises(SkipExecution) as err:
        kw.get_tool_calls(agent_run("ag-ui", [], "Hello."), skip_if_none=True)
    assert str(err.value) == ("the run called no tool, so there is no tool call to check (dialect 'ag-ui' does "
                              "not require one)")


def test_get_tool_calls_skip_if_none_fails_where_the_dialect_requires_a_tool(kw):
    message = fails(kw.get_tool_calls, agent_run("default", [], "Hello."), skip_if_none=True)
    assert message.startswith("The run made no tool call, but dialect 'default' requires one "
                              "(rules.required_roles).")
    shows_trajectory(message, "  (no tool calls)", answer="Hello.")


def test_get_tool_calls_skip_if_none_returns_the_calls_when_there_are_some(kw):
    assert [c["tool"] for c in kw.get_tool_calls(agent_run("ag-ui", [PARIS]), skip_if_none=True)] == ["get_weather"]


# --- Agent Should Call Tool --------------------------------------------------------------
@pytest.mark.parametrize("wire", WIRES)
def test_call_tool_matches_a_subset_of_the_arguments_and_returns_the_call(kw, logged, wire):
    call = kw.agent_should_call_tool(agent_run(wire, [SEARCH, PARIS]), "get_weather", city="Paris")
    assert call["tool"] == "get_weather" and call["result"]["temperature_c"] == 18
    assert any("The agent called get_weather(city='Paris'): 1 matching call(s)." == m for m, _ in logged)


@pytest.mark.parametrize("wire", WIRES)
def test_call_tool_fails_on_another_value_naming_expected_and_actual(kw, logged, wire):
    run = agent_run(wire, [LONDON], ["It is 12°C ", "in London."])
    message = fails(kw.agent_should_call_tool, run, "get_weather", city="Paris")
    assert message.startswith("Expected the agent to call get_weather(city='Paris'); it called 'get_weather' 1 "
                              "time(s), with other arguments: call 1: city='London', expected 'Paris'.\n"), message
    shows_trajectory(message, LONDON_LINE, answer="It is 12°C in London.")
    table = [m for m, html in logged if html][-1]
    assert "What the agent did in run run_1" in table
    assert "&quot;city&quot;: &quot;London&quot;" in table and "&quot;temperature_c&quot;: 12" in table


@pytest.mark.parametrize("wire", WIRES)
def test_call_tool_fails_when_the_agent_called_another_tool(kw, wire):
    message = fails(kw.agent_should_call_tool, agent_run(wire, [SEARCH], "Paris is nice."), "get_weather",
                    city="Paris")
    assert message.startswith("Expected the agent to call get_weather(city='Paris'); it never called "
                              "'get_weather' (it called ['search_docs']).\n"), message
    shows_trajectory(message, SEARCH_LINE, answer="Paris is nice.")


def test_call_tool_fails_when_the_agent_called_no_tool(kw):
    message = fails(kw.agent_should_call_tool, agent_run("ag-ui", [], "Paris."), "get_weather")
    assert message.startswith("Expected the agent to call get_weather(); it never called 'get_weather' "
                              "(it called no tool).")


def test_call_tool_fails_naming_a_missing_argument(kw):
    message = fails(kw.agent_should_call_tool, agent_run("default", [LONDON]), "get_weather", day="tomorrow")
    assert "call 1: no argument 'day'." in message


def test_call_tool_exact_passes_only_without_other_arguments_than_ignored_ones(kw):
    run = agent_run("default", [Call("get_weather", {"city": "Paris", "request_id": "r-1"}, {})])
    kw.agent_should_call_tool(run, "get_weather", exact=True, ignore=["request_id"], city="Paris")
    message = fails(kw.agent_should_call_tool, run, "get_weather", exact=True, city="Paris")
    assert ("it called 'get_weather' 1 time(s), with other arguments: call 1: unexpected argument(s) "
            "['request_id'] (exact=True).") in message
    shows_trajectory(message, '1. get_weather({"city": "Paris", "request_id": "r-1"}) -> result {}')


def test_call_tool_times_counts_the_matching_calls(kw):
    run = agent_run("default", [PARIS, LONDON, PARIS])
    kw.agent_should_call_tool(run, "get_weather", times=2, city="Paris")
    message = fails(kw.agent_should_call_tool, run, "get_weather", times=1, city="Paris")
    assert message.startswith("Expected 1 call(s) of get_weather(city='Paris'), got 2.\n"), message
    shows_trajectory(message, "1. get_weather(", "2. get_weather({\"city\": \"London\"})", "3. get_weather(")


def test_call_tool_values_from_robot_text_equal_numbers_and_booleans(kw):
    run = agent_run("default", [Call("book", {"seats": 2, "window": True, "price": None}, "ok")])
    kw.agent_should_call_tool(run, "book", seats="2", window="True")
    kw.agent_should_call_tool(run, "book", seats=2, window=True)
    message = fails(kw.agent_should_call_tool, run, "book", seats="3")
    assert "call 1: seats=2, expected '3'." in message


def test_call_tool_regexp_values_are_searched(kw):
    run = agent_run("ag-ui", [PARIS])
    kw.agent_should_call_tool(run, "get_weather", city="regexp:^Par")
    kw.agent_should_call_tool(run, "get_weather", city="regexp:(?i)paris$")
    message = fails(kw.agent_should_call_tool, run, "get_weather", city="regexp:^Lon")
    assert "call 1: city='Paris', expected matching /^Lon/." in message
    shows_trajectory(message, PARIS_LINE)


def test_call_tool_json_schema_values_validate(kw):
    run = agent_run("default", [PARIS])
    kw.agent_should_call_tool(run, "get_weather", city={"type": "string", "minLength": 2})
    kw.agent_should_call_tool(run, "get_weather", city={"enum": ["Paris", "Rome"]})
    message = fails(kw.agent_should_call_tool, run, "get_weather", city={"enum": ["London"]})
    assert ("call 1: city='Paris', expected valid against {\"enum\": [\"London\"]} ('Paris' is not one of "
            "['London']).") in message


def test_call_tool_dict_values_with_a_type_key_match_by_equality(kw):
    """Tool arguments are often objects with a ``type`` key (a location, a filter, a block);
    the value a test expects for one is that object, so an equal value passes and another
    fails with the usual message, rather than being read as a JSON Schema whose ``type``
    ('city') jsonschema does not know (UnknownType)."""
    location = {"type": "city", "name": "Paris"}
    run = agent_run("default", [Call("get_weather", {"location": location}, {"temperature_c": 18})])
    kw.agent_should_call_tool(run, "get_weather", location=dict(location))
    message = fails(kw.agent_should_call_tool, run, "get_weather", location={"type": "city", "name": "Lyon"})
    assert "call 1: location={'type': 'city', 'name': 'Paris'}, expected " in message


def test_call_tool_reports_every_near_call(kw):
    run = agent_run("default", [LONDON, Call("get_weather", {"city": "Rome"}, {})])
    message = fails(kw.agent_should_call_tool, run, "get_weather", city="Paris")
    assert ("it called 'get_weather' 2 time(s), with other arguments: call 1: city='London', expected 'Paris'; "
            "call 2: city='Rome', expected 'Paris'.") in message


# --- Agent Should Not Call Tool ----------------------------------------------------------
@pytest.mark.parametrize("wire", WIRES)
def test_not_call_tool_passes_when_the_tool_or_those_arguments_were_not_used(kw, wire):
    run = agent_run(wire, [PARIS])
    kw.agent_should_not_call_tool(run, "search_docs")
    kw.agent_should_not_call_tool(run, "get_weather", city="London")


@pytest.mark.parametrize("wire", WIRES)
def test_not_call_tool_fails_naming_the_call(kw, wire):
    run = agent_run(wire, [SEARCH, PARIS], "Paris.")
    message = fails(kw.agent_should_not_call_tool, run, "search_docs")
    assert message.startswith("Expected the agent not to call 'search_docs'; it did, 1 time(s).\n"), message
    shows_trajectory(message, SEARCH_LINE, answer="Paris.")
    message = fails(kw.agent_should_not_call_tool, run, "get_weather", city="Paris")
    assert message.startswith("Expected the agent not to call 'get_weather' with {'city': 'Paris'}; it did, "
                              "1 time(s).\n"), message


# --- Tool Call Count Should Be -----------------------------------------------------------
@pytest.mark.parametrize("wire", WIRES)
def test_tool_call_count_passes_and_returns_the_count(kw, wire):
    run = agent_run(wire, [SEARCH, PARIS, LONDON])
    assert kw.tool_call_count_should_be(run, 3) == 3
    assert kw.tool_call_count_should_be(run, 2, tool="get_weather") == 2
    assert kw.tool_call_count_should_be(run, 3, at_most=True) == 3
    assert kw.tool_call_count_should_be(run, 5, tool="get_weather", at_most=True) == 2
    assert kw.tool_call_count_should_be(run, 0, tool="delete_account") == 0


@pytest.mark.parametrize("wire", WIRES)
def test_tool_call_count_fails_with_expected_and_actual(kw, wire):
    run = agent_run(wire, [SEARCH, PARIS, LONDON], "Paris.")
    message = fails(kw.tool_call_count_should_be, run, 1)
    assert message.startswith("Expected 1 tool call(s), got 3.\n"), message
    shows_trajectory(message, SEARCH_LINE, "2. get_weather(", "3. get_weather({\"city\": \"London\"})",
                     answer="Paris.")
    message = fails(kw.tool_call_count_should_be, run, 1, tool="get_weather", at_most=True)
    assert message.startswith("Expected at most 1 call(s) of 'get_weather', got 2.\n"), message
    message = fails(kw.tool_call_count_should_be, run, 4)
    assert message.startswith("Expected 4 tool call(s), got 3.")


# --- Tool Calls Should Be In Order: the five modes ---------------------------------------
ORDER = [SEARCH, PARIS, SUMMARIZE]       # the agent called search_docs, get_weather, summarize
ORDER_CASES = [
    ("in_order", ["search_docs", "summarize"], ["summarize", "search_docs"]),
    ("exact", ["search_docs", "get_weather", "summarize"], ["search_docs", "summarize"]),
    ("unordered", ["summarize", "search_docs", "get_weather"], ["search_docs", "get_weather"]),
    ("subset", ["get_weather", "summarize", "search_docs", "delete_account"], ["search_docs", "get_weather"]),
    ("superset", ["summarize", "get_weather"], ["get_weather", "delete_account"]),
]


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("mode, passing, failing", ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
def test_tool_calls_in_order_each_mode(kw, logged, wire, mode, passing, failing):
    run = agent_run(wire, ORDER, "Done.")
    kw.tool_calls_should_be_in_order(run, *passing, mode=mode)
    assert any(m == f"Tool calls ['search_docs', 'get_weather', 'summarize'] match {passing} ({mode})."
               for m, _ in logged)
    message = fails(kw.tool_calls_should_be_in_order, run, *failing, mode=mode)
    assert message.startswith(f"Expected tool calls {failing} ({mode}); the agent called ['search_docs', "
                              f"'get_weather', 'summarize'].\n"), message
    shows_trajectory(message, SEARCH_LINE, "2. get_weather(",
                     '3. summarize({"text": "..."}) -> result {"summary": "short"}',
                     answer="Done.")


def test_tool_calls_in_order_is_the_default_mode_and_counts_repeats(kw):
    run = agent_run("default", [PARIS, SEARCH, PARIS])
    kw.tool_calls_should_be_in_order(run, "get_weather", "get_weather")
    fails(kw.tool_calls_should_be_in_order, run, "get_weather", "get_weather", "get_weather")
    kw.tool_calls_should_be_in_order(run, "get_weather", "get_weather", "search_docs", mode="unordered")
    fails(kw.tool_calls_should_be_in_order, run, "get_weather", "search_docs", mode="unordered")


# --- the answer --------------------------------------------------------------------------
@pytest.mark.parametrize("wire", WIRES)
def test_get_agent_answer_from_streamed_chunks_or_the_terminal_result(kw, wire):
    assert kw.get_agent_answer(agent_run(wire, [PARIS], ["It is 18°C ", "in Paris."])) == "It is 18°C in Paris."


@pytest.mark.parametrize("wire", WIRES)
def test_get_agent_answer_fails_on_a_run_without_one(kw, wire):
    message = fails(kw.get_agent_answer, agent_run(wire, [LONDON], fail="model overloaded"))
    end = "agent_error (#6) at 0.050s" if wire == "default" else "RUN_ERROR (#8) at 0.070s"
    assert message.startswith("The run has no answer: no streamed text and no result on its terminal event "
                              f"(the run ended with {end}).\n"), message
    shows_trajectory(message, "1. get_weather({\"city\": \"London\"})", answer=None)


def test_get_agent_answer_fails_on_a_run_that_never_ended(kw):
    message = fails(kw.get_agent_answer, agent_run("default", [LONDON], "x", ended=False))
    assert "(the run never ended (no agent_completed/agent_error))" in message


@pytest.mark.parametrize("wire", WIRES)
def test_answer_should_contain(kw, wire):
    run = agent_run(wire, [LONDON], ["It is 12°C ", "in London."])
    kw.agent_answer_should_contain(run, "London")
    kw.agent_answer_should_contain(run, "LONDON", ignore_case=True)
    message = fails(kw.agent_answer_should_contain, run, "Paris")
    assert message.startswith("Expected the answer to contain 'Paris'; it is 'It is 12°C in London.'.\n"), message
    shows_trajectory(message, LONDON_LINE, answer="It is 12°C in London.")
    message = fails(kw.agent_answer_should_contain, run, "LONDON")
    assert message.startswith("Expected the answer to contain 'LONDON'; it is 'It is 12°C in London.'.")


@pytest.mark.parametrize("wire", WIRES)
def test_answer_should_match_returns_the_match(kw, wire):
    run = agent_run(wire, [PARIS], ["It is 18°C ", "in Paris."])
    assert kw.agent_answer_should_match(run, r"\d+°C") == "18°C"
    message = fails(kw.agent_answer_should_match, run, r"(?i)rain|snow")
    assert message.startswith("Expected the answer to match /(?i)rain|snow/; it is 'It is 18°C in Paris.'.\n")
    shows_trajectory(message, PARIS_LINE, answer="It is 18°C in Paris.")


SCHEMA = {"type": "object", "required": ["city", "temperature_c"],
          "properties": {"city": {"type": "string"}, "temperature_c": {"type": "number"}}}


@pytest.mark.parametrize("wire", WIRES)
def test_answer_should_validate_against_schema(kw, wire, tmp_path):
    run = agent_run(wire, [PARIS], ['{"city": "Paris", ', '"temperature_c": 18}'])
    assert kw.agent_answer_should_validate_against_schema(run, SCHEMA) == {"city": "Paris", "temperature_c": 18}
    path = tmp_path / "answer.schema.json"
    path.write_text(json.dumps(SCHEMA), encoding="utf-8")
    assert kw.agent_answer_should_validate_against_schema(run, str(path))["city"] == "Paris"

    wrong = agent_run(wire, [PARIS], '{"city": "Paris", "temperature_c": "warm"}')
    message = fails(kw.agent_answer_should_validate_against_schema, wrong, SCHEMA)
    assert message.startswith("The answer does not validate against the schema: temperature_c: 'warm' is not of "
                              "type 'number'.\n"), message
    shows_trajectory(message, PARIS_LINE, answer='{"city": "Paris", "temperature_c": "warm"}')

    prose = agent_run(wire, [PARIS], "It is 18°C in Paris.")
    message = fails(kw.agent_answer_should_validate_against_schema, prose, SCHEMA)
    assert message.startswith("Expected the answer to be JSON valid against the schema; it is not JSON (")
    assert "'It is 18°C in Paris.'." in message


def test_answer_schema_file_that_cannot_be_read_is_named(kw, tmp_path):
    run = agent_run("default", [PARIS], "{}")
    with pytest.raises(ValueError, match=r"Schema '.*missing\.json' cannot be read as JSON"):
        kw.agent_answer_should_validate_against_schema(run, str(tmp_path / "missing.json"))


# --- time and cost -----------------------------------------------------------------------
def test_get_run_timing_default_first_answer_is_the_terminal_result(kw):
    # events 10 ms apart: started, thinking, tool start, tool end, completed
    timing = kw.get_run_timing(agent_run("default", [PARIS], "Paris."))
    assert timing["tool_calls"] == 1
    assert timing["first_event_s"] == pytest.approx(0.01)
    assert timing["first_answer_s"] == pytest.approx(0.05) == timing["run_s"]


def test_get_run_timing_agui_first_answer_is_the_first_streamed_token(kw):
    # RUN_STARTED, START, ARGS, ARGS, END, RESULT, TEXT_START, CONTENT (0.08), CONTENT, TEXT_END, RUN_FINISHED (0.11)
    timing = kw.get_run_timing(agent_run("ag-ui", [PARIS], ["It is ", "18°C."]))
    assert timing["first_event_s"] == pytest.approx(0.01)
    assert timing["first_answer_s"] == pytest.approx(0.08)
    assert timing["run_s"] == pytest.approx(0.11)


def test_get_run_timing_of_a_run_without_answer_or_end(kw):
    timing = kw.get_run_timing(agent_run("default", [PARIS], "x", ended=False))
    assert timing["run_s"] is None and timing["first_answer_s"] is None and timing["tool_calls"] == 1


@pytest.mark.parametrize("wire", WIRES)
def test_run_timing_within_passes_and_returns_the_timing(kw, wire):
    run = agent_run(wire, [PARIS], "Paris.")
    timing = kw.run_timing_should_be_within(run, first_event=timedelta(seconds=1), first_answer=timedelta(seconds=1),
                                            whole_run=timedelta(seconds=1))
    assert timing == kw.get_run_timing(run)
    kw.run_timing_should_be_within(run)   # no limit: nothing to hold


def test_run_timing_within_fails_naming_each_limit_crossed(kw):
    run = agent_run("ag-ui", [PARIS], ["It is ", "18°C."])
    message = fails(kw.run_timing_should_be_within, run, first_event=timedelta(seconds=1),
                    first_answer=timedelta(milliseconds=50), whole_run=timedelta(milliseconds=100))
    assert message.startswith("Run timing out of its limits: first answer token after 0.080s, limit 0.05s; "
                              "end of the run after 0.110s, limit 0.1s.\n"), message
    shows_trajectory(message, PARIS_LINE, answer="It is 18°C.")


def test_run_timing_within_fails_when_nothing_arrived_in_time(kw):
    message = fails(kw.run_timing_should_be_within, agent_run("default", [PARIS], "x", ended=False),
                    whole_run=timedelta(seconds=2), first_answer=timedelta(seconds=2))
    assert message.startswith("Run timing out of its limits: no first answer token arrived (limit 2s); no end of "
                              "the run arrived (limit 2s).")


USAGE = [{"provider": "openai", "model": "gpt-4o-mini", "inputTokens": 120, "outputTokens": 18}]


@pytest.mark.parametrize("wire", WIRES)
def test_get_token_usage_skips_when_the_run_carries_none(kw, wire):
    with pytest.raises(SkipExecution) as err:
        kw.get_token_usage(agent_run(wire, [PARIS], "Paris."))
    assert str(err.value) == f"run run_1 carries no token usage (dialect '{wire}', field usage)"


def test_get_token_usage_returns_run_finished_usage_on_agui(kw):
    assert kw.get_token_usage(agent_run("ag-ui", [PARIS], ["Paris."], usage=USAGE)) == USAGE


# --- thread ------------------------------------------------------------------------------
@pytest.mark.parametrize("wire", WIRES)
def test_run_should_belong_to_thread(kw, logged, wire):
    run = agent_run(wire, [PARIS], "Paris.", thread_id="thread_A")
    kw.run_should_belong_to_thread(run, "thread_A")
    named = 5 if wire == "default" else 2   # default: every event; AG-UI: RUN_STARTED and RUN_FINISHED
    assert any(m == f"Run run_1 is in thread 'thread_A' ({named} event(s) name it)." for m, _ in logged)


@pytest.mark.parametrize("wire", WIRES)
def test_run_should_belong_to_thread_fails_naming_the_event_and_its_thread(kw, wire):
    message = fails(kw.run_should_belong_to_thread, agent_run(wire, [PARIS], "Paris.", thread_id="thread_A"),
                    "thread_B")
    first = "agent_started (#2) at 0.010s" if wire == "default" else "RUN_STARTED (#2) at 0.010s"
    differ = 5 if wire == "default" else 2
    assert message.startswith(f"Expected the run in thread 'thread_B'; {first} names thread 'thread_A' "
                              f"({differ} event(s) differ).\n"), message
    shows_trajectory(message, PARIS_LINE, answer="Paris.")
    # one event of another thread among the right ones: the first such event is named
    message = fails(kw.run_should_belong_to_thread, agent_run(wire, [PARIS], "Paris.", thread_id="thread_A",
                                                              other_thread="thread_C"), "thread_A")
    last = "agent_completed (#6) at 0.050s" if wire == "default" else "RUN_FINISHED (#11) at 0.100s"
    assert message.startswith(f"Expected the run in thread 'thread_A'; {last} names thread 'thread_C' "
                              f"(1 event(s) differ).")


def test_run_should_belong_to_thread_where_no_event_names_one(kw):
    # an AG-UI run cut before its RUN_FINISHED and without RUN_STARTED: only the thread it was sent in is known
    run = agent_run("ag-ui", [PARIS], "Paris.", thread_id="thread_A", ended=False)
    run.events = [e for e in run.events if e.type != "RUN_STARTED"]
    kw.run_should_belong_to_thread(run, "thread_A")
    message = fails(kw.run_should_belong_to_thread, run, "thread_B")
    assert message.startswith("Expected the run in thread 'thread_B'; it was sent in thread 'thread_A'.")


# --- a run is required -------------------------------------------------------------------
def test_keywords_refuse_what_is_not_a_run(kw):
    with pytest.raises(TypeError, match=r"Expected a run from 'Collect Agent Run', got dict"):
        kw.agent_should_call_tool({"handle": "x"}, "get_weather")


# --- Run Prompt Repeatedly and Send Follow-Up Message, with the sessions faked ----------
PROMPT = "What is the capital of France?"
RIGHT, WRONG = "Paris is the capital of France.", "Lyon is the capital of France."
WRONG_RUNS = (2, 5, 9)       # 3 wrong answers in 10 runs


class FakeSessions:
    """Stands in for AgentSessions: each collected run is the next of ``runs`` (an exception is raised)."""

    def __init__(self, runs):
        self.runs = iter(runs)
        self.sent: list[tuple] = []

    def send_user_message(self, content, thread_id=None, alias=None):
        self.sent.append((content, thread_id, alias))
        return {"handle": len(self.sent), "connection": alias or "current", "thread_id": thread_id or "t-new"}

    def collect_agent_run(self, handle):
        run = next(self.runs)
        if isinstance(run, Exception):
            raise run
        return run


class FakeBuiltIn:
    """Runs the judge keyword (by its name) on the library itself, as Robot would."""

    library = None
    report = None

    def run_keyword_and_ignore_error(self, name, *args):
        try:
            return "PASS", getattr(self.library, name.lower().replace(" ", "_"))(*args)
        except AssertionError as err:
            return "FAIL", str(err)

    def get_library_instance(self, name):
        if name == "AgentReport" and self.report is not None:
            return self.report
        raise RuntimeError(f"No library '{name}' found.")


class FakeReport:
    def __init__(self):
        self.recorded = []

    def record_repeated_runs(self, result):
        self.recorded.append(result)


@pytest.fixture
def repeated(kw, monkeypatch):
    """``kw`` with ten runs of the capital question to collect, 3 of them answering wrongly."""
    runs = [agent_run("ag-ui", [] if n in WRONG_RUNS else [Call("lookup_capital", {"country": "France"},
                                                                 {"capital": "Paris"})],
                      WRONG if n in WRONG_RUNS else RIGHT, run_id=f"run_{n}") for n in range(1, 11)]
    sessions = FakeSessions(runs)
    monkeypatch.setattr(kw, "_sessions", lambda: sessions)
    FakeBuiltIn.library, FakeBuiltIn.report = kw, FakeReport()
    monkeypatch.setattr(behaviour_module, "BuiltIn", FakeBuiltIn)
    return sessions


def test_run_prompt_repeatedly_fails_below_the_minimum_naming_the_rate_and_every_failing_run(kw, repeated, logged):
    message = fails(kw.run_prompt_repeatedly, PROMPT, 10, "Agent Answer Should Contain", "Paris",
                    min_pass_rate="80%")
    lines = message.splitlines()
    assert lines[0] == (f"Pass rate 70% (7/10 runs) is below the minimum 80% for {PROMPT!r} judged by "
                        f"Agent Answer Should Contain. Failing runs:")
    assert lines[1:] == [f"- run {n}: Expected the answer to contain 'Paris'; it is {WRONG!r}." for n in WRONG_RUNS]
    assert [s[0] for s in repeated.sent] == [PROMPT] * 10
    table = [m for m, html in logged if html][-1]
    assert "7/10 passed (70%), minimum 80%" in table
    assert table.count(">FAIL<") == 3 and table.count(">PASS<") == 7 and "run_5" in table
    [recorded] = FakeBuiltIn.report.recorded
    assert recorded["pass_rate"] == 70.0 and [f["run"] for f in recorded["failures"]] == list(WRONG_RUNS)


def test_run_prompt_repeatedly_passes_at_the_minimum_and_returns_the_figures(kw, repeated):
    result = kw.run_prompt_repeatedly(PROMPT, "10", "Agent Answer Should Contain", "Paris", min_pass_rate="70%")
    assert {k: result[k] for k in ("runs", "passed", "failed", "pass_rate", "min_pass_rate", "judge", "prompt")} == {
        "runs": 10, "passed": 7, "failed": 3, "pass_rate": 70.0, "min_pass_rate": 70.0,
        "judge": "Agent Answer Should Contain", "prompt": PROMPT}
    assert [(f["run"], f["run_id"]) for f in result["failures"]] == [(n, f"run_{n}") for n in WRONG_RUNS]
    assert all(f["message"].startswith("Expected the answer to contain 'Paris'; it is 'Lyon")
               for f in result["failures"])


def test_run_prompt_repeatedly_logs_the_agents_text_escaped_in_its_verdict_table(kw, monkeypatch, logged):
    """The verdict table is logged as HTML; each failing run's message quotes the agent's
    answer, which is the agent's text, not the kit's markup: it shows as text (escaped), as
    the trajectory and timeline tables do, and cannot inject markup into log.html."""
    answer = 'Lyon <img src=x onerror="alert(1)"> <b>is</b> the capital'
    sessions = FakeSessions([agent_run("default", [PARIS], answer)])
    monkeypatch.setattr(kw, "_sessions", lambda: sessions)
    FakeBuiltIn.library, FakeBuiltIn.report = kw, None
    monkeypatch.setattr(behaviour_module, "BuiltIn", FakeBuiltIn)
    kw.run_prompt_repeatedly("capital <of> France?", 1, "Agent Answer Should Contain", "Paris", min_pass_rate="0%")
    table = [m for m, html in logged if html][-1]
    assert "<img" not in table and "<b>is</b>" not in table, table
    assert "&lt;img src=x" in table and "&lt;of&gt;" in table, table


def test_run_prompt_repeatedly_counts_a_run_that_did_not_complete_as_failing(kw, monkeypatch):
    runs = [agent_run("default", [PARIS], "Paris."), AssertionError("Run run_2 did not end: no terminal event "
                                                                    "within 1s.\ntimeline ..."),
            agent_run("default", [PARIS], "Paris.")]
    sessions = FakeSessions(runs)
    monkeypatch.setattr(kw, "_sessions", lambda: sessions)
    FakeBuiltIn.library, FakeBuiltIn.report = kw, None
    monkeypatch.setattr(behaviour_module, "BuiltIn", FakeBuiltIn)
    message = fails(kw.run_prompt_repeatedly, "weather?", 3, "Agent Answer Should Contain", "Paris",
                    min_pass_rate="100%")
    assert message.splitlines() == [
        "Pass rate 66.7% (2/3 runs) is below the minimum 100% for 'weather?' judged by Agent Answer Should "
        "Contain. Failing runs:",
        "- run 2: the run did not complete: Run run_2 did not end: no terminal event within 1s."]


@pytest.mark.parametrize("times, rate, error", [
    (0, "80%", "times must be at least 1, got 0."),
    (3, "most", "min_pass_rate 'most' is not valid: expected a percent such as 80%."),
    (3, "120%", "min_pass_rate '120%' is not valid: expected 0% to 100%."),
])
def test_run_prompt_repeatedly_refuses_bad_arguments_before_sending(kw, repeated, times, rate, error):
    with pytest.raises(ValueError) as err:
        kw.run_prompt_repeatedly(PROMPT, times, "Agent Answer Should Contain", "Paris", min_pass_rate=rate)
    assert str(err.value) == error and repeated.sent == []


def test_send_follow_up_message_sends_in_the_thread_and_on_the_connection_of_the_first_turn(kw, monkeypatch):
    sessions = FakeSessions([])
    monkeypatch.setattr(kw, "_sessions", lambda: sessions)
    handle = kw.send_follow_up_message({"handle": "h1", "connection": "alice", "thread_id": "thread_7",
                                        "run_id": "run_1"}, "What about tomorrow?")
    assert sessions.sent == [("What about tomorrow?", "thread_7", "alice")]
    assert handle["thread_id"] == "thread_7"
