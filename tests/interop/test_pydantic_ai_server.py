"""Smoke tests of Pydantic AI's AG-UI adapter behind our thin WebSocket (``pydantic_ai/server.py``).

Two servers per module (the tool works / the tool raises), each on a free loopback port. A
raw ``websockets`` client sends one ``RunAgentInput`` JSON frame and reads one AG-UI event
per frame until ``RUN_FINISHED`` or ``RUN_ERROR``. Every scenario is saved as a transcript.
"""

from __future__ import annotations

import json
import socket
import uuid
from itertools import groupby

import pytest

from .conftest import interop_venv, note_ready
from .servers import PydanticAIServer, ServerStartError
from .transcript import handshake_status, recorded_connect

pytestmark = pytest.mark.interop("pydantic_ai")

RUN_TIMEOUT = 60.0  # a run takes ~50 ms idle
PROMPT = "What is the weather in Lyon today?"
ANSWER = "The weather in Lyon: 18°C and sunny."

# The sequence these pins produce (repeated CONTENT/ARGS events collapsed into one).
# The empty TEXT_MESSAGE_START/END pair is the (textless) assistant message the tool call
# hangs from: TOOL_CALL_START.parentMessageId names it.
SUCCESS_SEQUENCE = [
    "RUN_STARTED",
    "REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT", "REASONING_MESSAGE_END",
    "REASONING_END",
    "TEXT_MESSAGE_START", "TEXT_MESSAGE_END",
    "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END",
    "TOOL_CALL_RESULT",
    "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END",
    "RUN_FINISHED",
]
FAILURE_SEQUENCE = [
    *SUCCESS_SEQUENCE[:SUCCESS_SEQUENCE.index("TOOL_CALL_RESULT") + 1],
    "REASONING_ENCRYPTED_VALUE",
    "RUN_ERROR",
]


def _start(tmp_path_factory, jwt_secret, failing_tool: bool):
    venv = interop_venv("pydantic_ai")
    log = tmp_path_factory.mktemp("pydantic_ai") / ("server-failing.log" if failing_tool else "server.log")
    return PydanticAIServer(venv, failing_tool=failing_tool, env={"E2E_JWT_SECRET": jwt_secret}, log_path=log)


@pytest.fixture(scope="module")
def server(tmp_path_factory, jwt_secret):
    with _start(tmp_path_factory, jwt_secret, failing_tool=False) as running:
        note_ready(running)
        yield running


@pytest.fixture(scope="module")
def failing_server(tmp_path_factory, jwt_secret):
    with _start(tmp_path_factory, jwt_secret, failing_tool=True) as running:
        note_ready(running)
        yield running


def run_input(prompt: str = PROMPT, **fields) -> dict:
    return {"threadId": f"thread-{uuid.uuid4().hex[:8]}", "runId": f"run-{uuid.uuid4().hex[:8]}",
            "messages": [{"id": f"msg-{uuid.uuid4().hex[:8]}", "role": "user", "content": prompt}],
            "tools": [], "context": [], "state": {}, "forwardedProps": {}, **fields}


def run_once(sock, frame: dict) -> list[dict]:
    sock.send(frame)
    return sock.recv_until(lambda e: e["type"] in ("RUN_FINISHED", "RUN_ERROR"), RUN_TIMEOUT)


def collapsed(events: list[dict]) -> list[str]:
    return [kind for kind, _ in groupby(e["type"] for e in events)]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_run_streams_tool_call_result_and_answer(server, make_token, transcript):
    frame = run_input()
    with recorded_connect(server.ws_url("/ws"), transcript, bearer(make_token("user-a"))) as sock:
        events = run_once(sock, frame)
    assert collapsed(events) == SUCCESS_SEQUENCE
    started, finished = events[0], events[-1]
    assert (started["threadId"], started["runId"]) == (frame["threadId"], frame["runId"])
    assert (finished["threadId"], finished["runId"]) == (frame["threadId"], frame["runId"])
    assert finished["outcome"] == {"type": "success"}

    call = next(e for e in events if e["type"] == "TOOL_CALL_START")
    assert call["toolCallName"] == "get_weather"
    args = "".join(e["delta"] for e in events
                   if e["type"] == "TOOL_CALL_ARGS" and e["toolCallId"] == call["toolCallId"])
    assert json.loads(args) == {"city": "Lyon"}
    result = next(e for e in events if e["type"] == "TOOL_CALL_RESULT")
    assert result["toolCallId"] == call["toolCallId"] and result["content"] == "18°C and sunny in Lyon"

    answer_id = [e for e in events if e["type"] == "TEXT_MESSAGE_START"][-1]["messageId"]
    deltas = [e["delta"] for e in events if e["type"] == "TEXT_MESSAGE_CONTENT" and e["messageId"] == answer_id]
    assert len(deltas) > 1 and "".join(deltas) == ANSWER
    reasoning = "".join(e["delta"] for e in events if e["type"] == "REASONING_MESSAGE_CONTENT")
    assert reasoning == "The user asks about the weather. The city is Lyon. I will call get_weather."
    assert all(v is not None for e in events for v in e.values()), "an absent field is omitted, never null"


def test_failing_tool_ends_the_run_with_run_error(failing_server, make_token, transcript):
    """The tool's exception reaches the client twice: a TOOL_CALL_RESULT with a generic
    content, then RUN_ERROR with the exception's text; no RUN_FINISHED. The connection
    stays open and carries the next run."""
    with recorded_connect(failing_server.ws_url("/ws"), transcript, bearer(make_token("user-a"))) as sock:
        events = run_once(sock, run_input())
        assert collapsed(events) == FAILURE_SEQUENCE
        call = next(e for e in events if e["type"] == "TOOL_CALL_START")
        result = next(e for e in events if e["type"] == "TOOL_CALL_RESULT")
        assert result["toolCallId"] == call["toolCallId"]
        assert result["content"] == "Tool execution was interrupted by an error."
        marker = next(e for e in events if e["type"] == "REASONING_ENCRYPTED_VALUE")
        assert marker["subtype"] == "message" and marker["entityId"] == result["messageId"]
        assert json.loads(marker["encryptedValue"]) == {"pydantic_ai": {"outcome": "failed"}}
        assert events[-1]["message"] == "weather service unavailable"
        assert "code" not in events[-1]

        again = run_once(sock, run_input("And in Oslo?"))
        assert again[0]["type"] == "RUN_STARTED" and again[-1]["type"] == "RUN_ERROR"


def test_invalid_run_input_gets_run_error_and_the_socket_stays_open(server, make_token, transcript):
    """Our transport's rule (AG-UI has no WebSocket binding): a frame that is not a
    RunAgentInput is answered with one RUN_ERROR (code invalid_run_input); the next valid
    input runs."""
    with recorded_connect(server.ws_url("/ws"), transcript, bearer(make_token("user-a"))) as sock:
        sock.send("this is not json")
        error = json.loads(sock.recv(timeout=RUN_TIMEOUT))
        assert error["type"] == "RUN_ERROR" and error["code"] == "invalid_run_input"
        sock.send({"threadId": "t", "runId": "r"})  # no messages
        error = json.loads(sock.recv(timeout=RUN_TIMEOUT))
        assert error["type"] == "RUN_ERROR" and error["code"] == "invalid_run_input"
        assert collapsed(run_once(sock, run_input()))[-1] == "RUN_FINISHED"


@pytest.mark.parametrize("case", ["no_token", "garbage", "wrong_signature", "expired", "no_exp", "basic_scheme",
                                  "query_expired"])
def test_bad_or_missing_token_is_refused_with_403(server, make_token, jwt_secret, transcript, case):
    import jwt as pyjwt
    url, headers = server.ws_url("/ws"), {}
    if case == "garbage":
        headers = bearer("not-a-jwt")
    elif case == "wrong_signature":
        headers = bearer(make_token("user-a", secret="another-secret-" + "x" * 32))
    elif case == "expired":
        headers = bearer(make_token("user-a", ttl=-60))
    elif case == "no_exp":
        headers = bearer(pyjwt.encode({"sub": "user-a"}, jwt_secret, algorithm="HS256"))
    elif case == "basic_scheme":
        headers = {"Authorization": "Basic dXNlcjpwYXNz"}
    elif case == "query_expired":
        url += "?token=" + make_token("user-a", ttl=-60)
    assert handshake_status(url, transcript, headers) == 403


def test_valid_token_in_header_or_query_is_accepted(server, make_token, transcript):
    token = make_token("user-a")
    assert handshake_status(server.ws_url("/ws"), transcript, bearer(token)) == 101
    assert handshake_status(server.ws_url(f"/ws?token={token}"), transcript) == 101


def test_a_taken_port_fails_the_start_clearly(tmp_path, jwt_secret):
    venv = interop_venv("pydantic_ai")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = PydanticAIServer(venv, port, env={"E2E_JWT_SECRET": jwt_secret}, log_path=tmp_path / "server.log")
        with pytest.raises(ServerStartError, match=f"exited with code 3 before it was ready on port {port}") as failure:
            server.start()
    assert "address already in use" in str(failure.value)
    assert not server.running
