"""The protocol rule set (``agentkit.rules.protocol``: docs/protocol.md's rules 1-4), timing
(rule 6) and schemas (rule 7), read through the ``default``, ``netra`` and ``langgraph``
dialects: event names, the tool call key (tool name, ``execution_id``, ``tool_call_id``),
the ids events carry, whether thinking is required, the dialect's own JSON Schemas."""

from __future__ import annotations

import pytest

from agentkit.rules import check_rule, check_run, check_timing, required_missing
from agentkit.rules.schemas import BAD_DATE_TIMES, check_schemas, format_checking_problem, schemas_off_reason
from rules_helpers import assert_clean, load, only, run_through_session, show, violations

DEFAULT, NETRA, LANGGRAPH = load("default"), load("netra"), load("langgraph")


# --- default: ids at the top, details under data, tools paired by name --------------------
def dv(kind, run_id="r1", thread_id="t1", user_id="alice", **data):
    return {"type": kind, "run_id": run_id, "thread_id": thread_id, "user_id": user_id, "timestamp": 1767607200.5,
            "data": data}


D_START = dv("agent_started", agent_name="weather")
D_THINK = dv("agent_thinking", thought="The user wants the weather.")
D_EXEC = dv("tool_executing", tool_name="get_weather", parameters={"city": "Paris"})
D_DONE = dv("tool_completed", tool_name="get_weather", result="18C", duration_ms=12)
D_END = dv("agent_completed", result="It is 18C in Paris.")
D_ERR = dv("agent_error", error="model unavailable")
D_OK = [D_START, D_THINK, D_EXEC, D_DONE, D_END]


def default_run(*messages, **kwargs):
    return run_through_session(DEFAULT, messages, **kwargs)[1]


class TestDefaultRule1:
    def test_a_correct_run_passes_every_rule(self):
        run = default_run(*D_OK)
        assert_clean(run)
        assert run.succeeded and required_missing(run) == []

    def test_a_run_that_ends_in_agent_error_is_well_formed(self):
        run = default_run(D_START, D_THINK, D_ERR)
        assert_clean(run)
        assert not run.succeeded

    def test_agent_started_not_first_fails_rule_1(self):
        v = only(default_run(D_THINK, D_START, D_THINK, D_END), 1)
        assert "agent_started" in v.message and "agent_thinking (#1)" in v.message

    def test_agent_started_twice_fails_rule_1(self):
        v = only(default_run(D_START, D_THINK, D_START, D_END), 1)
        assert "agent_started (#1)" in v.message and "agent_started (#3)" in v.message

    def test_no_terminal_event_fails_rule_1(self):
        run = default_run(D_START, D_THINK)
        assert [v.rule for v in violations(run)] == [1], show(violations(run))
        assert "agent_completed" in violations(run)[0].message

    def test_the_connection_closing_mid_run_fails_rule_1_naming_the_close(self):
        session, run = run_through_session(DEFAULT, [D_START, D_THINK], close=1011)
        assert run.ended == "closed"
        v = only(run, 1)
        assert "1011" in v.message

    def test_agent_completed_twice_within_the_grace_window_fails_rule_1(self):
        run = default_run(*D_OK, D_END)
        v = only(run, 1)
        assert "agent_completed (#5)" in v.message and "agent_completed (#6)" in v.message
        assert v.event is run.agent_events[5]

    def test_completed_then_error_fails_rule_1(self):
        v = only(default_run(*D_OK, D_ERR), 1)
        assert "agent_error (#6)" in v.message

    def test_an_event_after_the_end_fails_rule_1(self):
        v = only(default_run(*D_OK, D_THINK), 1)
        assert "agent_thinking (#6)" in v.message and "agent_completed (#5)" in v.message

    def test_nothing_at_all_fails_rule_1(self):
        run = default_run()
        assert [v.rule for v in violations(run)] == [1]
        assert "r1" in violations(run)[0].message


class TestDefaultRule2:
    def test_no_thinking_fails_rule_2(self):
        v = only(default_run(D_START, D_EXEC, D_DONE, D_END), 2)
        assert "agent_thinking" in v.message

    def test_thinking_only_after_the_end_does_not_count(self):
        found = violations(default_run(D_START, D_END, D_THINK))
        assert sorted(v.rule for v in found) == [1, 2], show(found)


class TestDefaultRule3:
    def test_two_calls_of_one_tool_pair_by_name(self):
        assert_clean(default_run(D_START, D_THINK, D_EXEC, D_EXEC, D_DONE, D_DONE, D_END))

    def test_tool_executing_without_tool_completed_fails_rule_3(self):
        v = only(default_run(D_START, D_THINK, D_EXEC, D_END), 3)
        assert "'get_weather'" in v.message and "tool_completed" in v.message

    def test_tool_completed_without_tool_executing_fails_rule_3(self):
        v = only(default_run(D_START, D_THINK, D_DONE, D_END), 3)
        assert "tool_completed (#3)" in v.message and "'get_weather'" in v.message

    def test_tool_completed_of_another_tool_fails_rule_3_twice(self):
        other = dv("tool_completed", tool_name="get_time", result="10:00", duration_ms=1)
        found = violations(default_run(D_START, D_THINK, D_EXEC, other, D_END))
        assert [v.rule for v in found] == [3, 3], show(found)
        assert "'get_time'" in found[0].message + found[1].message
        assert "'get_weather'" in found[0].message + found[1].message

    def test_tool_completed_after_the_end_does_not_close_the_call(self):
        found = violations(default_run(D_START, D_THINK, D_EXEC, D_END, D_DONE))
        assert sorted(v.rule for v in found) == [1, 3], show(found)


class TestDefaultRule4:
    @pytest.mark.parametrize("key, value", [("run_id", "r-other"), ("thread_id", "t-other"), ("user_id", "bob")])
    def test_a_wrong_id_fails_rule_4_naming_it(self, key, value):
        # Another run_id with the run's thread_id is still this run's (found by its thread):
        # the reference backend's wrong-run-id fault must fail rule 4, not leave the run empty.
        v = only(default_run(D_START, D_THINK, dict(D_END, **{key: value})), 4)
        assert "agent_completed (#3)" in v.message and repr(value) in v.message and key in v.message

    def test_an_event_with_no_ids_goes_to_the_active_run_and_fails_rule_4(self):
        bare = {"type": "agent_thinking", "timestamp": 1767607200.5, "data": {"thought": "hm"}}
        run = default_run(D_START, bare, D_END)
        assert [e.seq for e in run.events] == [1, 2, 3]
        found = check_rule(run, 4)
        assert len(found) == 1 and "agent_thinking (#2)" in found[0].message and "run_id None" in found[0].message


class TestTiming:
    def test_within_budget_is_fine(self):
        assert check_timing(default_run(*D_OK), first_event=1.0, whole_run=1.0) == []

    def test_a_slow_first_event_fails_rule_6_naming_it(self):
        [v] = check_timing(default_run(*D_OK), first_event=0.005, whole_run=1.0)
        assert v.rule == 6 and "agent_started" in v.message and "0.010s" in v.message and "0.005s" in v.message

    def test_a_slow_run_fails_rule_6_naming_the_terminal_event(self):
        [v] = check_timing(default_run(*D_OK), first_event=1.0, whole_run=0.02)
        assert v.rule == 6 and "agent_completed" in v.message and "0.050s" in v.message

    def test_no_event_at_all_fails_rule_6(self):
        [v] = check_timing(default_run(), first_event=2.0, whole_run=30.0)
        assert v.rule == 6 and "no event" in v.message

    def test_check_run_adds_timing_to_conformance(self):
        found = check_run(default_run(*D_OK), first_event=0.001, whole_run=0.001)
        assert [v.rule for v in found] == [6, 6], show(found)


class TestDefaultSchemas:
    def test_format_checking_really_works(self):
        assert format_checking_problem() is None
        assert schemas_off_reason(DEFAULT) is None

    def test_a_missing_required_field_fails_rule_7(self):
        broken = dv("tool_executing", parameters={"city": "Paris"})  # no tool_name
        found = check_schemas(default_run(D_START, D_THINK, broken, D_END))
        assert len(found) == 1 and found[0].rule == 7
        assert "tool_executing (#3)" in found[0].message and "tool_name" in found[0].message

    def test_a_numeric_or_iso_timestamp_is_valid(self):
        iso = dict(D_START, timestamp="2026-01-05T10:00:00+00:00")
        assert check_schemas(default_run(iso, D_THINK, D_END)) == []

    @pytest.mark.parametrize("bad", BAD_DATE_TIMES)
    def test_a_malformed_date_time_fails_rule_7(self, bad):
        found = check_schemas(default_run(dict(D_START, timestamp=bad), D_THINK, D_END))
        assert len(found) == 1 and found[0].rule == 7 and "agent_started (#1)" in found[0].message


# --- netra: flat events, ISO timestamps, tools paired by execution_id -----------------------
def nv(kind, timestamp="2026-01-05T10:00:00.250Z", **fields):
    return {"type": kind, "run_id": "r1", "thread_id": "t1", "user_id": "alice", "request_id": "req-1",
            "timestamp": timestamp, **fields}


N_START = nv("agent_started", agent_name="weather", task_description="weather in Paris")
N_THINK = nv("agent_thinking", reasoning="Looking it up.", step_number=1)
N_EXEC1 = nv("tool_executing", tool_name="get_weather", execution_id="x1", tool_args={"city": "Paris"})
N_EXEC2 = nv("tool_executing", tool_name="get_weather", execution_id="x2", tool_args={"city": "Oslo"})
N_DONE1 = nv("tool_completed", tool_name="get_weather", execution_id="x1", results={"temp": 18}, execution_time=12,
             success=True)
N_DONE2 = nv("tool_completed", tool_name="get_weather", execution_id="x2", results={"temp": -3}, execution_time=9,
             success=True)
N_END = nv("agent_completed", status="completed", final_response="Paris 18C, Oslo -3C.")


def netra_run(*messages, **kwargs):
    return run_through_session(NETRA, messages, **kwargs)[1]


class TestNetra:
    def test_a_correct_run_passes_rules_1_to_4_and_7(self):
        run = netra_run(N_START, N_THINK, N_EXEC1, N_EXEC2, N_DONE2, N_DONE1, N_END)
        assert_clean(run)
        calls = [(c.name, c.key, c.arguments, c.result) for c in run.trajectory()]
        assert calls == [("get_weather", "x1", {"city": "Paris"}, {"temp": 18}),
                         ("get_weather", "x2", {"city": "Oslo"}, {"temp": -3})]
        assert run.answer() == "Paris 18C, Oslo -3C."

    def test_tool_completed_with_an_unknown_execution_id_fails_rule_3(self):
        stray = dict(N_DONE1, execution_id="x9")
        found = violations(netra_run(N_START, N_THINK, N_EXEC1, stray, N_END), 3)
        assert len(found) == 2, show(found)
        text = show(found)
        assert "'x9'" in text and "'x1'" in text and "tool_completed (#4)" in text

    def test_the_same_execution_id_started_twice_fails_rule_3(self):
        found = violations(netra_run(N_START, N_THINK, N_EXEC1, N_EXEC1, N_DONE1, N_END), 3)
        assert len(found) == 1 and "tool_executing (#4)" in found[0].message and "'x1'" in found[0].message

    def test_agent_completed_twice_fails_rule_1(self):
        v = only(netra_run(N_START, N_THINK, N_END, N_END), 1)
        assert "agent_completed (#4)" in v.message

    def test_no_thinking_fails_rule_2(self):
        only(netra_run(N_START, N_END), 2)

    def test_a_user_id_of_another_user_fails_rule_4(self):
        v = only(netra_run(N_START, N_THINK, dict(N_END, user_id="bob")), 4)
        assert "'bob'" in v.message and "'alice'" in v.message

    def test_format_checking_is_on(self):
        assert format_checking_problem() is None
        assert schemas_off_reason(NETRA) is None

    def test_an_iso_timestamp_is_valid(self):
        assert check_schemas(netra_run(N_START, N_THINK, N_END)) == []

    @pytest.mark.parametrize("bad", ["2026-01-05 10:00:00", "yesterday at noon", "2026-99-99T99:99:99Z"])
    def test_a_timestamp_that_is_not_a_date_time_fails_rule_7(self, bad):
        run = netra_run(N_START, nv("agent_thinking", timestamp=bad, reasoning="hm"), N_END)
        v = only(run, 7)
        assert "agent_thinking (#2)" in v.message and "timestamp" in v.message and repr(bad) in v.message

    def test_a_unix_timestamp_fails_rule_7_on_netra(self):
        v = only(netra_run(N_START, N_THINK, dict(N_END, timestamp=1767607200.5)), 7)
        assert "agent_completed (#3)" in v.message


# --- langgraph: lifecycle/tools/messages on the root namespace, tools by tool_call_id -------
_SEQ = iter(range(1, 10**6))


def lg(method, event, namespace=(), **data):
    return {"type": "event", "event_id": f"e-{event}", "seq": next(_SEQ), "method": method,
            "params": {"namespace": list(namespace), "timestamp": 1795973833116, "data": {"event": event, **data}}}


L_START = lg("lifecycle", "running", graph_name="agent")
L_THINK = lg("messages", "content-block-delta", index=0, delta={"type": "reasoning-delta", "reasoning": "Adding."})
L_TEXT = lg("messages", "content-block-delta", index=1, delta={"type": "text-delta", "text": "The answer is 5."})
L_EXEC = lg("tools", "tool-started", tool_call_id="call_1", tool_name="add", input={"a": 2, "b": 3})
L_DONE = lg("tools", "tool-finished", tool_call_id="call_1",
            output={"content": "5", "type": "tool", "name": "add", "tool_call_id": "call_1", "status": "success"})
L_FAIL = lg("tools", "tool-error", tool_call_id="call_1", message="division by zero")
L_END = lg("lifecycle", "completed")
L_FAILED = lg("lifecycle", "failed", error="ZeroDivisionError")


def langgraph_run(*messages, **kwargs):
    return run_through_session(LANGGRAPH, messages, **kwargs)[1]


class TestLanggraph:
    def test_a_correct_run_passes(self):
        run = langgraph_run(L_START, L_THINK, L_EXEC, L_DONE, L_TEXT, L_END)
        assert_clean(run)
        [call] = run.trajectory()
        assert (call.name, call.key, call.arguments, call.result) == ("add", "call_1", {"a": 2, "b": 3}, "5")
        assert run.answer() == "The answer is 5."

    def test_thinking_is_optional(self):
        run = langgraph_run(L_START, L_TEXT, L_END)
        assert_clean(run)
        assert check_rule(run, 2) == []

    def test_tool_error_closes_the_call(self):
        run = langgraph_run(L_START, L_EXEC, L_FAIL, L_FAILED)
        assert_clean(run)
        [call] = run.trajectory()
        assert call.completed and call.error == "division by zero" and call.result is None
        assert not run.succeeded

    def test_tool_finished_with_another_tool_call_id_fails_rule_3(self):
        other = lg("tools", "tool-finished", tool_call_id="call_2", output={"content": "7"})
        found = violations(langgraph_run(L_START, L_EXEC, other, L_END), 3)
        assert len(found) == 2, show(found)
        assert "'call_2'" in show(found) and "'call_1'" in show(found)
        assert "tools.tool-finished (#3)" in show(found)

    def test_a_tool_call_left_open_fails_rule_3(self):
        v = only(langgraph_run(L_START, L_EXEC, L_END), 3)
        assert "'add'" in v.message and "'call_1'" in v.message

    def test_completed_twice_within_the_grace_window_fails_rule_1(self):
        run = langgraph_run(L_START, L_TEXT, L_END, lg("lifecycle", "completed"))
        v = only(run, 1)
        assert "lifecycle.completed (#3)" in v.message and "lifecycle.completed (#4)" in v.message

    def test_events_of_a_subgraph_namespace_are_not_the_run_s(self):
        sub = lg("messages", "message-start", namespace=["tools:call_1"], role="tool")
        run = langgraph_run(L_START, L_EXEC, L_DONE, sub, L_TEXT, L_END)
        assert_clean(run)
        assert [e.seq for e in run.agent_events] == [1, 2, 3, 5, 6]

    def test_a_malformed_event_fails_rule_7(self):
        broken = lg("tools", "tool-started", tool_name="add", input={})  # no tool_call_id
        found = check_schemas(langgraph_run(L_START, broken, L_END))
        assert len(found) == 1 and found[0].rule == 7 and "tools.tool-started (#2)" in found[0].message
        assert "tool_call_id" in found[0].message
