"""Helpers for the tests of the netra and ag-ui wires: a raw ``websockets`` client and the
rules of each wire, written from docs/protocol.md ("Variants: the netra wire", "AG-UI over a
WebSocket"); nothing is imported from ``reference_backend/`` or ``libraries/``.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import datetime

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

NETRA_TERMINAL = ("agent_completed", "agent_error")
AGUI_TERMINAL = ("RUN_FINISHED", "RUN_ERROR")


def b64url(token: str) -> str:
    """The netra subprotocol form of a JWT: base64url, no padding."""
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def open_ws(server, *, subprotocols=(), headers=None, query: str | None = None, ssl=None):
    """A ``websockets`` sync connection to the server's /ws (use it in a ``with``)."""
    url = server.ws_url + (f"?token={query}" if query else "")
    return connect(url, subprotocols=list(subprotocols) or None, additional_headers=headers,
                   open_timeout=20, close_timeout=5, ssl=ssl, max_size=None)


def recv(ws, timeout: float = 10.0) -> dict:
    """Next text frame as JSON; TimeoutError when none comes, ConnectionClosed on a close."""
    frame = ws.recv(timeout=timeout)
    assert isinstance(frame, str), f"binary frame {frame!r}"
    return json.loads(frame)


def recv_until(ws, done, timeout: float = 10.0, answer_pings: bool = False) -> list[dict]:
    """Frames up to and including the first for which ``done(frame)`` is true."""
    frames, deadline = [], time.monotonic() + timeout
    while True:
        frame = recv(ws, max(0.01, deadline - time.monotonic()))
        if answer_pings and frame.get("type") == "ping":
            ws.send(json.dumps({"type": "pong"}))
        frames.append(frame)
        if done(frame):
            return frames


def read_until_quiet(ws, quiet: float = 0.4, first: float = 10.0, limit: float = 15.0):
    """Every frame until none comes for ``quiet`` seconds: (frames, (close code, reason) or None).

    For runs whose end can't be recognised (a fault dropped or moved the terminal event)."""
    frames, deadline = [], time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            frames.append(recv(ws, quiet if frames else first))
        except TimeoutError:
            return frames, None
        except ConnectionClosed as closed:
            return frames, (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, None)
    raise AssertionError(f"frames kept coming for {limit}s: {[f.get('type') for f in frames]}")


def closed_with(ws, timeout: float = 10.0) -> tuple[int | None, str | None]:
    """Read until the server closes: its (code, reason). Fails if a frame comes first."""
    try:
        frame = ws.recv(timeout=timeout)
    except ConnectionClosed as closed:
        return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, None)
    raise AssertionError(f"expected the close, got the frame {frame!r}")


def new_ids() -> tuple[str, str]:
    return "thread_" + secrets.token_hex(4), "run_" + secrets.token_hex(4)


# --- netra ------------------------------------------------------------------------------

def netra_message(content: str = "hello", thread_id: str | None = None, run_id: str | None = None) -> str:
    payload = {"content": content}
    if thread_id:
        payload["thread_id"] = thread_id
    if run_id:
        payload["run_id"] = run_id
    return json.dumps({"type": "user_message", "payload": payload})


def netra_run(ws, content: str = "hello", thread_id: str | None = None, timeout: float = 10.0):
    """Send one user_message with fresh ids; (events to the terminal one, thread_id, run_id)."""
    fresh_thread, run_id = new_ids()
    thread_id = thread_id or fresh_thread
    ws.send(netra_message(content, thread_id, run_id))
    return recv_until(ws, lambda f: f.get("type") in NETRA_TERMINAL, timeout), thread_id, run_id


def iso_seconds(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def netra_violations(events: list[dict], run_id: str, thread_id: str, user_id: str) -> dict[int, str]:
    """docs/protocol.md rules 1-4 on flat netra events: rule number -> reason."""
    broken: dict[int, str] = {}
    types = [e.get("type") for e in events]
    terminals = [i for i, t in enumerate(types) if t in NETRA_TERMINAL]
    if not types or types[0] != "agent_started":
        broken[1] = f"first event is {types[:1]}, not agent_started"
    elif len(terminals) != 1 or terminals[0] != len(types) - 1:
        broken[1] = f"terminal events at {terminals} of {len(types)}: {types}"
    start = types.index("agent_started") + 1 if "agent_started" in types else 0
    end = terminals[-1] if terminals and terminals[-1] >= start else len(types)
    if "agent_thinking" not in types[start:end]:
        broken[2] = f"no agent_thinking between start and end: {types}"
    open_calls: dict[str, str] = {}
    for event in events:
        if event.get("type") == "tool_executing":
            open_calls[event["execution_id"]] = event["tool_name"]
        elif event.get("type") == "tool_completed":
            if open_calls.pop(event["execution_id"], None) != event["tool_name"]:
                broken[3] = f"tool_completed {event['execution_id']} without its tool_executing: {types}"
                break
    else:
        if open_calls:
            broken[3] = f"tool calls never completed: {open_calls}"
    wrong = [e for e in events if (e.get("run_id"), e.get("thread_id"), e.get("user_id")) != (run_id, thread_id, user_id)]
    if wrong or len({e.get("request_id") for e in events}) > 1:
        broken[4] = f"{len(wrong)} event(s) with other ids, e.g. {wrong[:1]}"
    return broken


# --- ag-ui ------------------------------------------------------------------------------

def agui_input(content: str = "hello", thread_id: str | None = None, run_id: str | None = None) -> dict:
    fresh_thread, fresh_run = new_ids()
    return {
        "threadId": thread_id or fresh_thread,
        "runId": run_id or fresh_run,
        "messages": [{"id": "msg_" + secrets.token_hex(4), "role": "user", "content": content}],
        "tools": [],
        "context": [],
        "state": {},
        "forwardedProps": {},
    }


def agui_run(ws, content: str = "hello", thread_id: str | None = None, timeout: float = 10.0):
    """Send one RunAgentInput; (events to RUN_FINISHED/RUN_ERROR, the input)."""
    run_input = agui_input(content, thread_id)
    ws.send(json.dumps(run_input))
    return recv_until(ws, lambda f: f.get("type") in AGUI_TERMINAL, timeout), run_input


def agui_violations(events: list[dict], thread_id: str, run_id: str) -> dict[str, str]:
    """The AG-UI rules the faults break: "lifecycle", "tools", "ids", "messages" -> reason."""
    broken: dict[str, str] = {}
    types = [e.get("type") for e in events]
    if not types or types[0] != "RUN_STARTED":
        broken["lifecycle"] = f"first event is {types[:1]}, not RUN_STARTED"
    elif types.count("RUN_FINISHED") != 1 or types[-1] != "RUN_FINISHED" or "RUN_ERROR" in types:
        broken["lifecycle"] = f"not one RUN_FINISHED at the end: {types}"
    calls: dict[str, str] = {}  # toolCallId -> started, ended, resulted
    for event in events:
        kind, call = event.get("type"), event.get("toolCallId")
        state = calls.get(call)
        if kind == "TOOL_CALL_START":
            calls[call] = "started"
        elif kind == "TOOL_CALL_ARGS" and state != "started":
            broken["tools"] = f"TOOL_CALL_ARGS for {call} in state {state}"
        elif kind == "TOOL_CALL_END":
            if state != "started":
                broken["tools"] = f"TOOL_CALL_END for {call} in state {state}"
            calls[call] = "ended"
        elif kind == "TOOL_CALL_RESULT":
            if state != "ended":
                broken["tools"] = f"TOOL_CALL_RESULT for {call} in state {state}"
            calls[call] = "resulted"
        elif kind == "RUN_FINISHED":  # every call ends before the run does (a cut-off stream is lifecycle's)
            unfinished = {c: s for c, s in calls.items() if s != "resulted"}
            if unfinished and "tools" not in broken:
                broken["tools"] = f"tool calls not completed at RUN_FINISHED: {unfinished}"
    started = [e for e in events if e.get("type") == "RUN_STARTED"]
    finished = [e for e in events if e.get("type") == "RUN_FINISHED"]
    ids = {(e.get("threadId"), e.get("runId")) for e in started + finished}
    if ids and ids != {(thread_id, run_id)}:
        broken["ids"] = f"run ids {sorted(ids)}, expected {(thread_id, run_id)}"
    open_ids: set[tuple[str, str]] = set()
    for event in events:
        kind = event.get("type", "")
        if kind == "RUN_FINISHED" and open_ids and "messages" not in broken:
            broken["messages"] = f"open at RUN_FINISHED: {sorted(open_ids)}"
        for family in ("TEXT_MESSAGE", "REASONING_MESSAGE", "REASONING"):
            if kind.startswith(family + "_") and kind[len(family) + 1:] in ("START", "CONTENT", "END"):
                key = (family, event.get("messageId"))
                part = kind[len(family) + 1:]
                if part == "START":
                    if key in open_ids:
                        broken["messages"] = f"{kind} for open {key}"
                    open_ids.add(key)
                elif key not in open_ids:
                    broken["messages"] = f"{kind} for {key}, which is not open"
                elif part == "END":
                    open_ids.discard(key)
    return broken
