"""The ag-ui wire (``--wire ag-ui``): AG-UI events over the WebSocket, docs/protocol.md "AG-UI over a WebSocket".

Every event is also validated with the ``ag-ui-protocol`` package's own models.
"""

from __future__ import annotations

import json

import pytest
import requests
from ag_ui.core import Event
from pydantic import TypeAdapter
from websockets.exceptions import InvalidStatus

from backend_helpers import bearer, expired_token, make_token
from wire_helpers import agui_input, agui_run, agui_violations, open_ws, recv, recv_until

EVENT = TypeAdapter(Event)


def _nulls(value, path="") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


# --- handshake --------------------------------------------------------------------------

@pytest.mark.parametrize("way,selected", [
    ({"subprotocols": ["jwt-auth", "jwt.{t}"]}, "jwt-auth"),
    ({"subprotocols": ["jwt.{t}"]}, None),
    ({"headers": "bearer"}, None),
    ({"query": "{t}"}, None),
], ids=["jwt-auth-offered", "jwt-only", "header", "query"])
def test_token_transports_are_accepted_without_a_welcome(agui, way, selected):
    token = make_token("user_agui_hs")
    options = {key: ([p.format(t=token) for p in value] if key == "subprotocols" else
                     bearer(token) if key == "headers" else value.format(t=token)) for key, value in way.items()}
    with open_ws(agui, **options) as ws:
        assert ws.subprotocol == selected
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)  # no welcome: the server speaks only when a run is asked for
        events, run_input = agui_run(ws)
        assert events[0]["type"] == "RUN_STARTED"


@pytest.mark.parametrize("token", [None, "junk", expired_token(), make_token(secret="z" * 40),
                                   make_token(drop=("sub",))],
                         ids=["missing", "malformed", "expired", "wrong-signature", "no-sub"])
def test_bad_tokens_are_refused_with_403_at_the_upgrade(agui, token):
    with pytest.raises(InvalidStatus) as refused:
        with open_ws(agui, subprotocols=["jwt-auth", f"jwt.{token}"] if token else ()):
            pass
    assert refused.value.response.status_code == 403


# --- runs -------------------------------------------------------------------------------

@pytest.fixture
def session(agui):
    with open_ws(agui, subprotocols=["jwt-auth", f"jwt.{make_token('user_agui')}"]) as ws:
        yield ws


def test_a_run_streams_the_exact_ag_ui_events(session):
    events, run_input = agui_run(session, "What is the reference backend?")
    thread_id, run_id = run_input["threadId"], run_input["runId"]
    assert [e["type"] for e in events] == [
        "RUN_STARTED",
        "REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT", "REASONING_MESSAGE_END",
        "REASONING_END",
        "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT",
        "REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT", "REASONING_MESSAGE_END",
        "REASONING_END",
        "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]
    assert agui_violations(events, thread_id, run_id) == {}
    for event in events:
        EVENT.validate_python(event)  # the protocol package's own model of that event
        assert isinstance(event["timestamp"], int) and event["timestamp"] > 1_600_000_000_000  # milliseconds
        assert _nulls(event) == [], event  # absent optional fields are omitted, never null
    by_type = {}
    for event in events:
        by_type.setdefault(event["type"], []).append({k: v for k, v in event.items() if k != "timestamp"})
    assert by_type["RUN_STARTED"] == [{"type": "RUN_STARTED", "threadId": thread_id, "runId": run_id}]
    span, message = by_type["REASONING_START"][0]["messageId"], by_type["REASONING_MESSAGE_START"][0]["messageId"]
    assert span != message
    assert by_type["REASONING_MESSAGE_START"][0] == {"type": "REASONING_MESSAGE_START", "messageId": message,
                                                     "role": "reasoning"}
    assert by_type["REASONING_MESSAGE_CONTENT"][0]["delta"]
    assert by_type["REASONING_END"][0] == {"type": "REASONING_END", "messageId": span}
    start = by_type["TOOL_CALL_START"][0]
    call = start["toolCallId"]
    assert set(start) == {"type", "toolCallId", "toolCallName", "parentMessageId"}
    assert start["toolCallName"] == "search_docs"
    arguments = json.loads("".join(a["delta"] for a in by_type["TOOL_CALL_ARGS"]))
    assert arguments == {"query": "What is the reference backend?", "call": 1}
    assert all(a["toolCallId"] == call for a in by_type["TOOL_CALL_ARGS"])
    assert by_type["TOOL_CALL_END"] == [{"type": "TOOL_CALL_END", "toolCallId": call}]
    result = by_type["TOOL_CALL_RESULT"][0]
    assert set(result) == {"type", "messageId", "toolCallId", "content", "role"}
    assert result["toolCallId"] == call and result["role"] == "tool" and json.loads(result["content"])
    text_id = by_type["TEXT_MESSAGE_START"][0]["messageId"]
    assert by_type["TEXT_MESSAGE_START"][0] == {"type": "TEXT_MESSAGE_START", "messageId": text_id,
                                                "role": "assistant"}
    assert start["parentMessageId"] == text_id  # the tool call belongs to the assistant's message
    answer = "".join(c["delta"] for c in by_type["TEXT_MESSAGE_CONTENT"])
    assert by_type["TEXT_MESSAGE_END"] == [{"type": "TEXT_MESSAGE_END", "messageId": text_id}]
    assert by_type["RUN_FINISHED"] == [{"type": "RUN_FINISHED", "threadId": thread_id, "runId": run_id,
                                        "result": answer}]
    assert answer == "Reference answer to: What is the reference backend?"


def test_the_last_user_message_is_the_question_and_text_parts_count(session):
    run_input = agui_input()
    run_input["messages"] = [
        {"id": "1", "role": "user", "content": "first question"},
        {"id": "2", "role": "assistant", "content": "first answer"},
        {"id": "3", "role": "user", "content": [{"type": "text", "text": "second "}, {"type": "text", "text": "one"}]},
    ]
    session.send(json.dumps(run_input))
    events = recv_until(session, lambda f: f["type"] == "RUN_FINISHED")
    assert events[-1]["result"] == "Reference answer to: second one"


def test_two_inputs_are_two_runs_in_flight(session):
    inputs = [agui_input(f"question {i}") for i in range(2)]
    for run_input in inputs:
        session.send(json.dumps(run_input))
    finished, events = set(), []
    while len(finished) < 2:
        event = recv(session)
        events.append(event)
        if event["type"] == "RUN_FINISHED":
            finished.add(event["runId"])
    assert finished == {i["runId"] for i in inputs}
    starts = [i for i, e in enumerate(events) if e["type"] == "RUN_STARTED"]
    assert len(starts) == 2 and starts[1] < events.index(next(e for e in events if e["type"] == "RUN_FINISHED"))


@pytest.mark.parametrize("frame", [
    "this is not json {",
    b"\x00\x01binary",
    "[1, 2]",
    json.dumps({"type": "ping"}),
    json.dumps({"threadId": "t", "runId": "r"}),
    json.dumps({"threadId": "t", "runId": "r", "messages": [{"id": "1", "role": "assistant", "content": "x"}]}),
    json.dumps({"threadId": "t", "runId": "r", "messages": [{"id": "1", "role": "user"}]}),
], ids=["not-json", "binary", "array", "ping", "no-messages", "no-user-message", "no-content"])
def test_a_frame_that_is_not_a_run_input_gets_run_error_and_the_connection_stays_open(session, frame):
    session.send(frame)
    error = recv(session)
    assert {k: v for k, v in error.items() if k not in ("message", "timestamp")} == {
        "type": "RUN_ERROR", "code": "INVALID_INPUT"}
    assert error["message"] and isinstance(error["timestamp"], int)
    EVENT.validate_python(error)
    events, run_input = agui_run(session)
    assert agui_violations(events, run_input["threadId"], run_input["runId"]) == {}


def test_other_users_never_see_a_run(agui):
    with open_ws(agui, headers=bearer(make_token("user_a_alice"))) as alice, \
            open_ws(agui, headers=bearer(make_token("user_a_bob"))) as bob:
        agui_run(bob, "bob's question")
        alice.send("flush")
        assert recv(alice)["type"] == "RUN_ERROR"  # the answer to Alice's own frame, nothing before it


def test_http_endpoints_are_the_same_as_on_the_default_wire(agui):
    headers = bearer(make_token("user_agui_http"))
    for path in ("/health", "/api/health", "/auth/health"):
        assert requests.get(agui.url + path, headers=headers, timeout=10).json()["status"] == "healthy"
    services = requests.get(agui.url + "/api/discovery/services", headers=headers, timeout=10).json()["services"]
    assert services["websocket"]["url"] == agui.ws_url and services["websocket"]["wire"] == "ag-ui"
