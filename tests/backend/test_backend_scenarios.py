"""Scenarios (``--scenarios FILE``): scripted agent behaviour, its variables, selection and timing,
how it looks on each wire, the shipped ``resources/scenarios/agent_behaviour.yaml``, and bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from backend_helpers import ROOT, make_token, open_session, read_run, read_until_quiet, send_message, violated_rules
from wire_helpers import (
    AGUI_TERMINAL,
    agui_input,
    agui_violations,
    b64url,
    netra_message,
    netra_violations,
    new_ids,
    open_ws,
    recv,
    recv_until,
)

SHIPPED = ROOT / "resources" / "scenarios" / "agent_behaviour.yaml"

# Scenarios for the engine itself, next to the shipped ones.
EXTRA = [
    {"name": "echo", "match": r"^echo (?P<word>\w+)(?: and (?P<other>\w+))?",
     "steps": [
         {"think": "You said: {content}"},
         {"tool": "repeat", "arguments": {"word": "{word}", "other": "{other}", "literal": "{{word}}"},
          "result": {"echo": "{word}"}, "duration": 0.3},
         {"delay": 0.3},
         {"answer": ["{word}", "!"]},
     ]},
    {"name": "broken-agent", "match": "(?i)please fail",
     "steps": [{"think": "Trying"}, {"answer": "partial "}, {"fail": "model overloaded"}]},
    *({"name": f"coin-{side}", "match": f"coin {side}", "select": "random", "seed": 1234,
       "variants": [{"weight": 1, "steps": [{"think": "flip"}, {"answer": "heads"}]},
                    {"weight": 2, "steps": [{"think": "flip"}, {"answer": "tails"}]}]} for side in ("a", "b")),
]


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    """The shipped scenarios plus EXTRA, as a JSON file."""
    shipped = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))["scenarios"]
    path = tmp_path_factory.mktemp("scenarios") / "scenarios.json"
    path.write_text(json.dumps({"scenarios": shipped + EXTRA}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def servers(start_server, scenario_file):
    """wire -> a server playing scenario_file (default wire: the shipped YAML file is "shipped")."""
    started = {
        "shipped": start_server("--scenarios", str(SHIPPED), "--think-delay", "0.01", ready=False),
        **{wire: start_server("--wire", wire, "--scenarios", str(scenario_file), "--think-delay", "0.01",
                              ready=False) for wire in ("default", "netra", "ag-ui")},
    }
    return {name: server.wait_ready(timeout=90) for name, server in started.items()}


def default_run(server, content: str, user: str = "user_scn", thread_id: str | None = None) -> list[dict]:
    ws, _ = open_session(server, user)
    try:
        send_message(ws, content, thread_id=thread_id)
        return read_run(ws)
    finally:
        ws.close()


def data_of(events: list[dict], kind: str) -> list[dict]:
    return [e["data"] for e in events if e["type"] == kind]


# --- the engine (default wire) ----------------------------------------------------------

def test_named_groups_content_and_literal_braces_fill_the_steps(servers):
    events = default_run(servers["default"], "echo hello")
    assert [e["type"] for e in events] == [
        "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
    assert data_of(events, "agent_thinking") == [{"thought": "You said: echo hello"}]
    # An optional group that did not take part is empty; {{word}} is a literal.
    assert data_of(events, "tool_executing") == [
        {"tool_name": "repeat", "parameters": {"word": "hello", "other": "", "literal": "{word}"}}]
    assert data_of(events, "tool_completed") == [{"tool_name": "repeat", "result": {"echo": "hello"},
                                                 "duration_ms": 300.0}]
    assert data_of(events, "agent_completed") == [{"result": "hello!"}]  # the chunks, concatenated
    assert violated_rules(events, events[0]["run_id"], events[0]["thread_id"], "user_scn") == {}


def test_duration_and_delay_set_the_time_between_events(servers):
    events = default_run(servers["default"], "echo timing and more")
    at = {e["type"]: e["timestamp"] for e in events}
    assert at["tool_completed"] - at["tool_executing"] >= 0.29  # duration 0.3
    assert at["agent_completed"] - at["tool_completed"] >= 0.29  # delay 0.3 (+ the answer's think delay)
    assert data_of(events, "tool_executing")[0]["parameters"]["other"] == "more"


def test_a_message_no_scenario_matches_gets_the_built_in_run(servers):
    events = default_run(servers["default"], "Tell me about the kit")
    assert [e["type"] for e in events] == [
        "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_thinking", "agent_completed"]
    assert data_of(events, "tool_executing")[0]["tool_name"] == "search_docs"
    assert data_of(events, "agent_completed") == [{"result": "Reference answer to: Tell me about the kit"}]


def test_a_fail_step_ends_the_run_with_agent_error(servers):
    events = default_run(servers["default"], "Please fail now")
    assert [e["type"] for e in events] == ["agent_started", "agent_thinking", "agent_error"]
    assert data_of(events, "agent_error") == [{"error": "model overloaded"}]
    assert violated_rules(events, events[0]["run_id"], events[0]["thread_id"], "user_scn") == {}


def test_cycle_plays_7_of_10_and_3_of_10_in_any_10_consecutive_runs(servers):
    ws, _ = open_session(servers["shipped"], "user_flaky")
    answers, tools = [], []
    try:
        for _ in range(25):
            send_message(ws, "What is the capital of France?")
            events = read_run(ws)
            answers.append(data_of(events, "agent_completed")[0]["result"])
            tools.append([d["parameters"] for d in data_of(events, "tool_executing")])
    finally:
        ws.close()
    assert set(answers) == {"Paris is the capital of France.", "Lyon is the capital of France."}
    for start in range(len(answers) - 9):
        window = answers[start:start + 10]
        assert window.count("Paris is the capital of France.") == 7, (start, answers)
    for answer, calls in zip(answers, tools):
        assert calls == ([{"country": "France"}] if answer.startswith("Paris") else []), (answer, calls)


def test_random_with_a_seed_repeats_its_picks(servers):
    ws, _ = open_session(servers["default"], "user_coin")
    picks = {"a": [], "b": []}
    try:
        for side in ("a", "b"):
            for _ in range(30):
                send_message(ws, f"flip coin {side}")
                picks[side].append(data_of(read_run(ws), "agent_completed")[0]["result"])
    finally:
        ws.close()
    assert picks["a"] == picks["b"]  # two scenarios, same seed: the same sequence
    assert set(picks["a"]) == {"heads", "tails"} and picks["a"].count("tails") > picks["a"].count("heads")


# --- the shipped file -------------------------------------------------------------------

def test_weather_calls_get_weather_for_the_city_and_answers_with_its_temperature(servers):
    events = default_run(servers["shipped"], "What is the weather like in Paris today?")
    assert data_of(events, "tool_executing") == [{"tool_name": "get_weather", "parameters": {"city": "Paris"}}]
    result = data_of(events, "tool_completed")[0]["result"]
    assert result == {"city": "Paris", "temperature_c": 18, "conditions": "sunny"}
    answer = data_of(events, "agent_completed")[0]["result"]
    assert answer == "It is 18°C and sunny in Paris." and "Paris" in answer and "18" in answer


def test_a_follow_up_in_the_same_thread_uses_the_city_of_the_earlier_turn(servers):
    server = servers["shipped"]
    thread_id, _ = new_ids()
    default_run(server, "How is the weather in Lisbon?", thread_id=thread_id)
    events = default_run(server, "What about tomorrow?", thread_id=thread_id)
    assert data_of(events, "tool_executing") == [
        {"tool_name": "get_forecast", "parameters": {"city": "Lisbon", "day": "tomorrow"}}]
    assert "Lisbon" in data_of(events, "agent_completed")[0]["result"]
    # The thread's latest city wins.
    default_run(server, "And the weather in Oslo?", thread_id=thread_id)
    events = default_run(server, "what about tomorrow then", thread_id=thread_id)
    assert data_of(events, "tool_executing")[0]["parameters"] == {"city": "Oslo", "day": "tomorrow"}
    # No earlier city: another thread, or the same thread id of another user, gets the built-in run.
    for user, thread in (("user_scn", new_ids()[0]), ("user_other", thread_id)):
        events = default_run(server, "What about tomorrow?", user=user, thread_id=thread)
        assert data_of(events, "tool_executing")[0]["tool_name"] == "search_docs"


def test_a_failing_tool_is_reported_and_the_run_still_completes(servers):
    events = default_run(servers["shipped"], "What's the weather in Atlantis?")
    assert [e["type"] for e in events][-1] == "agent_completed"
    completed = data_of(events, "tool_completed")[0]
    assert completed["result"] is None and completed["error"] == "unknown city: Atlantis"
    assert "unknown city: Atlantis" in data_of(events, "agent_completed")[0]["result"]
    assert violated_rules(events, events[0]["run_id"], events[0]["thread_id"], "user_scn") == {}


# --- each wire's mapping ----------------------------------------------------------------

def netra_play(server, content: str, thread_id: str | None = None, user: str = "user_scn") -> list[dict]:
    with open_ws(server, subprotocols=[f"jwt.{b64url(make_token(user))}"]) as ws:
        recv(ws)
        thread_id = thread_id or new_ids()[0]
        ws.send(netra_message(content, thread_id, new_ids()[1]))
        return recv_until(ws, lambda f: f["type"] in ("agent_completed", "agent_error"))


def agui_play(server, content: str, thread_id: str | None = None) -> list[dict]:
    with open_ws(server, subprotocols=["jwt-auth", f"jwt.{make_token('user_scn')}"]) as ws:
        ws.send(json.dumps(agui_input(content, thread_id)))
        return recv_until(ws, lambda f: f["type"] in AGUI_TERMINAL)


def test_netra_mapping(servers):
    server = servers["netra"]
    events = netra_play(server, "weather in Paris please")
    assert [e["type"] for e in events] == [
        "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_thinking", "agent_completed"]
    assert netra_violations(events, events[0]["run_id"], events[0]["thread_id"], "user_scn") == {}
    executing, completed, final = events[2], events[3], events[-1]
    assert executing["tool_name"] == "get_weather" and executing["tool_args"] == executing["parameters"] == {
        "city": "Paris"}
    assert completed["results"] == {"city": "Paris", "temperature_c": 18, "conditions": "sunny"}
    assert completed["success"] is True and "error" not in completed
    assert final["status"] == "completed" and final["final_response"] == "It is 18°C and sunny in Paris."

    failed_tool = netra_play(server, "weather in Atlantis?")[3]
    assert failed_tool["success"] is False and failed_tool["error"] == "unknown city: Atlantis"
    assert failed_tool["results"] is None

    failing = netra_play(server, "please fail")
    assert [e["type"] for e in failing] == ["agent_started", "agent_thinking", "agent_error"]
    assert failing[-1]["error"] == "model overloaded"

    thread_id = new_ids()[0]
    netra_play(server, "weather in Rome", thread_id)
    follow_up = netra_play(server, "What about tomorrow?", thread_id)
    assert follow_up[2]["tool_args"] == {"city": "Rome", "day": "tomorrow"}


def test_agui_mapping(servers):
    server = servers["ag-ui"]
    events = agui_play(server, "weather in Paris please")
    assert agui_violations(events, events[0]["threadId"], events[0]["runId"]) == {}
    by_type: dict[str, list[dict]] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    assert [e["toolCallName"] for e in by_type["TOOL_CALL_START"]] == ["get_weather"]
    assert json.loads("".join(e["delta"] for e in by_type["TOOL_CALL_ARGS"])) == {"city": "Paris"}
    assert json.loads(by_type["TOOL_CALL_RESULT"][0]["content"]) == {
        "city": "Paris", "temperature_c": 18, "conditions": "sunny"}
    assert [e["delta"] for e in by_type["TEXT_MESSAGE_CONTENT"]] == ["It is 18°C and sunny ", "in Paris."]
    assert by_type["RUN_FINISHED"][0]["result"] == "It is 18°C and sunny in Paris."
    assert len(by_type["REASONING_MESSAGE_CONTENT"]) == 2

    failed_tool = agui_play(server, "weather in Atlantis?")
    result = next(e for e in failed_tool if e["type"] == "TOOL_CALL_RESULT")
    assert result["content"] == "Error: unknown city: Atlantis" and failed_tool[-1]["type"] == "RUN_FINISHED"

    failing = agui_play(server, "please fail")
    assert [e["type"] for e in failing][-5:] == [
        "REASONING_END", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "RUN_ERROR"]
    assert {k: v for k, v in failing[-1].items() if k != "timestamp"} == {
        "type": "RUN_ERROR", "message": "model overloaded", "code": "AGENT_ERROR"}

    thread_id = new_ids()[0]
    agui_play(server, "weather in Rome", thread_id)
    follow_up = agui_play(server, "What about tomorrow?", thread_id)
    args = "".join(e["delta"] for e in follow_up if e["type"] == "TOOL_CALL_ARGS")
    assert json.loads(args) == {"city": "Rome", "day": "tomorrow"}


def test_faults_apply_on_top_of_scenarios_and_the_file_can_come_from_the_environment(start_server):
    server = start_server("--fault", "drop-tool-completed", "--think-delay", "0.01",
                          env={"REFERENCE_BACKEND_SCENARIOS": str(SHIPPED)})
    ws, _ = open_session(server, "user_scn")
    try:
        thread_id, run_id = send_message(ws, "weather in Paris")
        frames, _ = read_until_quiet(ws)
    finally:
        ws.close()
    assert [f["type"] for f in frames] == ["agent_started", "agent_thinking", "tool_executing", "agent_thinking",
                                           "agent_completed"]
    assert set(violated_rules(frames, run_id, thread_id, "user_scn")) == {3}
    assert frames[-1]["data"]["result"] == "It is 18°C and sunny in Paris."


# --- bad files --------------------------------------------------------------------------

BAD_FILES = {
    "typo.yaml": ("scenarios:\n  - name: a\n    match: x\n    steps:\n      - thnk: hi\n",
                  "scenarios[0] (a).steps[0]: Additional properties are not allowed ('thnk' was unexpected)"),
    "no-kind.yaml": ("scenarios:\n  - name: a\n    match: x\n    steps: [{}]\n",
                     "steps[0]: a step has exactly one of: think, tool, delay, answer, fail"),
    "two-kinds.json": ('{"scenarios": [{"name": "a", "match": "x", "steps": [{"think": "t", "answer": "a"}]}]}',
                       "a step has exactly one of: think, tool, delay, answer, fail (it has: think, answer)"),
    "result-and-error.yaml": ("scenarios:\n  - {name: a, match: x, steps: [{tool: t, result: 1, error: e}]}\n",
                              "a tool step has result or error, not both"),
    "arguments-without-tool.yaml": ("scenarios:\n  - {name: a, match: x, steps: [{arguments: {}}]}\n",
                                    "'tool' is a dependency of 'arguments'"),
    "steps-and-variants.yaml": ("scenarios:\n  - {name: a, match: x, steps: [{think: a}], "
                                "variants: [{steps: [{think: b}]}]}\n", "either steps or variants"),
    "zero-weight.yaml": ("scenarios:\n  - {name: a, match: x, variants: [{weight: 0, steps: [{think: b}]}]}\n",
                         "variants[0].weight: 0 is less than the minimum of 1"),
    "bad-select.yaml": ("scenarios:\n  - {name: a, match: x, select: sometimes, steps: [{think: b}]}\n",
                        "select: 'sometimes' is not one of ['cycle', 'random']"),
    "seed-with-cycle.yaml": ("scenarios:\n  - {name: a, match: x, seed: 3, steps: [{think: b}]}\n",
                             "seed: a seed applies only to select: random"),
    "bad-regex.yaml": ("scenarios:\n  - {name: a, match: '(x', steps: [{think: b}]}\n",
                       "match: not a valid regular expression"),
    "unknown-variable.yaml": ("scenarios:\n  - {name: a, match: '(?P<city>x)', steps: [{think: '{town}'}]}\n",
                              "{town} is neither a named group of match (city) nor content"),
    "fail-not-last.yaml": ("scenarios:\n  - {name: a, match: x, steps: [{fail: boom}, {think: b}]}\n",
                           "steps[0]: fail must be the last step"),
    "duplicate-name.yaml": ("scenarios:\n  - {name: a, match: x, steps: [{think: b}]}\n"
                            "  - {name: a, match: y, steps: [{think: b}]}\n", "scenarios[1] (a): the name is used"),
    "no-scenarios.yaml": ("scenarios: []\n", "scenarios: [] should be non-empty"),
    "not-a-mapping.yaml": ("- just a list\n", "top level: ['just a list'] is not of type 'object'"),
    "bad-yaml.yaml": ("scenarios:\n  - name: a\n   match: x\n", "not valid YAML at line 3"),
    "bad-json.json": ('{"scenarios": [}', "not valid JSON"),
}


def _run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reference_backend", "--port", "0", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_scenario_file_exits_2_with_one_message_naming_the_file_and_the_problem(tmp_path, name):
    text, problem = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = _run_cli("--scenarios", str(path))
    assert result.returncode == 2 and result.stdout == ""
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.stderr
    assert str(path) in error_lines[0] and problem in error_lines[0], error_lines[0]


def test_a_missing_scenario_file_from_the_environment_exits_2_naming_the_variable(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    result = _run_cli(env=dict(os.environ, REFERENCE_BACKEND_SCENARIOS=str(missing)))
    assert result.returncode == 2
    assert "REFERENCE_BACKEND_SCENARIOS" in result.stderr and str(missing) in result.stderr
    assert "cannot read the file" in result.stderr


def test_the_shipped_file_is_valid_and_logged(servers):
    assert f"scenarios={SHIPPED} (4)" in servers["shipped"].stderr()  # it started: the file passed every check
