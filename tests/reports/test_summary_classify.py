"""Root-cause classes of the kit's real failure messages (taken from runs against each fault)."""

from __future__ import annotations

import pytest

from agentkit.report.classify import classify, classify_skip

CASES = [
    ("Parent suite setup failed:\nConfiguration invalid for target 'staging' (3 problems); nothing was connected:\n"
     "- E2E_BACKEND_URL is not set\n- E2E_AUTH_URL is not set", "configuration", [], True),
    ("Cannot connect to ws://127.0.0.1:9/ws: [Errno 111] Connection refused.", "connectivity", [], False),
    ("Cannot connect to ws://127.0.0.1:9/ws (connection refused: nothing listens on that port; [Errno 111] Connection "
     "refused). Check that the service runs there and that the URL is right.", "connectivity", [], False),
    ("ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: /health "
     "(Caused by NewConnectionError(...))", "connectivity", [], False),
    ("Expected a refusal with HTTP 403, but the handshake could not be attempted: Cannot connect to "
     "ws://127.0.0.1:9/ws: [Errno 111] Connection refused.", "connectivity", [], False),
    ("Expected the handshake to be REFUSED (HTTP 403), but the server ACCEPTED it: HTTP 101, subprotocol "
     "'jwt-auth'; first frame: connection_id=ws_1 user_id=auth-expired.", "authentication", [], False),
    ("Handshake to ws://h/ws was refused with HTTP 403; expected it to be accepted (subprotocol auth).",
     "authentication", [], False),
    ("- Rule 3 (tool pairing) violated: expected tool_completed for 'search_docs' after tool_executing at 0.011s; "
     "the run ended with agent_completed (#6) at 0.021s.\nRun run_1 on 'x', timeline:", "protocol", [3], False),
    ("- Rule 1 (start and end) violated: expected agent_started as the first event, got agent_completed (#2)\n"
     "- Rule 2 (thinking) violated: expected at least one agent_thinking", "protocol", [1, 2], False),
    ("- Rule 5 (isolation) violated: connection 'iso-alice' of user 'iso-alice' received agent_started (#3) of "
     "user 'iso-bob', run 'run_1'.", "isolation", [5], False),
    ("- Rule 6 (timing) violated: first event agent_started arrived 3.003s after the message; budget 2s.",
     "timing", [6], False),
    ("- Rule 4 (ids) violated: agent_started (#2) at 0.004s carries run_id 'run_4' (expected 'run_b').",
     "protocol", [4], False),
    ("Expected connection_established as the first frame on 'conn-welcome', no frame arrived within 10s.",
     "protocol", [], False),
    ("Url: http://127.0.0.1:38443/health Expected status: 500 != 200", "health", [], False),
    ("Concurrent sessions breached 2 thresholds (chat, 5 sessions, concurrency 5):\n- success rate 60.00% (3/5 "
     "sessions), expected at least 100%: 2 failed (auth rejected 0, timeouts 0, errors 0, agent errors 0, rule "
     "violations 0, isolation violations 29)\n- isolation violations 29 (connections received other users' events), "
     "expected at most 0\nFirst errors:\n  session-4 (load-user-4): Rule 5 (isolation) violated: connection "
     "'session-4'", "isolation", [5], False),
    ("Concurrent sessions breached 2 thresholds (connect, 20 sessions, concurrency 20):\n- success rate 0.00% "
     "(0/20 sessions), expected at least 100%: 20 failed (auth rejected 0, timeouts 0, errors 20, agent errors 0, "
     "rule violations 0, isolation violations 0)\n- connect p95 unknown (no session got that far), expected at most "
     "2000 ms\nFirst errors:\n  session-0 (load-user-0): ConnectionRefusedError: [Errno 111] Connect call failed",
     "connectivity", [], False),
    ("Concurrent sessions breached 1 threshold (chat, 5 sessions, concurrency 5):\n- success rate 0.00% (0/5 "
     "sessions), expected at least 100%: 5 failed (auth rejected 0, timeouts 0, errors 0, agent errors 0, rule "
     "violations 5, isolation violations 0)\nFirst errors:\n  session-0 (load-user-0): Rule 6 (timing) violated: "
     "first event agent_started arrived 3.005s after the message; budget 2s.", "timing", [6], False),
    ("Concurrent sessions breached 1 threshold (connect, 50 sessions, concurrency 50):\n- connect p95 2400.5 ms, "
     "expected at most 2000 ms", "timing", [], False),
    ("Concurrent sessions breached 1 threshold (connect, 5 sessions, concurrency 5):\n- success rate 0.00% (0/5 "
     "sessions), expected at least 100%: 5 failed (auth rejected 5, timeouts 0, errors 0, agent errors 0, rule "
     "violations 0, isolation violations 0)", "authentication", [], False),
    ("Several failures occurred:\n\n1) - Rule 3 (tool pairing) violated: x\n\n2) - Rule 5 (isolation) violated: y",
     "isolation", [3, 5], False),
    ("List '${executing}' has no item in index 0.", "unclassified", [], False),
]
# The same causes as the kit words them since the wire layer's rewrite (taken from runs of the suites
# against each fault, and against a closed port): old outputs keep the cases above.
CASES += [
    ("Parent suite setup failed:\nConfiguration invalid for target 'staging' (2 problems); nothing was connected:\n"
     "- E2E_BACKEND_URL is not set\n- E2E_JWT_SECRET and/or E2E_OAUTH_SIMULATION_KEY is not set", "configuration", [],
     True),
    ("GET http://127.0.0.1:9/health (health): cannot connect to 127.0.0.1:9 (connection refused: nothing listens on "
     "that port). Check that the service runs there and that the URL is right.", "connectivity", [], False),
    ("POST http://127.0.0.1:9/auth/e2e/test-auth (the auth service's test-auth endpoint): cannot connect to "
     "127.0.0.1:9 (connection refused: nothing listens on that port). Check that the service runs there and that the "
     "URL is right.", "connectivity", [], False),
    ("GET http://127.0.0.1:9/api/mcp/servers without a token: cannot connect to 127.0.0.1:9 (connection refused: "
     "nothing listens on that port). Check that the service runs there and that the URL is right.", "connectivity", [],
     False),
    ("Expected a refusal (HTTP 403), but the handshake could not be attempted: Cannot connect to ws://127.0.0.1:9/ws: "
     "[Errno 111] Connection refused.", "connectivity", [], False),
    ("Expected the handshake to be REFUSED (HTTP 403), but the server ACCEPTED it: system_message (#1) arrived "
     "(subprotocol 'jwt-auth'). A bad token that is accepted is a security failure, not a pass.\n    +0.001s  #1    "
     "system_message         connection_id=ws_1 user_id=auth-expired", "authentication", [], False),
    ("GET http://127.0.0.1:9/api/mcp/servers answered HTTP 200, expected 401: {'data': []}", "authentication", [],
     False),
    ("http://127.0.0.1:9/health answered HTTP 500, expected 200 with {'status': 'healthy'}: {'status': 'unhealthy'}",
     "health", [], False),
    ("Rule 5 (isolation) violated on 2 of 2 connection(s), 12 foreign event(s) in all:\nConnection 'iso-alice': 6 "
     "foreign event(s)\n- Rule 5 (isolation) violated: connection 'iso-alice' of user 'iso-alice' received "
     "agent_started (#4) of user 'iso-bob', run 'run_1', thread 'thread_1', an event of a run this connection never "
     "started.", "isolation", [5], False),
    ("- Rule 3 (pairing) violated: expected tool_completed for 'search_docs' after tool_executing at 0.005s; the run "
     "ended with agent_completed (#6) at 0.007s.\nRun run_1 on 'flow-user' (dialect 'default'), timeline:", "protocol",
     [3], False),
    ("- Rule 1 (start and end) violated: expected ['started', 'thinking', 'tool_executing', 'tool_completed', "
     "'completed'] in this order; 'tool_completed' is missing after position 3. Got ['agent_started (started)'].",
     "protocol", [1], False),
    ("Expected the welcome frame ({\"type\": \"system_message\", \"data.event\": \"connection_established\"}) as the "
     "first frame on 'conn-welcome', no frame arrived within 2s.\n  (no events)", "protocol", [], False),
    ("Several failures occurred:\n\n1) - Rule 3 (pairing) violated: x\n\n2) Rule 5 (isolation) violated on 1 of 2 "
     "connection(s), 6 foreign event(s) in all:", "isolation", [3, 5], False),
]


@pytest.mark.parametrize("message, cls, rules, via_setup", CASES, ids=[c[1] + "-" + c[0][:30] for c in CASES])
def test_message_is_classified(message, cls, rules, via_setup):
    cause = classify(message)
    assert (cause.cls, cause.rules, cause.via_setup) == (cls, rules, via_setup)
    assert cause.line and not cause.line.startswith("- ")


def test_setup_failure_reports_the_setup_message():
    cause = classify("Parent suite setup failed:\nCannot connect to ws://h/ws: refused.")
    assert cause.line == "Cannot connect to ws://h/ws: refused." and cause.via_setup


@pytest.mark.parametrize("message, cls", [
    ("E2E_JWT_SECRET is not set for this target: a correctly signed special token cannot be made", "configuration"),
    ("E2E_OAUTH_SIMULATION_KEY is not set for this target", "configuration"),
    ("Skipped because the moon is full", "other"),
    ("dialect 'ag-ui' has no welcome frame (welcome.presence: absent)", "not applicable"),
    ("dialect 'langgraph's events carry no ids (run.event_ids is empty): the run is tied to the connection",
     "not applicable"),
    ("target 'staging' has no auth service (E2E_AUTH_URL is not set)", "configuration"),
    ("target 'staging' has no auth service (dialect 'langgraph' has none)", "not applicable"),
    ("Skipped in parent suite setup:\ntarget 'staging' does not play the kit's scenario file (only the embedded "
     "backend does)", "not applicable"),
])
def test_skip_reason(message, cls):
    assert classify_skip(message) == cls
