"""AgentEvents: every rule keyword on correct runs and on each fault mode of the reference
backend, hand-made runs for what no fault produces (rules 2, 6, 7), getters with
AssertionEngine operators, and dialect loading."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from assertionengine import AssertionOperator

from AgentAuth import AgentAuth
from AgentEvents import AgentEvents
from agentkit.wire import dialect as dialects
from agentkit import target as targets
from agentkit.wire.event import Event
from agentkit.wire.run import RunRecord

LIFECYCLE = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_thinking", "agent_completed"]



@pytest.fixture
def events():
    return AgentEvents()


@pytest.fixture(scope="module")
def faulty(backend_factory):
    """One backend per fault, started on first use and shared by this module's tests."""
    started = {}

    def get(fault):
        if fault not in started:
            started[fault] = backend_factory(faults=[fault], extra_args=["--slow-first-delay", "0.6"])
        return started[fault]

    return get


def connect(sessions, backend, user="alice"):
    token = AgentAuth().create_test_token(user, secret=backend.jwt_secret)
    return sessions.connect_to_agent_websocket(token, url=backend.ws_url, alias=user)


def one_run(sessions, backend, timeout=10.0, allow_incomplete=False):
    connect(sessions, backend)
    run = sessions.send_user_message("What does the documentation say about retries?")
    return sessions.collect_agent_run(run, timeout=timedelta(seconds=timeout), allow_incomplete=allow_incomplete)


def hand_made_run(messages, dialect=None, run_id="run_1", thread_id="thread_1", user_id="alice", gap=0.01):
    """A RunRecord from plain messages, as if each arrived ``gap`` seconds after the previous one."""
    d = dialect or dialects.current()
    sent_at = 1000.0
    evs = [Event.from_text(i + 2, sent_at + gap * (i + 1), "hand", json.dumps(m), d) for i, m in enumerate(messages)]
    return RunRecord("hand", user_id, run_id, thread_id, sent_at, evs, dialect=d)


def envelope(kind, data, run_id="run_1", thread_id="thread_1", user_id="alice"):
    return {"type": kind, "run_id": run_id, "thread_id": thread_id, "user_id": user_id,
            "timestamp": time.time(), "data": data}


GOOD = [
    envelope("agent_started", {"agent_name": "a"}),
    envelope("agent_thinking", {"thought": "hmm"}),
    envelope("tool_executing", {"tool_name": "search_docs", "parameters": {}}),
    envelope("tool_completed", {"tool_name": "search_docs", "result": "r", "duration_ms": 3}),
    envelope("agent_completed", {"result": "done"}),
]


# --- a correct run passes every keyword ----------------------------------------------------
def test_correct_run_passes_every_rule_keyword(sessions, events, backend):
    run = one_run(sessions, backend)
    events.agent_run_should_complete_with_all_required_events(run)
    events.run_should_start_and_end_once(run)
    events.run_should_contain_thinking(run)
    events.tool_calls_should_be_paired(run)
    events.run_events_should_carry_ids(run)
    events.run_should_meet_time_budgets(run, first_event=timedelta(seconds=2), whole_run=timedelta(seconds=30))
    events.run_events_should_match_schemas(run)
    events.connection_should_not_receive_foreign_events()
    events.run_should_contain_events_in_order(run, "agent_started", "tool_executing", "tool_completed",
                                              "agent_completed")
    assert [m["type"] for m in events.get_run_events(run)] == LIFECYCLE


def test_run_getters_with_assertion_operators(sessions, events, backend):
    run = one_run(sessions, backend)
    assert events.get_run_event_count(run) == 6
    assert events.get_run_event_count(run, "agent_thinking", AssertionOperator[">="], "2") == 2
    assert events.get_run_event_count(run, "tool_completed", AssertionOperator["=="], "1") == 1
    with pytest.raises(AssertionError, match=r"Number of tool_completed events in run run_\w+ '1' \(int\) should be "
                                             r"'2' \(int\)"):
        events.get_run_event_count(run, "tool_completed", AssertionOperator["=="], "2")
    tool = events.get_run_events(run, "tool_executing")[0]
    assert events.get_event_field(tool, "data.tool_name", AssertionOperator["=="], "search_docs") == "search_docs"
    assert events.get_event_field(run.events[2], "tool_name", AssertionOperator["^="], "search") == "search_docs"
    assert events.get_event_field(tool, "data.parameters.call") == 1
    with pytest.raises(AssertionError, match=r"Field 'data.tool_name' of tool_executing 'search_docs' \(str\) should "
                                             r"be 'fetch_url' \(str\)"):
        events.get_event_field(tool, "data.tool_name", AssertionOperator["=="], "fetch_url")
    with pytest.raises(AssertionError, match=r"^No field 'data\.nope' in 'tool_executing'; the event has: data, "
                                             r"run_id, thread_id, timestamp, type, user_id: "
                                             r"\{'type': 'tool_executing'"):
        events.get_event_field(tool, "data.nope")


def test_events_in_order_failure_names_the_missing_one(sessions, events, backend):
    run = one_run(sessions, backend)
    with pytest.raises(AssertionError) as err:
        events.run_should_contain_events_in_order(run, "agent_started", "agent_completed", "tool_executing")
    assert str(err.value).startswith("- Rule 1 (start and end) violated: expected ['agent_started', 'agent_completed', "
                                     "'tool_executing'] in this order; 'tool_executing' is missing after position 6. "
                                     "Got ['agent_started (started)', ")


def test_whole_run_budget_failure_names_the_duration(sessions, events, backend):
    run = one_run(sessions, backend)  # 5 think delays of 2 ms: at least 10 ms
    with pytest.raises(AssertionError, match=r"Rule 6 \(timing\) violated: the run took 0\.\d{3}s \(agent_completed\); "
                                             r"budget 0\.005s"):
        events.run_should_meet_time_budgets(run, whole_run=timedelta(milliseconds=5))


def test_budgets_default_to_the_targets(sessions, events, backend):
    from agentkit.target import Target
    run = one_run(sessions, backend)
    targets.set_current(Target("staging", backend.url, backend.ws_url, backend.url, first_event_timeout=2.0,
                               run_timeout=0.001))
    with pytest.raises(AssertionError, match=r"budget 0\.001s"):
        events.run_should_meet_time_budgets(run)


def test_rule_keywords_refuse_what_is_not_a_run(events):
    with pytest.raises(TypeError, match=r"Expected a run from 'Collect Agent Run', got dict: \{'run_id': 'x'\}"):
        events.run_should_start_and_end_once({"run_id": "x"})


# --- fault modes: each fails with the rule it breaks -------------------------------------------
def test_drop_tool_completed_breaks_rule_3(sessions, events, faulty):
    run = one_run(sessions, faulty("drop-tool-completed"))
    with pytest.raises(AssertionError) as err:
        events.tool_calls_should_be_paired(run)
    text = str(err.value)
    assert text.startswith("- Rule 3 (pairing) violated: expected tool_completed for 'search_docs' after "
                           "tool_executing at 0.")
    assert "; the run ended with agent_completed (#6) at" in text
    marked = [line for line in text.splitlines() if line.startswith("->")]
    assert len(marked) == 1 and "tool_executing" in marked[0]  # the timeline points at the unpaired call
    with pytest.raises(AssertionError, match=r"^- Rule 3 \(pairing\) violated"):
        events.agent_run_should_complete_with_all_required_events(run)
    events.run_should_start_and_end_once(run)  # nothing else is broken


def test_drop_agent_completed_fails_collect_by_timeout_with_rule_1(sessions, events, faulty):
    connect(sessions, faulty("drop-agent-completed"))
    run = sessions.send_user_message("hello")
    started = time.perf_counter()
    with pytest.raises(AssertionError) as err:
        sessions.collect_agent_run(run, timeout=timedelta(seconds=0.5))
    assert time.perf_counter() - started < 8.0  # its 0.5 s, not the default 30 s
    text = str(err.value)
    assert text.startswith(f"Rule 1 (start and end) violated: run {run['run_id']} did not end with "
                           "agent_completed, agent_error: no terminal event within 0.5s. Events of the run:")
    assert "agent_thinking" in text.splitlines()[-1]  # the last event that did arrive
    record = sessions.collect_agent_run(run, timeout=timedelta(seconds=0.1), allow_incomplete=True)
    assert record.ended == "timeout"
    with pytest.raises(AssertionError, match=r"^- Rule 1 \(start and end\) violated: expected exactly one terminal "
                                             r"event \(agent_completed, agent_error\); the run never ended"):
        events.run_should_start_and_end_once(record)


def test_reorder_breaks_rule_3_both_ways(sessions, events, faulty):
    run = one_run(sessions, faulty("reorder"))
    with pytest.raises(AssertionError) as err:
        events.tool_calls_should_be_paired(run)
    lines = str(err.value).splitlines()
    assert lines[0].startswith("- Rule 3 (pairing) violated: tool_completed (#4) at ")
    assert lines[0].endswith("for tool 'search_docs' has no tool_executing before it.")
    assert lines[1].startswith("- Rule 3 (pairing) violated: expected tool_completed for 'search_docs' after "
                               "tool_executing at ")


def test_completed_first_breaks_rule_1(sessions, events, faulty):
    run = one_run(sessions, faulty("completed-first"))
    with pytest.raises(AssertionError, match=r"^- Rule 1 \(start and end\) violated: expected agent_started as the "
                                             r"first event, got agent_completed \(#2\) at 0\.\d{3}s\."):
        events.run_should_start_and_end_once(run)
    with pytest.raises(AssertionError, match=r"^- Rule 1 \(start and end\) violated: expected agent_started"):
        events.agent_run_should_complete_with_all_required_events(run)


def test_leak_breaks_rule_5_on_the_other_users_connection(sessions, events, faulty):
    leaky = faulty("leak")
    connect(sessions, leaky, "alice")
    connect(sessions, leaky, "bob")
    run = sessions.send_user_message("bob's secret question", alias="bob")
    sessions.collect_agent_run(run)
    sessions.wait_for_event("agent_completed", f"run_id={run['run_id']}", alias="alice")  # the leaked copy
    events.connection_should_not_receive_foreign_events("bob")
    with pytest.raises(AssertionError) as err:
        events.connection_should_not_receive_foreign_events("alice")
    lines = str(err.value).splitlines()
    assert lines[0] == "Rule 5 (isolation) violated on 1 of 1 connection(s), 6 foreign event(s) in all:"
    assert lines[1] == "Connection 'alice': 6 foreign event(s)"
    assert lines[2] == (f"- Rule 5 (isolation) violated: connection 'alice' of user 'alice' received agent_started "
                        f"(#2) of user 'bob', run '{run['run_id']}', thread '{run['thread_id']}', an event of a run "
                        f"this connection never started.")
    assert len([line for line in lines if line.startswith("- Rule 5")]) == 6
    assert "Frames on 'alice' (-> foreign):" in err.value.args[0]


def test_wrong_run_id_breaks_rule_4(sessions, events, faulty):
    run = one_run(sessions, faulty("wrong-run-id"))
    assert len(run.events) == 6  # matched by thread_id
    with pytest.raises(AssertionError) as err:
        events.run_events_should_carry_ids(run)
    first = str(err.value).splitlines()[0]
    assert first.startswith("- Rule 4 (ids) violated: agent_started (#2) at ")
    assert f"carries run_id '{run.events[0].run_id}' (expected '{run.run_id}')." in first
    assert run.events[0].run_id != run.run_id


def test_slow_first_event_breaks_rule_6(sessions, events, faulty):
    run = one_run(sessions, faulty("slow-first-event"))
    with pytest.raises(AssertionError, match=r"^- Rule 6 \(timing\) violated: first event agent_started arrived "
                                             r"0\.[6-9]\d\ds after the message; budget 0\.3s\."):
        events.run_should_meet_time_budgets(run, first_event=timedelta(seconds=0.3))
    with pytest.raises(AssertionError, match=r"^- Rule 6 \(timing\)"):
        events.agent_run_should_complete_with_all_required_events(run, first_event=timedelta(seconds=0.3))
    events.run_should_meet_time_budgets(run, first_event=timedelta(seconds=2))


def test_close_mid_run_breaks_rule_1_on_the_close(sessions, events, faulty):
    run = one_run(sessions, faulty("close-mid-run"), timeout=20, allow_incomplete=True)
    with pytest.raises(AssertionError, match=r"^- Rule 1 \(start and end\) violated: expected exactly one terminal "
                                             r"event .*; the connection was closed by the server \(code 1011\) at "
                                             r"0\.\d{3}s before the run ended\."):
        events.run_should_start_and_end_once(run)


# --- hand-made runs: what no fault mode produces --------------------------------------------------
def test_hand_made_correct_run_passes(events):
    events.agent_run_should_complete_with_all_required_events(hand_made_run(GOOD), first_event=timedelta(seconds=1))


def test_missing_thinking_breaks_rule_2(events):
    run = hand_made_run([m for m in GOOD if m["type"] != "agent_thinking"])
    with pytest.raises(AssertionError, match=r"^- Rule 2 \(thinking\) violated: expected at least one agent_thinking "
                                             r"between start and end; got \['agent_started', 'tool_executing', "
                                             r"'tool_completed', 'agent_completed'\]; the run ended with "
                                             r"agent_completed \(#5\) at 0\.040s\."):
        events.run_should_contain_thinking(run)


def test_missing_lifecycle_event_is_named(events):
    run = hand_made_run([m for m in GOOD if not m["type"].startswith("tool_")])
    with pytest.raises(AssertionError, match=r"^- Rule 1 \(start and end\) violated: required event\(s\) missing from "
                                             r"the run: tool_executing, tool_completed \(rules\.required_roles of "
                                             r"dialect 'default'\); got \['agent_started', 'agent_thinking', "
                                             r"'agent_completed'\]\."):
        events.agent_run_should_complete_with_all_required_events(run, first_event=timedelta(seconds=1))


def test_event_after_the_terminal_breaks_rule_1(events):
    run = hand_made_run(GOOD + [envelope("agent_thinking", {"thought": "late"})])
    with pytest.raises(AssertionError, match=r"^- Rule 1 \(start and end\) violated: expected the terminal event last, "
                                             r"but agent_thinking \(#7\) at 0\.060s came after agent_completed \(#6\)"):
        events.run_should_start_and_end_once(run)


def test_two_terminal_events_break_rule_1(events):
    run = hand_made_run(GOOD + [envelope("agent_error", {"error": "boom"})])
    with pytest.raises(AssertionError, match=r"expected exactly one terminal event, got 2: agent_completed \(#6\) at "
                                             r"0\.050s, agent_error \(#7\) at 0\.060s \(the run listened 0s after its "
                                             r"end\)\."):
        events.run_should_start_and_end_once(run)


def test_no_events_at_all(events):
    run = hand_made_run([])
    with pytest.raises(AssertionError, match=r"^- Rule 1 \(start and end\) violated: no agent event arrived for run "
                                             r"run_1; the run never ended"):
        events.run_should_start_and_end_once(run)
    with pytest.raises(AssertionError, match=r"no event arrived within the first-event budget of 2s"):
        events.run_should_meet_time_budgets(run)


def test_wrong_user_and_thread_break_rule_4(events):
    msgs = [dict(m) for m in GOOD]
    msgs[1] = envelope("agent_thinking", {"thought": "x"}, thread_id="thread_other", user_id="bob")
    with pytest.raises(AssertionError, match=r"^- Rule 4 \(ids\) violated: agent_thinking \(#3\) at 0\.020s carries "
                                             r"thread_id 'thread_other' \(expected 'thread_1'\), user_id 'bob' "
                                             r"\(expected 'alice'\)\."):
        events.run_events_should_carry_ids(hand_made_run(msgs))


def test_schema_violations_break_rule_7(events):
    msgs = [dict(m) for m in GOOD]
    msgs[0] = envelope("agent_started", {})
    msgs[3] = envelope("tool_completed", {"tool_name": "search_docs", "result": "r", "duration_ms": -1})
    run = hand_made_run(msgs)
    with pytest.raises(AssertionError) as err:
        events.run_events_should_match_schemas(run)
    lines = str(err.value).splitlines()
    assert lines[0] == ("- Rule 7 (schema) violated: agent_started (#2) at 0.010s (run_id 'run_1') does not match "
                        "agent_started.schema.json: data: 'agent_name' is a required property")
    assert lines[1] == ("- Rule 7 (schema) violated: tool_completed (#5) at 0.040s (run_id 'run_1') does not match "
                        "tool_completed.schema.json: data.duration_ms: -1 is less than the minimum of 0")
    with pytest.raises(AssertionError, match=r"^- Rule 7 \(schema\)"):
        events.agent_run_should_complete_with_all_required_events(run, first_event=timedelta(seconds=1))
    events.agent_run_should_complete_with_all_required_events(run, first_event=timedelta(seconds=1),
                                                              check_schemas=False)


# --- dialects ---------------------------------------------------------------------------------
# A backend with other names for every role, flat events, and a chat_message that starts a run
# (dialect format v2: resources/schemas/dialect.schema.json).
VARIANT = {
    "name": "variant",
    "connect": {"auth": ["subprotocol"], "subprotocols": ["jwt-auth", "jwt.{token}"],
                "subprotocol_selection": "jwt-auth", "refusal": {"http_status": [403]}},
    "welcome": {"presence": "required", "match": [{"type": "connection_established"}], "identifies": "none"},
    "run": {"start": {"type": "chat_message", "content": "{content}", "thread_id": "{thread_id}"},
            "correlation": "ids", "event_ids": ["run_id", "thread_id", "user_id"]},
    "events": {
        "roles": [{"role": "started", "match": {"type": "run_started"}},
                  {"role": "thinking", "match": {"type": "reasoning"}},
                  {"role": "tool_executing", "match": {"type": "tool_call"}},
                  {"role": "tool_completed", "match": {"type": "tool_result"}},
                  {"role": "completed", "match": {"type": "final_response"}},
                  {"role": "error", "match": {"type": "error_message"}}],
        "fields": {"run_id": ["run_id"], "thread_id": ["thread_id"], "user_id": ["user_id", "data.user_id"],
                   "tool_name": ["tool"], "thought": ["reasoning"], "result": ["results", "final_response"]},
        "tool_call_key": "tool_name"},
    "rules": {"set": "protocol", "thinking": "required",
              "required_roles": ["started", "thinking", "tool_executing", "tool_completed", "completed"]},
    "schemas": False,
}


def flat(kind, **fields):
    return {"type": kind, "run_id": "run_1", "thread_id": "thread_1", "user_id": "alice", **fields}


def test_alternative_dialect_maps_other_names_onto_the_roles(events, tmp_path):
    path = tmp_path / "variant.json"
    path.write_text(json.dumps(VARIANT), encoding="utf-8")
    assert events.use_event_dialect(str(path)) == "variant"
    d = dialects.current()
    assert d.role_of({"type": "reasoning"}) == "thinking" and d.role_of({"type": "agent_thinking"}) is None
    assert d.build_start("hi", "thread_1", "run_1", "msg_1", 1) == {"type": "chat_message", "content": "hi",
                                                                    "thread_id": "thread_1"}
    run = hand_made_run([flat("run_started"), flat("reasoning", reasoning="plan"), flat("tool_call", tool="grep"),
                         flat("tool_result", tool="grep", results=[1]), flat("final_response", final_response="ok")])
    events.agent_run_should_complete_with_all_required_events(run, first_event=timedelta(seconds=1))
    assert events.get_event_field(run.events[2], "tool_name", AssertionOperator["=="], "grep") == "grep"
    # the default names mean nothing in this dialect; the failure speaks the dialect's names
    broken = hand_made_run([flat("run_started"), flat("agent_thinking"), flat("final_response")])
    with pytest.raises(AssertionError, match=r"Rule 2 \(thinking\) violated: expected at least one reasoning between "
                                             r"start and end; got \['run_started', 'final_response'\]"):
        events.run_should_contain_thinking(broken)
    unpaired = hand_made_run([flat("run_started"), flat("reasoning"), flat("tool_call", tool="grep"),
                              flat("final_response")])
    with pytest.raises(AssertionError, match=r"expected tool_result for 'grep' after tool_call at 0\.030s; "
                                             r"the run ended with final_response \(#5\)"):
        events.tool_calls_should_be_paired(unpaired)


def test_unknown_dialect_lists_the_built_in_ones(events):
    with pytest.raises(ValueError, match=r"^Dialect 'nope' not found: expected a JSON file at .*nope\.json or one of "
                                         r"the built-in dialects: ag-ui, default, langgraph, netra\.$"):
        events.use_event_dialect("nope")
    assert dialects.current().name == "default"


def test_dialect_file_that_is_not_json_is_named(events, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^Dialect file {bad} is not valid JSON: Expecting property name enclosed "
                                         rf"in double quotes at line 1, column 2\.$"):
        events.use_event_dialect(str(bad))


def test_invalid_dialect_names_missing_keys_and_unknown_roles(events, tmp_path):
    """Every problem at once (the dialect file is checked against its JSON Schema): a missing
    key and a role the kit does not know."""
    raw = json.loads(json.dumps(VARIANT))
    del raw["run"]
    raw["events"]["roles"].append({"role": "pondering", "match": {"type": "p"}})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ValueError) as err:
        events.use_event_dialect(str(bad))
    lines = str(err.value).splitlines()
    assert lines[0] == f"Dialect file {bad} is invalid (2 problems; see docs/dialects.md):"
    assert lines[1] == "- <root>: 'run' is a required property"
    assert lines[2].startswith("- events/roles/6/role: 'pondering' is not one of ['started', 'thinking', ")
    assert len(lines) == 3
    assert dialects.current().name == "default"


def test_first_version_dialect_file_is_refused_naming_every_problem(events, tmp_path):
    """A dialect in the first format (role -> names) is not silently half-read."""
    bad = tmp_path / "old.json"
    bad.write_text(json.dumps({"events": {"started": ["s"], "pondering": ["p"]}}), encoding="utf-8")
    with pytest.raises(ValueError) as err:
        events.use_event_dialect(str(bad))
    text = str(err.value)
    assert text.startswith(f"Dialect file {bad} is invalid (10 problems; see docs/dialects.md):\n")
    for key in ("name", "connect", "welcome", "run", "rules", "schemas"):
        assert f"- <root>: '{key}' is a required property" in text
    assert "- events: Additional properties are not allowed ('pondering', 'started' were unexpected)" in text
    for key in ("roles", "fields", "tool_call_key"):
        assert f"- events: '{key}' is a required property" in text
