"""Smoke tests of the real LangGraph Agent Server (``langgraph dev``) with our scripted agent.

One server per module, on a free loopback port, with our JWT auth and owner scoping
(``langgraph/auth.py``). A raw ``websockets`` client speaks the server's own v2 event
protocol on ``ws://host/threads/{thread_id}/stream/events``: ``subscription.subscribe``, then
``run.start``. Every scenario's frames are saved as a transcript (see conftest.py).
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
import uuid

import pytest
from websockets.exceptions import ConnectionClosed

from .conftest import interop_venv, note_ready
from .servers import LANGGRAPH_DIR, LangGraphServer, ServerStartError
from .transcript import handshake_status, recorded_connect

pytestmark = pytest.mark.interop("langgraph")

RUN_TIMEOUT = 60.0      # a run takes ~0.6 s idle (0.5 s of it queue pickup); generous for a busy machine
CHANNELS = ["lifecycle", "messages", "tools"]
PROMPT = "What is the weather in Lyon today?"
ANSWER = "The weather in Lyon: 18°C and sunny."


@pytest.fixture(scope="module")
def server(tmp_path_factory, jwt_secret):
    venv = interop_venv("langgraph")
    log = tmp_path_factory.mktemp("langgraph") / "server.log"
    with LangGraphServer(venv, LANGGRAPH_DIR, env={"E2E_JWT_SECRET": jwt_secret}, log_path=log) as running:
        note_ready(running)
        yield running


def http(server, method: str, path: str, token: str | None, body: dict | None = None) -> tuple[int, object]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.http_url(path), data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def create_thread(server, token: str, transcript=None) -> str:
    """``POST /threads`` as the token's user: under owner scoping a thread must exist first."""
    status, body = http(server, "POST", "/threads", token, {})
    assert status == 200, (status, body)
    if transcript is not None:
        transcript.meta("http", request="POST /threads", status=status, response=body)
    return body["thread_id"]


def stream_url(server, thread_id: str) -> str:
    return server.ws_url(f"/threads/{thread_id}/stream/events")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def run_once(sock, assistant_id: str, prompt: str = PROMPT) -> tuple[dict, list[dict]]:
    """Subscribe, start a run, collect every frame up to the root lifecycle's end."""
    sock.send({"id": 1, "method": "subscription.subscribe", "params": {"channels": CHANNELS}})
    sock.send({"id": 2, "method": "run.start",
               "params": {"assistant_id": assistant_id, "input": {"messages": [{"role": "user", "content": prompt}]}}})
    frames = sock.recv_until(lambda f: f.get("method") == "lifecycle" and not f["params"]["namespace"]
                             and f["params"]["data"]["event"] in ("completed", "failed", "interrupted"), RUN_TIMEOUT)
    replies = {f["id"]: f for f in frames if f["type"] in ("success", "error")}
    assert replies[1]["type"] == "success", replies[1]
    assert replies[2]["type"] == "success", replies[2]
    return replies[2], [f for f in frames if f["type"] == "event"]


def data(event: dict) -> dict:
    return event["params"]["data"]


def kinds(events: list[dict]) -> list[str]:
    """``method:event`` of every root event, e.g. ``lifecycle:running``, ``tools:tool-started``."""
    return [f"{e['method']}:{data(e).get('event')}" for e in events if not e["params"]["namespace"]]


def test_run_streams_reasoning_tool_call_and_answer(server, make_token, transcript):
    token = make_token("user-a")
    thread_id = create_thread(server, token, transcript)
    with recorded_connect(stream_url(server, thread_id), transcript, bearer(token)) as sock:
        reply, events = run_once(sock, "agent")
    run_id = reply["result"]["run_id"]
    order = kinds(events)
    assert order[0] == "lifecycle:running" and order[-1] == "lifecycle:completed", order
    assert f"synth:{run_id}:lc||completed" == events[-1]["event_id"]

    root = [e for e in events if not e["params"]["namespace"]]
    reasoning = "".join(data(e)["delta"]["reasoning"] for e in root
                        if data(e).get("delta", {}).get("type") == "reasoning-delta")
    assert reasoning == "The user asks about the weather. The city is Lyon. I will call get_weather."

    tools = [data(e) for e in root if e["method"] == "tools"]
    assert [t["event"] for t in tools] == ["tool-started", "tool-output-delta", "tool-finished"]
    started, progress, finished = tools
    assert started["tool_name"] == "get_weather" and started["input"] == {"city": "Lyon"}
    assert progress["delta"] == {"progress": "looking up Lyon"}
    assert finished["tool_call_id"] == started["tool_call_id"]
    assert finished["output"]["content"] == "18°C and sunny in Lyon"
    assert finished["output"]["status"] == "success"

    # The answer is streamed after the tool finished, word by word, and uses its result.
    after_tool = root[root.index(next(e for e in root if data(e).get("event") == "tool-finished")):]
    deltas = [data(e)["delta"]["text"] for e in after_tool if data(e).get("delta", {}).get("type") == "text-delta"]
    assert len(deltas) > 1 and "".join(deltas) == ANSWER
    assert order.index("tools:tool-started") < order.index("tools:tool-finished") < len(order) - 1


def test_failing_tool_ends_the_run_failed(server, make_token, transcript):
    token = make_token("user-a")
    thread_id = create_thread(server, token, transcript)
    with recorded_connect(stream_url(server, thread_id), transcript, bearer(token)) as sock:
        _, events = run_once(sock, "agent_failing")
    root = [e for e in events if not e["params"]["namespace"]]
    tools = [data(e) for e in root if e["method"] == "tools"]
    assert [t["event"] for t in tools] == ["tool-started", "tool-error"]
    assert tools[1]["tool_call_id"] == tools[0]["tool_call_id"]
    assert tools[1]["message"] == "weather service unavailable"
    end = data(root[-1])
    assert end["event"] == "failed" and end["graph_name"] == "agent_failing"
    # Recorded with these pins: the exception's text, not a sanitized "An internal error occurred".
    assert end["error"] == "weather service unavailable"
    after_tool = root[[e["method"] for e in root].index("tools"):]
    assert not [e for e in after_tool if data(e).get("delta", {}).get("type") == "text-delta"], "an answer came"


@pytest.mark.parametrize("case", ["no_token", "garbage", "wrong_signature", "expired", "no_exp", "basic_scheme",
                                  "query_wrong_signature"])
def test_bad_or_missing_token_is_refused_with_403(server, make_token, jwt_secret, transcript, case):
    import jwt as pyjwt
    thread_id = str(uuid.uuid4())
    url, headers = stream_url(server, thread_id), {}
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
    elif case == "query_wrong_signature":
        url += "?token=" + make_token("user-a", secret="another-secret-" + "x" * 32)
    assert handshake_status(url, transcript, headers) == 403


def test_valid_token_in_header_or_query_is_accepted(server, make_token, transcript):
    token = make_token("user-a")
    thread_id = create_thread(server, token, transcript)
    assert handshake_status(stream_url(server, thread_id), transcript, bearer(token)) == 101
    assert handshake_status(stream_url(server, thread_id) + f"?token={token}", transcript) == 101


def test_other_user_cannot_see_or_use_the_thread(server, make_token, transcript):
    """User B, with a valid token of her own, on user A's thread: the upgrade succeeds (101),
    then the server closes with 1011 "thread stream ended" and B gets no event of A's run;
    B's run.start is never accepted; over HTTP the thread does not exist for B."""
    token_a, token_b = make_token("user-a"), make_token("user-b")
    thread_id = create_thread(server, token_a, transcript)
    status, body = http(server, "GET", f"/threads/{thread_id}", token_b)
    transcript.meta("http", request="GET /threads/<user-a's thread> as user-b", status=status, response=body)
    assert status == 404

    with recorded_connect(stream_url(server, thread_id), transcript, bearer(token_a), conn="A") as sock_a:
        with recorded_connect(stream_url(server, thread_id), transcript, bearer(token_b), conn="B") as sock_b:
            assert sock_b.response.status_code == 101
            try:
                sock_b.send({"id": 1, "method": "subscription.subscribe", "params": {"channels": CHANNELS}})
                sock_b.send({"id": 2, "method": "run.start", "params": {
                    "assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "weather in Oslo"}]}}})
            except ConnectionClosed:
                pass  # the server may close before B's commands go out
            code, reason, b_frames = sock_b.wait_closed(RUN_TIMEOUT)
        assert (code, reason) == (1011, "thread stream ended")
        b_json = [json.loads(f) for f in b_frames]
        assert not [f for f in b_json if f["type"] == "event"], b_json
        assert not [f for f in b_json if f.get("id") == 2 and f["type"] == "success"], "B's run.start was accepted"
        for f in b_json:
            if f.get("id") == 2:
                assert f == {"type": "error", "id": 2, "error": "unknown_error",
                             "message": "404: Thread or assistant not found."}

        # A's own run on the same thread works, and B's attempt left no run behind.
        reply, events = run_once(sock_a, "agent")
        assert kinds(events)[-1] == "lifecycle:completed"
    status, runs = http(server, "GET", f"/threads/{thread_id}/runs", token_a)
    transcript.meta("http", request="GET /threads/<thread>/runs as user-a", status=status,
                    run_ids=[r["run_id"] for r in runs])
    assert status == 200 and [r["run_id"] for r in runs] == [reply["result"]["run_id"]]


def test_thread_must_be_created_first(server, make_token, transcript):
    """Under owner scoping a fresh thread id (never POSTed) opens (101) and is closed at once
    with 1011: the WebSocket does not create threads for a scoped user."""
    token = make_token("user-a")
    with recorded_connect(stream_url(server, str(uuid.uuid4())), transcript, bearer(token)) as sock:
        assert sock.response.status_code == 101
        code, reason, frames = sock.wait_closed(RUN_TIMEOUT)
    assert (code, reason, frames) == (1011, "thread stream ended", [])


def test_a_taken_port_fails_the_start_clearly(tmp_path, jwt_secret):
    """langgraph dev moves to another port when ours is taken; the fixture must not follow it."""
    venv = interop_venv("langgraph")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = LangGraphServer(venv, LANGGRAPH_DIR, port, env={"E2E_JWT_SECRET": jwt_secret},
                                 log_path=tmp_path / "server.log")
        with pytest.raises(ServerStartError, match=f"port {port} was taken, and langgraph dev silently moved"):
            server.start()
    assert not server.running and not server.workdir.exists()
