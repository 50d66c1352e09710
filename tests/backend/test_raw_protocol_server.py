"""benchmarks/raw_protocol_server.py, the independent second implementation, keeps docs/protocol.md too.

The benchmark's baseline only means something if it does the same work correctly.
"""

from __future__ import annotations

import json

import pytest
import requests

from backend_helpers import (
    bearer,
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


@pytest.fixture(scope="module")
def raw(start_server):
    return start_server("--think-delay", "0.01", "--tools", "2", program=("benchmarks/raw_protocol_server.py",))


@pytest.mark.parametrize("how", ["subprotocol", "header", "query"])
def test_handshake_welcome_and_run(raw, how):
    ws = connect(raw, make_token("raw_user"), how)
    try:
        assert ws.getsubprotocol() == ("jwt-auth" if how == "subprotocol" else None)
        welcome = recv_json(ws)
        assert welcome["data"]["event"] == "connection_established" and welcome["data"]["user_id"] == "raw_user"
        ws.send(json.dumps({"type": "ping"}))
        assert recv_json(ws)["type"] == "pong"
        thread_id, run_id = send_message(ws)
        events = read_run(ws)
        assert violated_rules(events, run_id, thread_id, "raw_user") == {}
        assert len(events) == 4 + 2 * 2
    finally:
        ws.close()


@pytest.mark.parametrize("token", [None, "junk", expired_token(), make_token(secret="z" * 40),
                                   make_token(drop=("sub",))],
                         ids=["missing", "malformed", "expired", "wrong-signature", "no-sub"])
def test_bad_tokens_are_refused_with_403(raw, token):
    assert refusal_status(raw, token, "subprotocol" if token else "none") == 403


@pytest.mark.parametrize("frame,code", [("nope", "invalid_json"), (json.dumps({"type": "x"}), "unknown_message_type")])
def test_error_frames_keep_the_connection(raw, frame, code):
    ws, _ = open_session(raw, "raw_err")
    try:
        ws.send(frame)
        assert recv_json(ws)["data"]["code"] == code
        ws.send(json.dumps({"type": "ping"}))
        assert recv_json(ws)["type"] == "pong"
    finally:
        ws.close()


def test_http_get_endpoints(raw):
    headers = bearer(make_token("raw_http"))
    for path in ("/health", "/api/health", "/auth/health"):
        assert requests.get(raw.url + path, headers=headers, timeout=5).json()["status"] == "healthy"
    services = requests.get(raw.url + "/api/discovery/services", headers=headers, timeout=5).json()["services"]
    assert services["websocket"]["url"] == raw.ws_url and {"backend", "auth"} <= set(services)
    assert requests.get(raw.url + "/api/mcp/config", headers=headers, timeout=5).json()
    assert requests.get(raw.url + "/api/mcp/servers", headers=headers, timeout=5).json()["data"][0]["status"]
    for path in ("/api/health", "/api/mcp/servers"):
        assert requests.get(raw.url + path, timeout=5).status_code == 401
