"""Each fault mode of the reference backend breaks its one rule, and nothing else.

Every run is checked against all the rules (``violated_rules``): the fault's rule
must be the only one broken. The same checks pass on the fault-free server.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from backend_helpers import (
    FAST_DELAY,
    assert_nothing_pending,
    bearer,
    connect,
    expired_token,
    make_token,
    open_session,
    read_run,
    read_until_quiet,
    recv_json,
    refusal_status,
    send_message,
    violated_rules,
)

SLOW_FIRST = 2.3  # just over rule 6's 2 s, to keep the test short


@pytest.fixture(scope="module")
def fault_server(start_server):
    """Factory: one server per fault mode, started on first use and shared by the module."""
    servers = {}

    def get(fault: str):
        if fault not in servers:
            extra = ["--slow-first-delay", str(SLOW_FIRST)] if fault == "slow-first-event" else []
            servers[fault] = start_server("--think-delay", str(FAST_DELAY), "--fault", fault, *extra)
        return servers[fault]

    return get


def faulty_run(srv, user: str = "user_fault"):
    """One run on a fresh connection: (frames until quiet, close code, thread_id, run_id, first-event delay)."""
    ws, _ = open_session(srv, user)
    try:
        sent = time.time()
        thread_id, run_id = send_message(ws)
        frames, close_code = read_until_quiet(ws)
    finally:
        ws.close()
    delay = frames[0]["timestamp"] - sent if frames else None
    return frames, close_code, thread_id, run_id, delay


@pytest.mark.parametrize("fault,rule", [
    ("drop-tool-completed", 3),
    ("drop-agent-completed", 1),
    ("reorder", 3),
    ("completed-first", 1),
    ("wrong-run-id", 4),
    ("slow-first-event", 6),
    ("close-mid-run", 1),
])
def test_sequence_fault_breaks_only_its_rule(fault_server, fault, rule):
    frames, close_code, thread_id, run_id, delay = faulty_run(fault_server(fault))
    broken = violated_rules(frames, run_id, thread_id, "user_fault", delay)
    assert set(broken) == {rule}, broken
    types = [f["type"] for f in frames]
    if fault == "drop-tool-completed":
        assert "tool_completed" not in types and types[-1] == "agent_completed"
    elif fault == "drop-agent-completed":
        assert types == ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_thinking"]
    elif fault == "reorder":
        assert types.index("tool_completed") < types.index("tool_executing")
    elif fault == "completed-first":
        assert types[0] == "agent_completed" and types.count("agent_completed") == 1 and len(types) == 6
    elif fault == "wrong-run-id":
        assert {f["run_id"] for f in frames} != {run_id} and {f["thread_id"] for f in frames} == {thread_id}
    elif fault == "slow-first-event":
        assert delay >= 2.0 and len(types) == 6
    elif fault == "close-mid-run":
        assert types == ["agent_started", "agent_thinking"] and close_code == 1011
    if fault != "close-mid-run":
        assert close_code is None


def test_fault_free_server_passes_the_same_checks(server):
    frames, close_code, thread_id, run_id, delay = faulty_run(server)
    assert violated_rules(frames, run_id, thread_id, "user_fault", delay) == {}
    assert close_code is None and len(frames) == 6


def _leak_check(srv) -> tuple[list[dict], list[dict], str, str]:
    """Alice connects, then Bob runs; returns (Alice's frames, Bob's run, Bob's thread and run ids)."""
    alice, _ = open_session(srv, "user_alice")
    bob, _ = open_session(srv, "user_bob")
    try:
        thread_id, run_id = send_message(bob, "bob's secret question")
        bob_events = read_run(bob)
        # Leaked frames were written to Alice before Bob's last event; a ping flushes the order.
        alice.send(json.dumps({"type": "ping"}))
        alice_frames = []
        while True:
            frame = recv_json(alice)
            if frame["type"] == "pong":
                break
            alice_frames.append(frame)
    finally:
        alice.close()
        bob.close()
    return alice_frames, bob_events, thread_id, run_id


def test_leak_sends_a_run_to_another_users_connection(fault_server):
    alice_frames, bob_events, thread_id, run_id = _leak_check(fault_server("leak"))
    assert alice_frames, "Alice received none of Bob's events"
    assert {f["user_id"] for f in alice_frames} == {"user_bob"}
    assert [f["type"] for f in alice_frames] == [e["type"] for e in bob_events]
    assert violated_rules(bob_events, run_id, thread_id, "user_bob") == {}  # Bob's own run is intact


def test_no_leak_without_the_fault(server):
    alice_frames, bob_events, thread_id, run_id = _leak_check(server)
    assert alice_frames == []
    assert violated_rules(bob_events, run_id, thread_id, "user_bob") == {}


def test_accept_expired_accepts_expired_tokens_only(fault_server):
    srv = fault_server("accept-expired")
    token = expired_token("user_late")
    ws = connect(srv, token)
    try:
        assert recv_json(ws)["data"]["event"] == "connection_established"
        thread_id, run_id = send_message(ws)
        assert violated_rules(read_run(ws), run_id, thread_id, "user_late") == {}
    finally:
        ws.close()
    assert requests.get(srv.url + "/api/health", headers=bearer(token), timeout=5).status_code == 200
    # Every other refusal still holds.
    for bad in (None, "garbage", make_token(secret="y" * 40, lifetime=-60), make_token(drop=("sub",), lifetime=-60)):
        assert refusal_status(srv, bad, "subprotocol" if bad else "none") == 403
    assert requests.get(srv.url + "/api/health", timeout=5).status_code == 401


def test_expired_tokens_are_refused_without_the_fault(server):
    assert refusal_status(server, expired_token()) == 403
    assert requests.get(server.url + "/api/health", headers=bearer(expired_token()), timeout=5).status_code == 401


def test_no_connection_established_skips_only_the_welcome(fault_server):
    srv = fault_server("no-connection-established")
    ws = connect(srv, make_token("user_quiet"))
    try:
        ws.send(json.dumps({"type": "ping"}))
        assert recv_json(ws)["type"] == "pong"  # the welcome would have come first
        thread_id, run_id = send_message(ws)
        assert violated_rules(read_run(ws), run_id, thread_id, "user_quiet") == {}
        assert_nothing_pending(ws)
    finally:
        ws.close()
    assert refusal_status(srv, None, "none") == 403


def test_health_500_breaks_only_health(fault_server):
    srv = fault_server("health-500")
    headers = bearer(make_token("user_health"))
    for path in ("/health", "/api/health"):
        response = requests.get(srv.url + path, headers=headers, timeout=5)
        assert response.status_code == 500 and response.json()["status"] == "unhealthy"
    for path in ("/api/discovery/services", "/api/mcp/config", "/api/mcp/servers", "/auth/health"):
        assert requests.get(srv.url + path, headers=headers, timeout=5).status_code == 200
    ws, _ = open_session(srv, "user_health")
    try:
        thread_id, run_id = send_message(ws)
        assert violated_rules(read_run(ws), run_id, thread_id, "user_health") == {}
    finally:
        ws.close()


def test_faults_combine_from_the_environment(start_server):
    srv = start_server("--think-delay", str(FAST_DELAY),
                       env={"REFERENCE_BACKEND_FAULTS": "wrong-run-id, drop-tool-completed"})
    frames, _, thread_id, run_id, delay = faulty_run(srv)
    assert set(violated_rules(frames, run_id, thread_id, "user_fault", delay)) == {3, 4}
