"""Dialect files (``agentkit.wire.dialect``): every shipped dialect loads and passes
``resources/schemas/dialect.schema.json``; a broken file names every problem at once;
``extends`` merges; real frames classify into the roles the dialect promises."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from agentkit.wire import dialect as dialects
from agentkit.wire.dialect import DIALECT_SCHEMA, DialectError, check, known_dialects
from rules_helpers import LANGGRAPH_OK, ROOT, frame, load, transcript

SHIPPED = ["ag-ui", "default", "langgraph", "netra"]


def raw(name: str) -> dict:
    return json.loads((ROOT / "resources" / "dialects" / f"{name}.json").read_text(encoding="utf-8"))


def write(tmp_path, name: str, content) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=1), encoding="utf-8")
    return str(path)


def load_error(path: str) -> str:
    with pytest.raises(DialectError) as err:
        dialects.load(path)
    return str(err.value)


# --- what ships --------------------------------------------------------------------------
def test_the_shipped_dialects_are_the_known_ones():
    assert set(SHIPPED) <= set(known_dialects())


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_dialect_loads_and_passes_its_schema(name):
    d = load(name)
    assert d.name == name
    schema = json.loads(DIALECT_SCHEMA.read_text(encoding="utf-8"))
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(raw(name))]
    assert errors == []
    assert check(raw(name), ROOT / "resources" / "dialects" / f"{name}.json") == []


@pytest.mark.parametrize("file", sorted((ROOT / "resources" / "schemas").glob("*/*.json")), ids=lambda p: p.parent.name + "/" + p.name)
def test_every_shipped_event_schema_is_a_valid_json_schema(file):
    # Loading a built-in dialect skips this meta-schema check to save start-up time; it is made here.
    Draft202012Validator.check_schema(json.loads(file.read_text(encoding="utf-8")))


def test_the_dialect_schema_is_a_valid_json_schema():
    schema = json.loads(DIALECT_SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")


# --- broken files: every problem named at once ---------------------------------------------
def test_schema_problems_are_all_named_at_once(tmp_path):
    bad = raw("default")
    bad["connect"]["auth"] = "subprotocol"                     # a string where a list belongs
    bad["welcome"]["user_id"] = "data.user_id"                 # a string where a list of paths belongs
    bad["welcome"]["presence"] = 3                             # wrong type
    bad["events"]["binary_json"] = "yes"                       # wrong type
    bad["events"]["roles"][0]["role"] = "begun"                # unknown role
    del bad["rules"]["set"]                                    # missing required key
    text = load_error(write(tmp_path, "many", bad))
    assert "many.json" in text and "6 problems" in text, text
    for where in ("connect/auth", "welcome/user_id", "welcome/presence", "events/binary_json", "events/roles/0/role",
                  "rules"):
        assert f"- {where}" in text, f"{where} not named in:\n{text}"
    assert "'begun'" in text and "'set' is a required property" in text


def test_a_missing_top_level_key_is_named(tmp_path):
    bad = raw("default")
    del bad["events"]
    text = load_error(write(tmp_path, "noevents", bad))
    assert "'events' is a required property" in text


def test_problems_past_the_schema_are_all_named_at_once(tmp_path):
    bad = raw("default")
    bad["schemas"]["by_type"]["agent_started"] = "no_such.schema.json"   # a schema file that does not exist
    bad["run"]["start"]["payload"]["mood"] = "{mood}"                      # unknown placeholder
    bad["connect"]["url"] = "{ws_url}?tenant={tenant}"                     # unknown placeholder
    bad["events"]["tool_call_key"] = "call_ref"                            # not one of events/fields
    bad["rules"]["required_roles"] = ["started", "tool_error", "completed"]  # a role no matcher gives
    text = load_error(write(tmp_path, "semantic", bad))
    assert "5 problems" in text, text
    for part in ("no_such.schema.json", "run/start", "'mood'", "connect/url", "'tenant'", "events/tool_call_key",
                 "'call_ref'", "rules/required_roles", "'tool_error'"):
        assert part in text, f"{part} not named in:\n{text}"


def test_schema_and_later_problems_are_named_together(tmp_path):
    bad = raw("default")
    bad["welcome"]["presence"] = "maybe"                                   # the schema names this
    bad["schemas"]["by_type"]["agent_started"] = "no_such.schema.json"   # only the later check names these
    bad["run"]["start"]["payload"]["mood"] = "{mood}"
    text = load_error(write(tmp_path, "mixed", bad))
    for part in ("welcome/presence", "no_such.schema.json", "'mood'"):
        assert part in text, f"{part} not named in (every problem at once):\n{text}"


def test_a_schema_folder_that_does_not_exist_is_named(tmp_path):
    bad = raw("default")
    bad["schemas"]["dir"] = "nowhere"
    text = load_error(write(tmp_path, "nodir", bad))
    assert "schemas/dir" in text and "'nowhere'" in text


def test_a_schema_file_that_is_not_a_json_schema_is_named(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "bad.schema.json").write_text('{"type": 12}', encoding="utf-8")
    bad = raw("default")
    bad["schemas"] = {"dir": "mine", "by_type": {"agent_started": "bad.schema.json"}}
    text = load_error(write(tmp_path, "badschema", bad))
    assert "bad.schema.json" in text and "not a valid JSON Schema" in text


def test_schemas_next_to_the_dialect_file_are_found(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "any.schema.json").write_text('{"type": "object"}', encoding="utf-8")
    good = raw("default")
    good["name"] = "local-schemas"
    good["schemas"] = {"dir": "mine", "by_type": {"*": "any.schema.json"}}
    assert dialects.load(write(tmp_path, "local", good)).name == "local-schemas"


def test_an_empty_schemas_object_is_rejected(tmp_path):
    bad = raw("default")
    bad["schemas"] = {}
    text = load_error(write(tmp_path, "emptyschemas", bad))
    assert "schemas" in text


def test_schemas_switched_off_explicitly_is_accepted(tmp_path):
    good = raw("default")
    good["name"] = "no-schemas"
    good["schemas"] = False
    d = dialects.load(write(tmp_path, "noschemas", good))
    assert d.schemas is False


def test_subprotocol_auth_without_a_token_subprotocol_is_named(tmp_path):
    bad = raw("default")
    bad["connect"]["subprotocols"] = ["jwt-auth"]
    text = load_error(write(tmp_path, "notoken", bad))
    assert "connect/subprotocols" in text and "{token}" in text


def test_a_file_that_is_not_json_is_named_with_its_line(tmp_path):
    path = write(tmp_path, "broken", '{\n  "name": "broken",\n  "connect": {,\n}')
    text = load_error(path)
    assert "broken.json" in text and "not valid JSON" in text and "line 3" in text


def test_a_file_that_is_not_an_object_is_named(tmp_path):
    text = load_error(write(tmp_path, "alist", "[1, 2]"))
    assert "alist.json" in text and "JSON object" in text


def test_an_unknown_dialect_name_lists_the_known_ones():
    text = load_error("no-such-dialect")
    for name in SHIPPED:
        assert name in text


# --- extends -----------------------------------------------------------------------------
def test_extends_merges_objects_and_replaces_the_rest(tmp_path):
    child = {"extends": "default", "name": "child",
             "welcome": {"identifies": "none"},
             "connect": {"auth": ["bearer"], "refusal": {"http_status": [401, 403]}},
             "rules": {"thinking": "optional"}}
    d = dialects.load(write(tmp_path, "child", child))
    base = raw("default")
    assert d.name == "child"
    assert "description" not in d.spec                         # not inherited: it described the base
    assert d.welcome_identifies == "none"
    assert d.spec["welcome"]["match"] == base["welcome"]["match"]   # siblings kept
    assert d.spec["connect"]["auth"] == ["bearer"]                   # lists replaced, not merged
    assert d.spec["connect"]["subprotocols"] == base["connect"]["subprotocols"]
    assert d.spec["connect"]["refusal"]["http_status"] == [401, 403]
    assert not d.thinking_required and d.rule_set == "protocol"
    assert d.names("started") == ["agent_started"]


def test_an_extends_chain_resolves_relative_to_each_file(tmp_path):
    write(tmp_path, "middle", {"extends": "default", "name": "middle", "rules": {"thinking": "optional"}})
    d = dialects.load(write(tmp_path, "leaf", {"extends": "middle.json", "name": "leaf",
                                               "welcome": {"identifies": "prefix"}}))
    assert d.name == "leaf" and not d.thinking_required and d.welcome_identifies == "prefix"
    assert d.spec["schemas"] == raw("default")["schemas"]


def test_an_extends_cycle_is_named_with_its_chain(tmp_path):
    write(tmp_path, "a", {"extends": "b.json", "name": "a"})
    write(tmp_path, "b", {"extends": "a.json", "name": "b"})
    text = load_error(str(tmp_path / "a.json"))
    assert "extends itself" in text and "a.json" in text and "b.json" in text


def test_a_dialect_extending_itself_is_named(tmp_path):
    text = load_error(write(tmp_path, "selfish", {"extends": "selfish.json", "name": "selfish"}))
    assert "extends itself" in text


def test_extending_a_missing_dialect_is_named(tmp_path):
    text = load_error(write(tmp_path, "orphan", {"extends": "no-such-base", "name": "orphan"}))
    assert "no-such-base" in text


def test_a_child_that_breaks_its_base_is_checked_after_merging(tmp_path):
    text = load_error(write(tmp_path, "breaker", {"extends": "default", "name": "breaker",
                                                  "welcome": {"presence": "sometimes"}}))
    assert "welcome/presence" in text and "breaker.json" in text


# --- classification of real frames ---------------------------------------------------------
@pytest.mark.parametrize("path, tool", [(LANGGRAPH_OK[0], ("add", "call_1")),
                                        (LANGGRAPH_OK[1], ("get_weather", "call_64b5a2669ed2"))],
                         ids=["shared-ok-min", "interop-run"])
def test_langgraph_frames_classify_on_the_root_namespace_only(path, tool):
    lg = load("langgraph")
    received = [frame(i, line["raw"], lg) for i, line in enumerate(
        (line for line in transcript(path) if line["dir"] == "recv"), start=1)]
    roles = [e.role for e in received if e.role is not None]
    assert roles[0] == "started" and roles[-1] == "completed"
    assert roles.count("started") == 1 and roles.count("completed") == 1
    assert {"thinking", "tool_executing", "tool_completed", "message_start", "answer"} <= set(roles)
    for e in received:
        m = e.message
        root = m.get("type") == "event" and m["params"]["namespace"] == []
        if not root:
            where = m.get("params", {}).get("namespace")
            assert e.role is None, f"#{e.seq} {e.type} in namespace {where} has role {e.role}"
        elif m.get("method") in ("lifecycle", "messages", "tools"):
            assert e.role is not None, f"#{e.seq} {e.type} on the root namespace has no role"
    replies = [e for e in received if e.message.get("type") == "success"]
    assert replies and all(e.control == "reply" and e.role is None for e in replies)
    started = next(e for e in received if e.role == "started")
    assert started.type == "lifecycle.running"
    executing = next(e for e in received if e.role == "tool_executing")
    assert (executing.tool_name, executing.tool_key) == tool


NETRA_FRAMES = [
    ({"type": "connection_established", "data": {"mode": "main", "user_id": "abcdefgh...", "connection_id": "ws_1",
                                                 "golden_path_events": ["agent_started"],
                                                 "timestamp": "2026-01-05T10:00:00Z"}, "timestamp": 1767607200.1},
     None, "welcome"),
    ({"type": "ping"}, None, "heartbeat"),
    ({"type": "pong"}, None, "pong"),
    ({"type": "error_message", "error_code": "INVALID_JSON", "error_message": "bad", "timestamp": 1.0}, None, "error"),
    ({"type": "ack", "received_type": "definitely_not_a_message_type"}, None, "ack"),
    ({"type": "agent_started", "run_id": "r1", "thread_id": "t1", "request_id": "q", "user_id": "u",
      "timestamp": "2026-01-05T10:00:00Z", "agent_name": "a", "task_description": "t"}, "started", None),
    ({"type": "agent_thinking", "run_id": "r1", "reasoning": "hm", "step_number": 1}, "thinking", None),
    ({"type": "tool_executing", "run_id": "r1", "tool_name": "s", "tool_args": {}, "execution_id": "x1"},
     "tool_executing", None),
    ({"type": "tool_completed", "run_id": "r1", "tool_name": "s", "results": {}, "execution_id": "x1",
      "execution_time": 3, "success": True}, "tool_completed", None),
    ({"type": "agent_completed", "run_id": "r1", "status": "completed", "final_response": "ok"}, "completed", None),
    ({"type": "agent_error", "run_id": "r1", "error": "boom"}, "error", None),
]


@pytest.mark.parametrize("message, role, control", NETRA_FRAMES, ids=[m[0]["type"] for m in NETRA_FRAMES])
def test_netra_frames_from_the_variants_table_classify(message, role, control):
    e = frame(1, message, load("netra"))
    assert (e.role, e.control) == (role, control)


def test_netra_reads_flat_fields():
    netra = load("netra")
    e = frame(1, {"type": "tool_completed", "run_id": "r1", "thread_id": "t1", "user_id": "u-1", "tool_name": "search",
                  "execution_id": "x1", "results": {"n": 2}, "execution_time": 3,
                  "timestamp": "2026-01-05T10:00:00Z"}, netra)
    assert (e.run_id, e.thread_id, e.user_id, e.tool_name, e.tool_key) == ("r1", "t1", "u-1", "search", "x1")
    assert e.field("result") == {"n": 2}
    assert e.timestamp == pytest.approx(1767607200.0)


def test_netra_refusal_frame_is_recognised():
    netra = load("netra")
    auth = {"type": "error_message", "error_code": "AUTH_FAILED", "error_message": "Authentication failed",
            "details": {}, "timestamp": 1767607200.2}
    assert netra.is_refusal_frame(auth)
    assert not netra.is_refusal_frame(dict(auth, error_code="INVALID_JSON"))


# --- names for people ----------------------------------------------------------------------
@pytest.mark.parametrize("name, role, expected", [
    ("default", "started", ["agent_started"]),
    ("default", "completed", ["agent_completed"]),
    ("netra", "tool_executing", ["tool_executing"]),
    ("ag-ui", "started", ["RUN_STARTED"]),
    ("ag-ui", "answer", ["TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CHUNK"]),
    ("ag-ui", "thinking", ["REASONING_*", "THINKING_*"]),
    ("langgraph", "started", ["lifecycle.running"]),
    ("langgraph", "completed", ["lifecycle.completed", "lifecycle.interrupted"]),
    ("langgraph", "tool_error", ["tools.tool-error"]),
])
def test_names_of_a_role_are_readable_wire_names(name, role, expected):
    assert load(name).names(role) == expected


def test_label_joins_at_most_two_names():
    assert load("ag-ui").label("answer") == "TEXT_MESSAGE_CONTENT/TEXT_MESSAGE_CHUNK"
    assert load("default").label("started") == "agent_started"
    assert load("default").label("tool_error") == "tool_error"  # a role the dialect does not map: its own name


def test_loading_twice_gives_the_same_checked_dialect():
    assert dialects.load("netra") is dialects.load("netra")
