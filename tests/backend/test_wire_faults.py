"""Every fault mode keeps its meaning on the netra and ag-ui wires: it breaks its one rule there too.

(The default wire's faults are in test_backend_faults.py.) Each run is checked against
all of its wire's rules (``netra_violations``, ``agui_violations``): the fault's rule must
be the only one broken, and the fault-free server of each wire passes the same checks.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from backend_helpers import FAST_DELAY, bearer, expired_token, make_token
from wire_helpers import (
    agui_input,
    agui_run,
    agui_violations,
    b64url,
    netra_message,
    netra_run,
    netra_violations,
    new_ids,
    open_ws,
    read_until_quiet,
    recv,
    recv_until,
)

FAULTS = ["drop-tool-completed", "drop-agent-completed", "reorder", "completed-first", "leak", "wrong-run-id",
          "accept-expired", "slow-first-event", "close-mid-run", "no-connection-established", "health-500"]
SLOW_FIRST = 2.3  # just over rule 6's 2 s, to keep the test short


@pytest.fixture(scope="module")
def fault_server(start_server, netra, agui):
    """(wire, fault) -> a server (fault None: the wire's shared fault-free one); the first use
    of a wire starts all its fault servers at once, so their start-ups overlap."""
    servers = {("netra", None): netra, ("ag-ui", None): agui}

    def get(wire: str, fault: str | None):
        if (wire, fault) not in servers:
            for name in FAULTS:
                args = ["--wire", wire, "--think-delay", str(FAST_DELAY), "--fault", name]
                if name == "slow-first-event":
                    args += ["--slow-first-delay", str(SLOW_FIRST)]
                servers[(wire, name)] = start_server(*args, ready=False)
        server = servers[(wire, fault)]
        return server if server.url else server.wait_ready(timeout=90)

    return get


def netra_session(server, user: str):
    return open_ws(server, subprotocols=[f"jwt.{b64url(make_token(user))}"])


def agui_session(server, user: str, token: str | None = None):
    return open_ws(server, subprotocols=["jwt-auth", f"jwt.{token or make_token(user)}"])


# --- sequence faults --------------------------------------------------------------------

NETRA_RULE = {"drop-tool-completed": 3, "drop-agent-completed": 1, "reorder": 3, "completed-first": 1,
              "wrong-run-id": 4, "close-mid-run": 1, "slow-first-event": None}


@pytest.mark.parametrize("fault", [*NETRA_RULE, None])
def test_netra_sequence_fault_breaks_only_its_rule(fault_server, fault):
    user = "user_netra_fault"
    with netra_session(fault_server("netra", fault), user) as ws:
        assert recv(ws)["type"] == "connection_established"
        thread_id, run_id = new_ids()
        sent = time.monotonic()
        ws.send(netra_message("hello", thread_id, run_id))
        first = recv(ws, timeout=30)
        first_delay = time.monotonic() - sent
        frames, closed = read_until_quiet(ws)
        frames.insert(0, first)
    broken = netra_violations(frames, run_id, thread_id, user)
    rule = NETRA_RULE.get(fault)
    assert set(broken) == ({rule} if rule else set()), broken
    types = [f["type"] for f in frames]
    full = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_thinking", "agent_completed"]
    if fault is None:
        assert types == full
    elif fault == "drop-tool-completed":
        assert types == [t for t in full if t != "tool_completed"]
    elif fault == "drop-agent-completed":
        assert types == full[:-1]
    elif fault == "reorder":
        assert types.index("tool_completed") < types.index("tool_executing") and len(types) == 6
    elif fault == "completed-first":
        assert types == ["agent_completed"] + full[:-1]
    elif fault == "wrong-run-id":
        assert len({f["run_id"] for f in frames}) == 1 and frames[0]["run_id"] != run_id
        assert {f["thread_id"] for f in frames} == {thread_id}
    elif fault == "close-mid-run":
        assert types == full[:2] and closed == (1011, "")
    elif fault == "slow-first-event":
        assert types == full and first_delay >= 2.0
    if fault != "close-mid-run":
        assert closed is None


AGUI_FULL = ["RUN_STARTED", *["REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT",
                              "REASONING_MESSAGE_END", "REASONING_END"],
             "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT",
             *["REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT",
               "REASONING_MESSAGE_END", "REASONING_END"],
             "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "RUN_FINISHED"]
AGUI_RULE = {"drop-tool-completed": "tools", "drop-agent-completed": "lifecycle", "reorder": "tools",
             "completed-first": "lifecycle", "wrong-run-id": "ids", "close-mid-run": "lifecycle",
             "slow-first-event": None}


@pytest.mark.parametrize("fault", [*AGUI_RULE, None])
def test_agui_sequence_fault_breaks_only_its_rule(fault_server, fault):
    with agui_session(fault_server("ag-ui", fault), "user_agui_fault") as ws:
        run_input = agui_input()
        sent = time.monotonic()
        ws.send(json.dumps(run_input))
        first = recv(ws, timeout=30)
        first_delay = time.monotonic() - sent
        frames, closed = read_until_quiet(ws)
        frames.insert(0, first)
    thread_id, run_id = run_input["threadId"], run_input["runId"]
    broken = agui_violations(frames, thread_id, run_id)
    rule = AGUI_RULE.get(fault)
    assert set(broken) == ({rule} if rule else set()), broken
    types = [f["type"] for f in frames]
    if fault in (None, "slow-first-event"):
        assert types == AGUI_FULL
        assert fault is None or first_delay >= 2.0
    elif fault == "drop-tool-completed":
        assert types == [t for t in AGUI_FULL if t not in ("TOOL_CALL_END", "TOOL_CALL_RESULT")]
    elif fault == "drop-agent-completed":
        assert types == AGUI_FULL[:-1]
    elif fault == "reorder":
        assert types[6:11] == ["TOOL_CALL_END", "TOOL_CALL_RESULT", "TOOL_CALL_START", "TOOL_CALL_ARGS",
                               "TOOL_CALL_ARGS"]
    elif fault == "completed-first":
        assert types == ["RUN_FINISHED"] + AGUI_FULL[:-1]
    elif fault == "wrong-run-id":
        assert frames[0]["runId"] == run_id and frames[-1]["runId"] != run_id
        assert frames[-1]["threadId"] == thread_id
    elif fault == "close-mid-run":
        assert types == ["RUN_STARTED", "REASONING_START"] and closed == (1011, "")
    if fault != "close-mid-run":
        assert closed is None


# --- leak -------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["leak", None])
def test_netra_leak_sends_a_run_to_another_users_connection(fault_server, fault):
    server = fault_server("netra", fault)
    with netra_session(server, "user_leak_alice") as alice, netra_session(server, "user_leak_bob") as bob:
        recv(alice), recv(bob)
        bob_events, thread_id, run_id = netra_run(bob, "bob's secret question")
        assert netra_violations(bob_events, run_id, thread_id, "user_leak_bob") == {}  # Bob's own run is intact
        if fault:
            leaked = recv_until(alice, lambda f: f["type"] == "agent_completed")
            assert {f["user_id"] for f in leaked} == {"user_leak_bob"}
            assert leaked == bob_events
        else:
            alice.send(json.dumps({"type": "ping"}))
            assert recv(alice)["type"] == "pong"


@pytest.mark.parametrize("fault", ["leak", None])
def test_agui_leak_gives_another_connection_a_whole_run_it_never_started(fault_server, fault):
    server = fault_server("ag-ui", fault)
    with agui_session(server, "user_leak_alice") as alice, agui_session(server, "user_leak_bob") as bob:
        bob_events, run_input = agui_run(bob, "bob's secret question")
        assert agui_violations(bob_events, run_input["threadId"], run_input["runId"]) == {}
        if fault:
            leaked = recv_until(alice, lambda f: f["type"] == "RUN_FINISHED")
            assert leaked == bob_events and leaked[0]["runId"] == run_input["runId"]
        else:
            alice.send("flush")
            assert recv(alice)["type"] == "RUN_ERROR"  # the answer to Alice's own frame, nothing before it


# --- auth, welcome, health --------------------------------------------------------------

def test_netra_accept_expired_accepts_expired_tokens_only(fault_server):
    server = fault_server("netra", "accept-expired")
    with open_ws(server, subprotocols=[f"jwt.{b64url(expired_token('user_late'))}"]) as ws:
        assert recv(ws)["type"] == "connection_established"
        events, thread_id, run_id = netra_run(ws)
        assert netra_violations(events, run_id, thread_id, "user_late") == {}
    for bad in ("garbage", make_token(secret="y" * 40, lifetime=-60), make_token(drop=("sub",), lifetime=-60)):
        with open_ws(server, subprotocols=[f"jwt.{b64url(bad)}"]) as ws:
            assert recv(ws)["error_code"] == "AUTH_FAILED"
    assert requests.get(server.url + "/api/health", headers=bearer(expired_token()), timeout=10).status_code == 200


def test_netra_expired_tokens_are_refused_without_the_fault(fault_server):
    with open_ws(fault_server("netra", None), subprotocols=[f"jwt.{b64url(expired_token())}"]) as ws:
        assert recv(ws)["error_code"] == "AUTH_FAILED"


@pytest.mark.parametrize("fault", ["accept-expired", None])
def test_agui_accept_expired(fault_server, fault):
    from websockets.exceptions import InvalidStatus

    server = fault_server("ag-ui", fault)
    if fault:
        with agui_session(server, "user_late", token=expired_token("user_late")) as ws:
            events, run_input = agui_run(ws)
            assert agui_violations(events, run_input["threadId"], run_input["runId"]) == {}
    for bad in ([expired_token()] if not fault else []) + ["garbage", make_token(secret="y" * 40, lifetime=-60)]:
        with pytest.raises(InvalidStatus) as refused:
            with agui_session(server, "x", token=bad):
                pass
        assert refused.value.response.status_code == 403


def test_netra_no_connection_established_skips_only_the_welcome(fault_server):
    with netra_session(fault_server("netra", "no-connection-established"), "user_quiet") as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert recv(ws)["type"] == "pong"  # the welcome would have come first
        events, thread_id, run_id = netra_run(ws)
        assert netra_violations(events, run_id, thread_id, "user_quiet") == {}


def test_agui_no_connection_established_changes_nothing(fault_server):
    """The ag-ui wire has no welcome: the fault is accepted and does nothing."""
    server = fault_server("ag-ui", "no-connection-established")
    assert "faults=no-connection-established" in server.stderr()
    with agui_session(server, "user_quiet") as ws:
        events, run_input = agui_run(ws)
        assert [e["type"] for e in events] == AGUI_FULL
        assert agui_violations(events, run_input["threadId"], run_input["runId"]) == {}


@pytest.mark.parametrize("wire", ["netra", "ag-ui"])
def test_health_500_breaks_only_health(fault_server, wire):
    server = fault_server(wire, "health-500")
    headers = bearer(make_token("user_health"))
    for path in ("/health", "/api/health"):
        response = requests.get(server.url + path, headers=headers, timeout=10)
        assert response.status_code == 500 and response.json()["status"] == "unhealthy"
    for path in ("/api/discovery/services", "/api/mcp/config", "/auth/health"):
        assert requests.get(server.url + path, headers=headers, timeout=10).status_code == 200
    if wire == "netra":
        with netra_session(server, "user_health") as ws:
            recv(ws)
            events, thread_id, run_id = netra_run(ws)
            assert netra_violations(events, run_id, thread_id, "user_health") == {}
    else:
        with agui_session(server, "user_health") as ws:
            events, run_input = agui_run(ws)
            assert agui_violations(events, run_input["threadId"], run_input["runId"]) == {}
