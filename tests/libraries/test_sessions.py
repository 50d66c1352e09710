"""AgentSessions against the reference backend: connecting, sending, waiting, collecting a
run, closes, and each failure message (it names the value expected and what arrived)."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta

import pytest

from AgentAuth import AgentAuth
from agentkit import target as targets
from agentkit.transports.threaded import REGISTRY
from agentkit.wire.masking import reveal
from agentkit.wire.run import RunRecord
from agentkit.target import Target

SHORT = timedelta(seconds=0.5)


def token_for(backend, user="alice"):
    return AgentAuth().create_test_token(user, secret=backend.jwt_secret)


@pytest.fixture
def alice(sessions, backend):
    return sessions.connect_to_agent_websocket(token_for(backend), url=backend.ws_url, alias="alice")


@pytest.fixture(scope="module")
def close_mid_run(backend_factory):
    return backend_factory(faults=["close-mid-run"])


# --- connecting --------------------------------------------------------------------
def test_connect_waits_for_the_welcome_and_registers_the_alias(sessions, backend, caplog):
    caplog.set_level(logging.INFO)
    token = token_for(backend)
    assert sessions.connect_to_agent_websocket(token, url=backend.ws_url, alias="alice") == "alice"
    info = sessions.get_connection_info()
    assert info["alias"] == "alice" and info["open"] is True
    assert info["user_id"] == "alice" and info["status"] == 101 and info["subprotocol"] == "jwt-auth"
    assert info["connection_id"].startswith("ws_") and info["frames"] == 1
    assert "Welcome on 'alice' after" in caplog.text
    assert reveal(token) not in caplog.text


def test_default_aliases_are_numbered(sessions, backend):
    first = sessions.connect_to_agent_websocket(token_for(backend), url=backend.ws_url)
    second = sessions.connect_to_agent_websocket(token_for(backend), url=backend.ws_url)
    assert first.startswith("ws-") and second.startswith("ws-")
    assert int(second[3:]) == int(first[3:]) + 1


def test_connect_uses_the_resolved_targets_url_and_auth_mode(sessions, backend):
    targets.set_current(Target("staging", backend.url, backend.ws_url, backend.url, auth_mode="bearer"))
    sessions.connect_to_agent_websocket(token_for(backend), alias="t")
    info = sessions.get_connection_info("t")
    assert info["url"] == backend.ws_url and info["subprotocol"] is None  # bearer: no subprotocol offered


def test_connect_without_url_or_target_resolves_the_target_on_first_use(sessions, monkeypatch):
    """By design, a keyword that needs the target resolves it on first use (the local one
    here: the embedded backend), so a single suite file runs as written."""
    monkeypatch.delenv("E2E_TARGET", raising=False)
    assert targets.current() is None
    try:
        token = AgentAuth().get_token_for_user("alice")  # resolves the target: nothing was resolved
        target = targets.current()
        assert target is not None and target.embedded and target.profile == "local"
        sessions.connect_to_agent_websocket(token, alias="first-use")
        info = sessions.get_connection_info("first-use")
        assert info["url"] == target.ws_url and info["user_id"] == "alice" and info["subprotocol"] == "jwt-auth"
    finally:
        sessions.close_all_connections()
        backend, code = targets.release()
    assert backend is not None and not backend.alive()


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:1/ws", r"WebSocket URL 'http://127\.0\.0\.1:1/ws' is not valid: expected ws://host"),
    ("ws://127.0.0.1:99999/ws", r"WebSocket URL 'ws://127\.0\.0\.1:99999/ws' has an invalid port"),
])
def test_malformed_url_is_named(sessions, url, message):
    with pytest.raises(ValueError, match=message):
        sessions.connect_to_agent_websocket("t", url=url)


def test_auth_mode_needing_a_token_says_so(sessions, backend):
    with pytest.raises(ValueError, match="Auth mode 'subprotocol' needs a token, got none"):
        sessions.connect_to_agent_websocket(url=backend.ws_url)


def test_refused_connect_names_the_status(sessions, backend):
    expired = AgentAuth().create_expired_token("mallory", secret=backend.jwt_secret)
    with pytest.raises(AssertionError, match=r"Handshake to ws://127\.0\.0\.1:\d+/ws was refused with HTTP 403; "
                                             r"expected it to be accepted \(ws://.* \(subprotocol auth, token eyJ"):
        sessions.connect_to_agent_websocket(expired, url=backend.ws_url)


def test_connect_to_a_closed_port_is_named(sessions):
    with pytest.raises(AssertionError, match=r"Cannot connect to ws://127\.0\.0\.1:9/ws \(connection refused: nothing listens on that port; .*refused\)\. Check that the service runs there"):
        sessions.connect_to_agent_websocket("t", url="ws://127.0.0.1:9/ws", timeout=timedelta(seconds=2))


def test_missing_welcome_fails_naming_it(sessions, backend_factory):
    quiet = backend_factory(faults=["no-connection-established"])
    token = token_for(quiet)
    started = time.perf_counter()
    with pytest.raises(AssertionError, match=r"Expected the welcome frame \(\{\"type\": \"system_message\", "
                                             r"\"data\.event\": \"connection_established\"\}\) as the first frame on "
                                             r"'q', no frame arrived within 0\.5s\.\n  \(no events\)"):
        sessions.connect_to_agent_websocket(token, url=quiet.ws_url, alias="q", timeout=SHORT)
    assert time.perf_counter() - started < 6  # its 0.5 s, not the default 10 s
    # without the welcome check the same server is usable: a ping is answered
    sessions.connect_to_agent_websocket(token, url=quiet.ws_url, alias="q2", expect_welcome=False)
    sessions.send_ping()
    assert sessions.wait_for_event("pong")["type"] == "pong"


# --- sending and waiting -----------------------------------------------------------------
def test_ping_is_answered_with_pong(sessions, alice):
    sessions.send_ping()
    pong = sessions.wait_for_event("pong", timeout=timedelta(seconds=5))
    assert isinstance(pong["timestamp"], float)


def test_invalid_json_gets_an_error_frame_and_the_connection_stays_open(sessions, alice):
    sessions.send_text("{not json")
    error = sessions.wait_for_event("error", "data.code=invalid_json")
    assert error["data"]["code"] == "invalid_json"
    sessions.connection_should_be_open()


def test_unknown_message_type_gets_an_error_frame(sessions, alice):
    sessions.send_json({"type": "teleport"})
    error = sessions.wait_for_event("error", "data.code=unknown_message_type")
    assert "teleport" in error["data"]["message"]
    sessions.connection_should_be_open()


def test_send_json_accepts_a_json_string_and_refuses_other_text(sessions, alice):
    sessions.send_json('{"type": "ping"}')
    sessions.wait_for_event("pong")
    with pytest.raises(ValueError, match=r"Message '\{oops' is not JSON \(.*\); use 'Send Text' for raw text"):
        sessions.send_json("{oops")


def test_wait_for_event_matches_conditions_and_moves_the_cursor(sessions, alice):
    run = sessions.send_user_message("find the docs")
    started = sessions.wait_for_event("agent_started", f"run_id={run['run_id']}")
    tool = sessions.wait_for_event("tool_executing", "data.tool_name=search_docs", "data.parameters.call=1")
    done = sessions.wait_for_event(None, "type=agent_completed")
    assert started["thread_id"] == run["thread_id"]
    assert tool["data"]["parameters"]["query"] == "find the docs"
    assert done["run_id"] == run["run_id"]
    # the cursor is past agent_completed: the run's earlier events are not found again
    with pytest.raises(AssertionError, match="Expected a frame with type agent_started"):
        sessions.wait_for_event("agent_started", timeout=timedelta(seconds=0.2))


def test_wait_for_event_timeout_names_what_was_awaited_and_what_arrived(sessions, alice):
    sessions.send_user_message("hello")
    sessions.wait_for_event("agent_completed")
    sessions.send_ping()
    sessions.wait_for_event("pong")
    run = sessions.send_user_message("again")
    sessions.wait_for_event("agent_completed", f"run_id={run['run_id']}")
    sessions.send_ping()
    started = time.perf_counter()
    with pytest.raises(AssertionError) as err:
        sessions.wait_for_event("tool_completed", "data.tool_name=nope", timeout=SHORT)
    elapsed = time.perf_counter() - started
    text = str(err.value)
    assert 0.45 < elapsed < 5.0, elapsed  # its 0.5 s, not the default 10 s
    assert text.startswith("Expected a frame with type tool_completed and data.tool_name == nope on 'alice'; "
                           "nothing matched within 0.5s. 1 frame(s) since the cursor:")
    assert "pong" in text


def test_wait_for_event_fails_at_once_when_the_server_closes(sessions, close_mid_run):
    sessions.connect_to_agent_websocket(token_for(close_mid_run), url=close_mid_run.ws_url, alias="c")
    sessions.send_user_message("hello")
    started = time.perf_counter()
    with pytest.raises(AssertionError, match=r"Expected a frame with type agent_completed on 'c'; the connection "
                                             r"closed \(connection closed by the server, code 1011\)\. "):
        sessions.wait_for_event("agent_completed", timeout=timedelta(seconds=20))
    assert time.perf_counter() - started < 5


def test_condition_without_equals_is_refused(sessions, alice):
    with pytest.raises(ValueError, match=r"Condition 'data\.tool_name' is not valid: expected path=value"):
        sessions.wait_for_event("tool_executing", "data.tool_name")


def test_get_received_events_and_event_log(sessions, alice):
    sessions.send_text("nope")
    sessions.wait_for_event("error")
    sessions.send_ping()
    sessions.wait_for_event("pong")
    messages = sessions.get_received_events()
    assert [m["type"] for m in messages] == ["system_message", "error", "pong"]
    assert sessions.get_received_events(event_type="pong") == [messages[2]]
    log = sessions.get_event_log("alice")
    assert [e.seq for e in log] == [1, 2, 3]
    assert log[2].message is messages[2]


# --- collecting a run ------------------------------------------------------------------------
def test_collect_agent_run_returns_every_event_of_the_run(sessions, alice, caplog):
    caplog.set_level(logging.INFO)
    run = sessions.send_user_message("collect me", thread_id="thread_fixed", run_id="run_fixed")
    assert run["run_id"] == "run_fixed" and run["thread_id"] == "thread_fixed" and run["user_id"] == "alice"
    record = sessions.collect_agent_run(run, timeout=timedelta(seconds=10))
    assert isinstance(record, RunRecord)
    assert [e.type for e in record.events] == ["agent_started", "agent_thinking", "tool_executing",
                                               "tool_completed", "agent_thinking", "agent_completed"]
    assert record.ended == "terminal" and record.terminal is record.events[-1]
    assert all(e.run_id == "run_fixed" for e in record.events)
    assert all(e.received >= run["sent_at"] for e in record.events)
    assert "<table" in caplog.text and "Run run_fixed on &#x27;alice&#x27; (6 events, terminal)" in caplog.text


def test_runs_in_one_thread_are_collected_separately(sessions, alice):
    """Regression: a second run in the same thread must not be matched to the first one's events."""
    first = sessions.send_user_message("one", thread_id="thread_shared")
    sessions.collect_agent_run(first)
    second = sessions.send_user_message("two", thread_id="thread_shared")
    record = sessions.collect_agent_run(second)
    assert {e.run_id for e in record.events} == {second["run_id"]}
    assert len(record.events) == 6


def test_collect_fails_at_once_when_the_connection_closes_mid_run(sessions, close_mid_run):
    sessions.connect_to_agent_websocket(token_for(close_mid_run), url=close_mid_run.ws_url, alias="c")
    run = sessions.send_user_message("hello")
    started = time.perf_counter()
    with pytest.raises(AssertionError) as err:
        sessions.collect_agent_run(run, timeout=timedelta(seconds=20))
    assert time.perf_counter() - started < 5  # on the close, not after the 20 s timeout
    text = str(err.value)
    assert text.startswith(f"Rule 1 (start and end) violated: run {run['run_id']} did not end with "
                           "agent_completed, agent_error: the connection was closed by the server (connection "
                           "closed by the server, code 1011) at ")
    assert "agent_started" in text and "agent_thinking" in text  # the two events sent before the close


def test_incomplete_run_can_be_returned_for_inspection(sessions, close_mid_run):
    sessions.connect_to_agent_websocket(token_for(close_mid_run), url=close_mid_run.ws_url, alias="c")
    run = sessions.send_user_message("hello")
    record = sessions.collect_agent_run(run, allow_incomplete=True)
    assert record.ended == "closed" and record.close is not None and record.close.close_code == 1011
    assert [e.type for e in record.events] == ["agent_started", "agent_thinking"]


# --- closing ---------------------------------------------------------------------------------
def test_server_close_is_detected_with_its_code(sessions, close_mid_run):
    sessions.connect_to_agent_websocket(token_for(close_mid_run), url=close_mid_run.ws_url, alias="c")
    sessions.send_user_message("hello")
    assert sessions.connection_should_be_closed_by_server(code=1011) == 1011
    with pytest.raises(AssertionError, match=r"Expected 'c' to be open, but connection closed by the server, "
                                             r"code 1011\.$"):
        sessions.connection_should_be_open()
    with pytest.raises(ConnectionError, match=r"Connection 'c' is closed \(connection closed by the server, "
                                              r"code 1011\)"):
        sessions.send_ping()


def test_close_code_mismatch_names_both(sessions, close_mid_run):
    sessions.connect_to_agent_websocket(token_for(close_mid_run), url=close_mid_run.ws_url, alias="c")
    sessions.send_user_message("hello")
    with pytest.raises(AssertionError, match=r"Expected close code 1000 on 'c', got connection closed by the server, "
                                             r"code 1011\.$"):
        sessions.connection_should_be_closed_by_server(code=1000)


def test_open_connection_fails_the_server_close_check(sessions, alice):
    with pytest.raises(AssertionError, match=r"Expected the server to close 'alice' within 0\.3s; it is still open"):
        sessions.connection_should_be_closed_by_server(timeout=timedelta(seconds=0.3))


def test_close_connection_logs_every_frame_and_closes(sessions, alice, caplog):
    caplog.set_level(logging.INFO)
    sessions.send_ping()
    sessions.wait_for_event("pong")
    sessions.close_connection()
    # welcome, pong and the close (the server's answer, or the client's own when close() read the answer first)
    assert "All 3 frames received on &#x27;alice&#x27;" in caplog.text
    # the client closed it: the close is the client's, with why (the code is the server's echo, or none when
    # close() read the echo before the reader did)
    assert re.search(r"<td>&lt;close&gt;</td>(<td></td>){5}<td>connection closed by the client, code (1000|None) "
                     r"\(Close Connection\)</td>", caplog.text)
    assert sessions.get_connection_info("alice")["open"] is False
    with pytest.raises(ConnectionError, match="Connection 'alice' is closed"):
        sessions.send_ping("alice")


def test_switch_connection_and_unknown_aliases(sessions, backend):
    sessions.connect_to_agent_websocket(token_for(backend, "alice"), url=backend.ws_url, alias="alice")
    sessions.connect_to_agent_websocket(token_for(backend, "bob"), url=backend.ws_url, alias="bob")
    assert sessions.switch_connection("alice") == "bob"
    assert sessions.get_connection_info()["user_id"] == "alice"
    with pytest.raises(ValueError, match=r"No WebSocket connection with alias 'carol'\. Open connections: .*'alice'.*'bob'"):
        sessions.switch_connection("carol")


def test_no_connection_open_says_how_to_open_one(sessions):
    REGISTRY.empty_cache()
    with pytest.raises(RuntimeError, match="No WebSocket connection is open. Open one with 'Connect To Agent WebSocket'"):
        sessions.send_ping()


def test_close_all_connections_closes_every_one(sessions, backend):
    conns = [sessions.connect_to_agent_websocket(token_for(backend, u), url=backend.ws_url, alias=u)
             for u in ("u1", "u2")]
    handles = [REGISTRY.get(a) for a in conns]
    sessions.close_all_connections()
    assert all(not c.is_open for c in handles)
    assert all(c._reader is not None and not c._reader.is_alive() for c in handles)


# --- small helpers ---------------------------------------------------------------------------
def test_token_subject_and_masking(sessions, backend):
    token = token_for(backend, "dana")
    assert sessions.get_token_subject(token) == "dana"
    assert sessions.get_token_subject("not-a-jwt") is None
    masked = sessions.mask_secret(token)
    assert reveal(token) not in masked and masked.endswith(f"({len(reveal(token))} chars)")
    assert sessions.mask_secret("short") == "•••• (5 chars)"
