"""The /ws endpoint of the reference backend: handshake, welcome, ping, runs, errors, concurrency."""

from __future__ import annotations

import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from backend_helpers import (
    FAST_DELAY,
    assert_nothing_pending,
    connect,
    expired_token,
    make_token,
    open_session,
    read_run,
    recv_json,
    refusal_status,
    send_message,
    violated_rules,
)

# --- handshake ------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["subprotocol", "header", "query"])
def test_valid_token_is_accepted_and_welcomed_first(server, how):
    ws = connect(server, make_token("user_hs"), how)
    try:
        welcome = recv_json(ws)
        assert welcome["type"] == "system_message"
        assert welcome["data"]["event"] == "connection_established"
        assert welcome["data"]["user_id"] == "user_hs"
        assert welcome["data"]["connection_id"].startswith("ws_")
        assert ws.getsubprotocol() == ("jwt-auth" if how == "subprotocol" else None)
    finally:
        ws.close()


def test_connection_ids_are_unique(server):
    ids = set()
    for _ in range(3):
        ws, welcome = open_session(server, "user_ids")
        ids.add(welcome["data"]["connection_id"])
        ws.close()
    assert len(ids) == 3


REFUSED_TOKENS = {
    "missing": None,
    "malformed": "definitely-not-a-jwt",
    "expired": expired_token(),
    "wrong-signature": make_token(secret="another-secret-that-is-long-enough-32b"),
    "no-sub": make_token(drop=("sub",)),
    "no-exp": make_token(drop=("exp",)),
    "refresh-type": make_token(type="refresh"),
    "alg-none": "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4IiwiZXhwIjo0MTAyNDQ0ODAwfQ.",
}


REFUSAL_CASES = [("missing", "none")] + [
    (case, how) for case in REFUSED_TOKENS if case != "missing" for how in ("subprotocol", "header", "query")]


@pytest.mark.parametrize("case,how", REFUSAL_CASES, ids=[f"{c}-{h}" for c, h in REFUSAL_CASES])
def test_bad_tokens_are_refused_with_403_before_the_upgrade(server, case, how):
    assert refusal_status(server, REFUSED_TOKENS[case], how) == 403


# --- messages -------------------------------------------------------------------------

@pytest.fixture
def session(server):
    ws, welcome = open_session(server, "user_" + secrets.token_hex(3))
    yield ws, welcome["data"]["user_id"]
    ws.close()


def test_ping_answers_pong_with_unix_timestamp(session):
    ws, _ = session
    before = time.time()
    ws.send(json.dumps({"type": "ping"}))
    pong = recv_json(ws)
    assert pong["type"] == "pong"
    assert isinstance(pong["timestamp"], float) and before - 1 <= pong["timestamp"] <= time.time() + 1


def test_run_keeps_every_rule_and_the_exact_sequence(session):
    ws, user = session
    sent_at = time.time()
    thread_id, run_id = send_message(ws, "What is the reference backend?")
    events = read_run(ws)
    assert [e["type"] for e in events] == [
        "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_thinking", "agent_completed"]
    assert violated_rules(events, run_id, thread_id, user, events[0]["timestamp"] - sent_at) == {}
    for event in events:
        assert isinstance(event["timestamp"], float) and isinstance(event["data"], dict)
    data = {e["type"]: e["data"] for e in events}
    assert data["agent_started"]["agent_name"]
    assert data["tool_executing"]["tool_name"] == data["tool_completed"]["tool_name"] == "search_docs"
    assert isinstance(data["tool_executing"]["parameters"], dict)
    assert "result" in data["tool_completed"] and data["tool_completed"]["duration_ms"] >= 0
    assert data["agent_completed"]["result"]
    assert all(isinstance(e["data"]["thought"], str) for e in events if e["type"] == "agent_thinking")
    assert_nothing_pending(ws)


def test_server_makes_ids_when_absent(session):
    ws, user = session
    ws.send(json.dumps({"type": "user_message", "payload": {"content": "no ids"}}))
    events = read_run(ws)
    run_id, thread_id = events[0]["run_id"], events[0]["thread_id"]
    assert run_id.startswith("run_") and thread_id.startswith("thread_")
    assert violated_rules(events, run_id, thread_id, user) == {}


def test_compat_message_type_runs_with_top_level_content(session):
    ws, user = session
    ws.send(json.dumps({"type": "message", "content": "compat", "thread_id": "thread_compat"}))
    events = read_run(ws)
    assert violated_rules(events, events[0]["run_id"], "thread_compat", user) == {}


def test_several_runs_in_flight_on_one_connection(session):
    ws, user = session
    requests = [send_message(ws, f"question {i}") for i in range(4)]
    by_run: dict[str, list[dict]] = {run_id: [] for _, run_id in requests}
    done = set()
    while len(done) < len(requests):
        event = recv_json(ws)
        by_run[event["run_id"]].append(event)
        if event["type"] == "agent_completed":
            done.add(event["run_id"])
    for thread_id, run_id in requests:
        assert violated_rules(by_run[run_id], run_id, thread_id, user) == {}
        assert len(by_run[run_id]) == 6
    # The runs overlapped in time: the second started before the first completed.
    first_done = by_run[requests[0][1]][-1]["timestamp"]
    assert by_run[requests[1][1]][0]["timestamp"] < first_done
    assert_nothing_pending(ws)


@pytest.mark.parametrize("frame,code", [
    (json.dumps({"type": "dance"}), "unknown_message_type"),
    (json.dumps({"no_type": True}), "unknown_message_type"),
    ("this is not json {", "invalid_json"),
    (b"\x00\x01binary", "invalid_json"),
    (json.dumps({"type": "user_message", "payload": {}}), "invalid_message"),
    (json.dumps({"type": "user_message"}), "invalid_message"),
])
def test_bad_frames_get_an_error_frame_and_the_connection_stays_usable(session, frame, code):
    ws, user = session
    if isinstance(frame, bytes):
        ws.send_binary(frame)
    else:
        ws.send(frame)
    error = recv_json(ws)
    assert error["type"] == "error" and error["data"]["code"] == code
    thread_id, run_id = send_message(ws)
    assert violated_rules(read_run(ws), run_id, thread_id, user) == {}


# --- knobs: tool count and think delay ------------------------------------------------

def test_tool_count_and_think_delay_from_the_environment(start_server):
    delay = 0.05
    srv = start_server(env={"REFERENCE_BACKEND_TOOLS": "3", "REFERENCE_BACKEND_THINK_DELAY": str(delay)})
    ws, welcome = open_session(srv, "user_knobs")
    try:
        thread_id, run_id = send_message(ws)
        events = read_run(ws)
    finally:
        ws.close()
    types = [e["type"] for e in events]
    assert violated_rules(events, run_id, thread_id, "user_knobs") == {}
    assert types.count("tool_executing") == types.count("tool_completed") == 3
    assert types.count("agent_thinking") == 2 and len(events) == 4 + 2 * 3
    tools = [e["data"]["tool_name"] for e in events if e["type"] == "tool_executing"]
    assert len(set(tools)) == 3, tools
    gaps = [b["timestamp"] - a["timestamp"] for a, b in zip(events, events[1:])]
    assert min(gaps) >= delay * 0.9, gaps
    assert max(gaps) < delay + 0.5, gaps


def test_command_line_overrides_environment_and_zero_tools_is_allowed(start_server):
    srv = start_server("--tools", "0", "--think-delay", "0", env={"REFERENCE_BACKEND_TOOLS": "3"})
    ws, _ = open_session(srv, "user_zero")
    try:
        thread_id, run_id = send_message(ws)
        events = read_run(ws)
    finally:
        ws.close()
    assert [e["type"] for e in events] == ["agent_started", "agent_thinking", "agent_thinking", "agent_completed"]
    assert violated_rules(events, run_id, thread_id, "user_zero") == {}


def test_default_shared_server_think_delay_is_honoured(session):
    ws, _ = session
    send_message(ws)
    events = read_run(ws)
    gaps = [b["timestamp"] - a["timestamp"] for a, b in zip(events, events[1:])]
    assert min(gaps) >= FAST_DELAY * 0.9, gaps


# --- isolation under concurrency ------------------------------------------------------

def test_fifty_concurrent_users_see_only_their_own_runs(server):
    users = [f"user_many_{i:02d}" for i in range(50)]
    all_connected = threading.Barrier(len(users), timeout=20)

    def one_user(user: str) -> list[str]:
        problems = []
        ws, welcome = open_session(server, user)
        try:
            if welcome["data"]["user_id"] != user:
                problems.append(f"welcome for {welcome['data']['user_id']}")
            all_connected.wait()  # every run below happens while all 50 are connected
            requests = [send_message(ws, f"{user} q{i}") for i in range(2)]
            expected = {run_id: thread_id for thread_id, run_id in requests}
            by_run: dict[str, list[dict]] = {}
            done = 0
            while done < len(requests):
                event = recv_json(ws, 10)
                if event.get("user_id") != user or event.get("run_id") not in expected:
                    problems.append(f"foreign event {event}")
                    continue
                by_run.setdefault(event["run_id"], []).append(event)
                done += event["type"] == "agent_completed"
            for run_id, thread_id in expected.items():
                broken = violated_rules(by_run.get(run_id, []), run_id, thread_id, user)
                if broken:
                    problems.append(f"{run_id}: {broken}")
            all_connected.wait()  # nobody closes while others may still be receiving
            ws.send(json.dumps({"type": "ping"}))
            tail = recv_json(ws)
            if tail["type"] != "pong":
                problems.append(f"stray frame {tail}")
        finally:
            ws.close()
        return problems

    with ThreadPoolExecutor(len(users)) as pool:
        results = list(pool.map(one_user, users))
    problems = [p for r in results for p in r]
    assert problems == []
