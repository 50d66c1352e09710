"""The netra wire (``--wire netra``): the "Variants: the netra wire" section of docs/protocol.md, row by row."""

from __future__ import annotations

import json
import time

import jwt
import pytest
import requests

from backend_helpers import JWT_SECRET, SIMULATION_KEY, bearer, expired_token, make_token
from wire_helpers import (
    b64url,
    closed_with,
    iso_seconds,
    netra_message,
    netra_run,
    netra_violations,
    new_ids,
    open_ws,
    recv,
    recv_until,
)

GOLDEN_PATH = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
IDS = {"type", "run_id", "thread_id", "request_id", "user_id", "timestamp"}


def _welcome_ok(welcome: dict, user: str) -> None:
    assert welcome["type"] == "connection_established"
    assert set(welcome) == {"type", "data", "timestamp"} and isinstance(welcome["timestamp"], float)
    data = welcome["data"]
    assert set(data) == {"mode", "user_id", "connection_id", "golden_path_events", "timestamp"}
    assert data["mode"] == "main"
    assert data["user_id"] == user[:8] + "..."  # truncated: a prefix of the user, not the user
    assert data["connection_id"].startswith("ws_")
    assert data["golden_path_events"] == GOLDEN_PATH
    assert abs(iso_seconds(data["timestamp"]) - time.time()) < 60


# --- handshake --------------------------------------------------------------------------

TOKEN_WAYS = {
    "jwt-base64url": lambda t: {"subprotocols": [f"jwt.{b64url(t)}"]},
    "jwt-raw": lambda t: {"subprotocols": [f"jwt.{t}"]},
    "jwt-auth-dot": lambda t: {"subprotocols": [f"jwt-auth.{t}"]},
    "bearer-dot": lambda t: {"subprotocols": [f"bearer.{t}"]},
    "header": lambda t: {"headers": bearer(t)},
    "query": lambda t: {"query": t},
}


@pytest.mark.parametrize("way", TOKEN_WAYS)
def test_every_token_transport_is_accepted_and_the_token_subprotocol_is_selected(netra, way):
    user = "user_netra_handshake"
    options = TOKEN_WAYS[way](make_token(user))
    with open_ws(netra, **options) as ws:
        offered = options.get("subprotocols")
        assert ws.subprotocol == (offered[0] if offered else None)
        _welcome_ok(recv(ws), user)


def test_jwt_auth_is_selected_when_the_token_comes_in_the_header(netra):
    with open_ws(netra, subprotocols=["jwt-auth"], headers=bearer(make_token("user_hdr"))) as ws:
        assert ws.subprotocol == "jwt-auth"
        _welcome_ok(recv(ws), "user_hdr")


REFUSED = {
    "missing": None,
    "malformed": "definitely-not-a-jwt",
    "expired": expired_token(),
    "wrong-signature": make_token(secret="another-secret-that-is-long-enough-32b"),
    "refresh-type": make_token(type="refresh"),
}


@pytest.mark.parametrize("way", ["jwt-base64url", "header"])
@pytest.mark.parametrize("case", REFUSED)
def test_bad_tokens_get_101_then_auth_failed_then_close_1008(netra, case, way):
    token = REFUSED[case]
    options = TOKEN_WAYS[way](token) if token else {}
    with open_ws(netra, **options) as ws:  # the upgrade itself succeeds
        error = recv(ws)
        assert error["type"] == "error_message" and error["error_code"] == "AUTH_FAILED"
        assert set(error) == {"type", "error_code", "error_message", "details", "timestamp"}
        assert error["details"] == {} and isinstance(error["timestamp"], float) and error["error_message"]
        assert closed_with(ws) == (1008, "Authentication failed")  # and no welcome before it


# --- messages ---------------------------------------------------------------------------

@pytest.fixture
def session(netra):
    user = "user_netra_session"
    with open_ws(netra, subprotocols=[f"jwt.{b64url(make_token(user))}"]) as ws:
        _welcome_ok(recv(ws), user)
        yield ws, user


def test_a_run_has_flat_events_with_the_exact_fields(session):
    ws, user = session
    events, thread_id, run_id = netra_run(ws, "What is the reference backend?")
    assert [e["type"] for e in events] == [
        "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_thinking", "agent_completed"]
    assert netra_violations(events, run_id, thread_id, user) == {}
    request_ids = {e["request_id"] for e in events}
    assert len(request_ids) == 1 and request_ids.pop()
    for event in events:
        assert "data" not in event
        assert abs(iso_seconds(event["timestamp"]) - time.time()) < 60  # ISO 8601 string
    started, think1, executing, completed_tool, think2, completed = events
    assert set(started) == IDS | {"agent_name", "task_description"}
    assert started["agent_name"] and started["task_description"] == "What is the reference backend?"
    assert set(think1) == IDS | {"reasoning", "step_number"}
    assert (think1["step_number"], think2["step_number"]) == (1, 2) and think1["reasoning"]
    assert set(executing) == IDS | {"tool_name", "tool_args", "parameters", "execution_id"}
    assert executing["tool_name"] == "search_docs" and executing["tool_args"] == executing["parameters"]
    assert set(completed_tool) == IDS | {"tool_name", "execution_id", "results", "execution_time", "success"}
    assert completed_tool["execution_id"] == executing["execution_id"] and completed_tool["success"] is True
    assert completed_tool["results"] and completed_tool["execution_time"] >= 0
    assert set(completed) == IDS | {"status", "final_response"}
    assert completed["status"] == "completed" and completed["final_response"]


@pytest.mark.parametrize("frame", [
    {"type": "user_message", "payload": {"content": "hi"}},
    {"type": "user_message", "payload": {"message": "hi"}},
    {"type": "user_message", "payload": {"text": "hi"}},
    {"type": "message", "content": "hi"},
    {"type": "chat_message", "content": "hi"},
], ids=["payload.content", "payload.message", "payload.text", "message", "chat_message"])
def test_every_message_form_starts_a_run_with_the_ids_it_carries(session, frame):
    ws, user = session
    thread_id, run_id = new_ids()
    target = frame.get("payload", frame)
    target.update(thread_id=thread_id, run_id=run_id)
    ws.send(json.dumps(frame))
    events = recv_until(ws, lambda f: f["type"] == "agent_completed")
    assert netra_violations(events, run_id, thread_id, user) == {}
    assert events[0]["task_description"] == "hi"


def test_ids_at_the_top_level_of_a_user_message_are_used_and_absent_ids_are_made(session):
    ws, user = session
    ws.send(json.dumps({"type": "user_message", "payload": {"content": "x"}, "thread_id": "thread_top",
                        "run_id": "run_top"}))
    events = recv_until(ws, lambda f: f["type"] == "agent_completed")
    assert netra_violations(events, "run_top", "thread_top", user) == {}
    ws.send(json.dumps({"type": "chat_message", "content": "no ids"}))
    events = recv_until(ws, lambda f: f["type"] == "agent_completed")
    assert events[0]["run_id"].startswith("run_") and events[0]["thread_id"].startswith("thread_")


def test_ping_is_answered_with_pong(session):
    ws, _ = session
    ws.send(json.dumps({"type": "ping"}))
    pong = recv(ws)
    assert pong["type"] == "pong" and isinstance(pong["timestamp"], float)


@pytest.mark.parametrize("kind", ["dance", "subscribe", None])
def test_unknown_types_are_acknowledged(session, kind):
    ws, _ = session
    ws.send(json.dumps({"type": kind} if kind else {"no_type": True}))
    assert recv(ws) == {"type": "ack", "received_type": kind}


@pytest.mark.parametrize("frame,code", [
    ("this is not json {", "INVALID_JSON"),
    (b"\x00\x01binary", "INVALID_JSON"),
    ("[1, 2]", "INVALID_MESSAGE"),
    (json.dumps({"type": "user_message", "payload": {}}), "INVALID_MESSAGE"),
    (json.dumps({"type": "chat_message"}), "INVALID_MESSAGE"),
    (json.dumps({"type": "message", "content": "x", "thread_id": 5}), "INVALID_MESSAGE"),
])
def test_bad_frames_get_an_error_message_and_the_connection_stays_usable(session, frame, code):
    ws, user = session
    ws.send(frame)
    error = recv(ws)
    assert error["type"] == "error_message" and error["error_code"] == code and error["error_message"]
    events, thread_id, run_id = netra_run(ws)
    assert netra_violations(events, run_id, thread_id, user) == {}


def test_other_users_never_see_a_run(netra):
    with open_ws(netra, headers=bearer(make_token("user_n_alice"))) as alice, \
            open_ws(netra, headers=bearer(make_token("user_n_bob"))) as bob:
        recv(alice), recv(bob)
        netra_run(bob, "bob's question")
        alice.send(json.dumps({"type": "ping"}))
        assert recv(alice)["type"] == "pong"  # nothing of Bob's came before it


# --- the e2e auth service ---------------------------------------------------------------

def test_test_auth_takes_the_bypass_key_and_adds_refresh_token_and_user(netra):
    response = requests.post(netra.url + "/auth/e2e/test-auth", headers={"X-E2E-Bypass-Key": SIMULATION_KEY},
                             json={"email": "qa@example.test", "name": "QA"}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    access = jwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"])
    refresh = jwt.decode(body["refresh_token"], JWT_SECRET, algorithms=["HS256"])
    assert access["type"] == "access" and refresh["type"] == "refresh" and refresh["sub"] == access["sub"]
    assert body["user"] == {"id": access["sub"], "email": "qa@example.test", "name": "QA"}
    with open_ws(netra, subprotocols=[f"jwt.{b64url(body['access_token'])}"]) as ws:
        _welcome_ok(recv(ws), access["sub"])
    with open_ws(netra, subprotocols=[f"jwt.{b64url(body['refresh_token'])}"]) as ws:
        assert recv(ws)["error_code"] == "AUTH_FAILED"  # a refresh token is not an access token


@pytest.mark.parametrize("headers", [{}, {"X-E2E-OAuth-Simulation-Key": SIMULATION_KEY},
                                     {"X-E2E-Bypass-Key": "wrong"}], ids=["none", "default-header", "wrong"])
def test_test_auth_without_the_bypass_key_is_401(netra, headers):
    response = requests.post(netra.url + "/auth/e2e/test-auth", headers=headers,
                             json={"email": "qa@example.test"}, timeout=10)
    assert response.status_code == 401


def test_http_endpoints_are_the_same_as_on_the_default_wire(netra):
    headers = bearer(make_token("user_netra_http"))
    for path in ("/health", "/api/health", "/auth/health"):
        assert requests.get(netra.url + path, headers=headers, timeout=10).json()["status"] == "healthy"
    services = requests.get(netra.url + "/api/discovery/services", headers=headers, timeout=10).json()["services"]
    assert services["websocket"]["url"] == netra.ws_url and services["websocket"]["wire"] == "netra"
    assert requests.get(netra.url + "/api/mcp/servers", timeout=10).status_code == 401


# --- heartbeat --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def heartbeat_server(start_server):
    """Pings every 0.2 s; runs take at least 1.2 s (8 gaps of 0.15 s), several pings long."""
    return start_server("--wire", "netra", "--heartbeat", "0.2", "--think-delay", "0.15", "--tools", "2")


def test_server_pings_during_a_run_and_an_answering_client_keeps_its_connection(heartbeat_server):
    user = "user_heartbeat_ok"
    with open_ws(heartbeat_server, headers=bearer(make_token(user))) as ws:
        recv(ws)
        thread_id, run_id = new_ids()
        ws.send(netra_message("long run", thread_id, run_id))
        frames = recv_until(ws, lambda f: f["type"] == "agent_completed", timeout=30, answer_pings=True)
        pings = [f for f in frames if f["type"] == "ping"]
        events = [f for f in frames if f["type"] != "ping"]
        assert pings and all(p == {"type": "ping"} for p in pings)
        first, last = frames.index(events[0]), frames.index(events[-1])
        assert any(first < frames.index(p) < last for p in pings), [f["type"] for f in frames]
        assert netra_violations(events, run_id, thread_id, user) == {}
        # Still open well after three intervals: answered pings never add up to a timeout.
        answered = len(pings)
        while answered < len(pings) + 4:
            frame = recv(ws)
            assert frame == {"type": "ping"}, frame
            ws.send(json.dumps({"type": "pong"}))
            answered += 1
        ws.send(json.dumps({"type": "ping"}))
        assert recv_until(ws, lambda f: f["type"] == "pong", answer_pings=True)[-1]["type"] == "pong"


def test_a_client_that_never_answers_is_closed_after_three_pings(heartbeat_server):
    with open_ws(heartbeat_server, headers=bearer(make_token("user_heartbeat_mute"))) as ws:
        assert recv(ws)["type"] == "connection_established"
        for _ in range(3):
            assert recv(ws) == {"type": "ping"}
        assert closed_with(ws) == (1008, "heartbeat timeout")


def test_default_heartbeat_is_25_seconds_and_0_turns_it_off(netra, start_server):
    assert "heartbeat=25s" in netra.stderr()
    assert "heartbeat=off" in start_server("--wire", "netra", "--heartbeat", "0").stderr()
