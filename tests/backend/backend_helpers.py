"""Helpers for the reference backend's tests: server processes, tokens, frames, rule checks.

Everything here is written from docs/protocol.md alone (no import from ``libraries/``
or ``reference_backend/``): the tests speak to the backend only over sockets.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import jwt
import websocket

import forked  # tests/forked.py: the server starts forked from a process with its imports done

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"^reference backend listening on (https?://127\.0\.0\.1:(\d+))$")
JWT_SECRET = "tests-backend-secret-" + secrets.token_hex(16)
SIMULATION_KEY = "tests-backend-key-" + secrets.token_hex(8)
# Fault servers get a small think delay so runs are quick but still spread in time.
FAST_DELAY = 0.01
TERMINAL = ("agent_completed", "agent_error")


class BackendServer:
    """A server child process (default ``python -m reference_backend``); ``url`` once its ready line is read."""

    def __init__(self, args: list[str], log_path: Path, env: dict | None = None,
                 program: tuple[str, ...] = ("-m", "reference_backend")) -> None:
        self.args = list(args)
        self.log_path = log_path
        environ = {k: v for k, v in os.environ.items() if not k.startswith("REFERENCE_BACKEND_")}
        environ.update(E2E_JWT_SECRET=JWT_SECRET, E2E_OAUTH_SIMULATION_KEY=SIMULATION_KEY, PYTHONUNBUFFERED="1")
        environ.update(env or {})
        self._stderr = open(log_path, "wb")
        self.proc = forked.popen(
            [sys.executable, *program, *self.args],
            cwd=ROOT, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr,
        )
        self.stdout_lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        self.url: str | None = None
        self.port: int | None = None

    def _drain(self) -> None:
        for raw in self.proc.stdout:
            self.stdout_lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.stdout_lines.put(None)

    def wait_ready(self, timeout: float = 60.0) -> "BackendServer":  # a hang bound: boots in 0.3 s idle
        try:
            line = self.stdout_lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise AssertionError(f"no ready line within {timeout}s; stderr:\n{self.stderr()}") from None
        match = READY.match(line or "")
        assert match, f"unexpected first stdout line {line!r}; stderr:\n{self.stderr()}"
        self.url, self.port = match.group(1), int(match.group(2))
        return self

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http"):] + "/ws"  # http -> ws, https -> wss

    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode


# --- tokens ---------------------------------------------------------------------------

def make_token(sub: str | None = "user_a", *, lifetime: float = 3600, secret: str = JWT_SECRET,
               drop: tuple[str, ...] = (), **extra) -> str:
    now = int(time.time())
    claims = {"sub": sub, "email": f"{sub}@example.test", "iat": now, "exp": now + int(lifetime), "type": "access"}
    claims.update(extra)
    for key in drop:
        claims.pop(key, None)
    return jwt.encode(claims, secret, algorithm="HS256")


def expired_token(sub: str = "user_a") -> str:
    return make_token(sub, lifetime=-120)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# --- WebSocket helpers (websocket-client) ---------------------------------------------

def connect(server: BackendServer, token: str | None, how: str = "subprotocol", timeout: float = 5.0):
    """Open /ws offering the token the given way: subprotocol, header, or query."""
    url, kwargs = server.ws_url, {}
    if how == "subprotocol":
        kwargs["subprotocols"] = ["jwt-auth", f"jwt.{token}"]
    elif how == "header":
        kwargs["header"] = [f"Authorization: Bearer {token}"]
    elif how == "query":
        url += f"?token={token}"
    elif how != "none":
        raise ValueError(how)
    return websocket.create_connection(url, timeout=timeout, **kwargs)


def refusal_status(server: BackendServer, token: str | None, how: str = "subprotocol") -> int | None:
    """The HTTP status of a refused upgrade, or None if the WebSocket was opened."""
    try:
        ws = connect(server, token, how)
    except websocket.WebSocketBadStatusException as exc:
        return exc.status_code
    ws.close()
    return None


class Closed(Exception):
    """The server closed the WebSocket; ``code`` is its close code."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with code {code}")
        self.code = code


def recv_json(ws, timeout: float = 5.0) -> dict:
    """Next text frame as JSON; raises Closed on a close frame, TimeoutError when none arrives in time."""
    ws.settimeout(timeout)
    while True:
        try:
            opcode, frame = ws.recv_data_frame(True)
        except websocket.WebSocketTimeoutException:
            raise TimeoutError(f"no frame within {timeout}s") from None
        except websocket.WebSocketConnectionClosedException:
            raise Closed(None) from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise Closed(struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else None)
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return json.loads(frame.data.decode())
        # pings/pongs are handled by the client library; keep reading


def open_session(server: BackendServer, user: str, how: str = "subprotocol"):
    """Connect as ``user`` and consume the welcome frame; returns (ws, welcome)."""
    ws = connect(server, make_token(user), how)
    return ws, recv_json(ws)


def send_message(ws, content: str = "hello", thread_id: str | None = None,
                 run_id: str | None = None) -> tuple[str, str]:
    """Send a user_message with explicit ids; returns (thread_id, run_id)."""
    thread_id = thread_id or "thread_" + secrets.token_hex(4)
    run_id = run_id or "run_" + secrets.token_hex(4)
    payload = {"content": content, "thread_id": thread_id, "run_id": run_id}
    ws.send(json.dumps({"type": "user_message", "payload": payload}))
    return thread_id, run_id


def read_run(ws, timeout: float = 5.0) -> list[dict]:
    """Frames up to and including the first terminal event."""
    events = []
    deadline = time.monotonic() + timeout
    while True:
        event = recv_json(ws, max(0.01, deadline - time.monotonic()))
        events.append(event)
        if event.get("type") in TERMINAL:
            return events


def read_until_quiet(ws, quiet: float = 0.4, first: float = 5.0, limit: float = 10.0) -> tuple[list[dict], int | None]:
    """Every frame until none arrives for ``quiet`` seconds (``first`` for the first one).

    Returns (frames, close code or None). For runs whose end can't be recognised
    (a fault dropped or moved the terminal event)."""
    frames, deadline = [], time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            frames.append(recv_json(ws, quiet if frames else first))
        except TimeoutError:
            return frames, None
        except Closed as closed:
            return frames, closed.code
    raise AssertionError(f"frames kept coming for {limit}s: {[f.get('type') for f in frames]}")


def assert_nothing_pending(ws) -> None:
    """Ping and require the pong to be the very next frame (no stray event queued before it)."""
    ws.send(json.dumps({"type": "ping"}))
    frame = recv_json(ws)
    assert frame["type"] == "pong", f"expected pong next, got {frame}"


# --- docs/protocol.md rules, checked independently of the kit's libraries ------------------

def violated_rules(events: list[dict], run_id: str, thread_id: str, user_id: str,
                   first_event_delay: float | None = None) -> dict[int, str]:
    """Rule number -> reason, for rules 1-4 and 6 (first event within 2 s) of docs/protocol.md."""
    broken: dict[int, str] = {}
    types = [e.get("type") for e in events]
    terminals = [i for i, t in enumerate(types) if t in TERMINAL]
    if not types or types[0] != "agent_started":
        broken[1] = f"first event is {types[:1]}, not agent_started"
    elif len(terminals) != 1 or terminals[0] != len(types) - 1:
        broken[1] = f"terminal events at {terminals} of {len(types)}: {types}"
    # Between the start and the terminal event, or the end of what arrived if none did.
    start = types.index("agent_started") + 1 if "agent_started" in types else 0
    end = terminals[-1] if terminals and terminals[-1] >= start else len(types)
    if "agent_thinking" not in types[start:end]:
        broken[2] = f"no agent_thinking between start and end: {types}"
    open_tools: list[str] = []
    for event in events:
        name = (event.get("data") or {}).get("tool_name")
        if event.get("type") == "tool_executing":
            open_tools.append(name)
        elif event.get("type") == "tool_completed":
            if name not in open_tools:
                broken[3] = f"tool_completed {name} without tool_executing: {types}"
                break
            open_tools.remove(name)
    else:
        if open_tools:
            broken[3] = f"tool_executing {open_tools} never completed: {types}"
    expected = (run_id, thread_id, user_id)
    wrong = [e for e in events if (e.get("run_id"), e.get("thread_id"), e.get("user_id")) != expected]
    if wrong:
        broken[4] = f"{len(wrong)} event(s) with other ids, e.g. {wrong[0]}"
    if first_event_delay is not None and first_event_delay > 2.0:
        broken[6] = f"first event after {first_event_delay:.2f}s"
    return broken
