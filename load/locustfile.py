"""Locust load profile: the kit's chat session as a Locust user (optional dependency).

Each simulated user repeatedly opens a WebSocket with its own token (handshake built from
``agentkit.spec.ConnectionSpec``, exactly as the keyword libraries build it), waits for
the welcome frame, sends one user message, reads the agent run to its terminal event,
judges it with the protocol rules (``agentkit.rules``) and closes. Two request types are
reported to Locust: ``WS connect`` (handshake + welcome) and ``WS chat run`` (message to
terminal event; a broken rule or a foreign user's event is reported as a failure naming
the rule).

websocket-client is used because it is plain blocking sockets, which Locust's gevent
monkey-patching turns cooperative: thousands of users per worker process.

Target: ``--host`` (``ws://host:port/ws``; an ``http(s)://`` base gets ``/ws`` appended)
or ``E2E_WS_URL``; tokens are signed with ``E2E_JWT_SECRET``. Optional: ``E2E_AUTH_MODE``
(subprotocol | bearer | query), ``E2E_TOKEN_PREFIX``, ``E2E_TOKEN_ENCODING``,
``E2E_DIALECT``, ``E2E_SESSION_TIMEOUT`` (seconds, default 30), ``E2E_FIRST_EVENT_TIMEOUT``
and ``E2E_RUN_TIMEOUT`` (rule 6 budgets, default 2 and 30 s), ``E2E_VERIFY_TLS`` (``false``
for test systems only), ``E2E_CA_FILE``.

    locust -f load/locustfile.py --headless -u 100 -r 20 -t 1m --host ws://127.0.0.1:8000/ws
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "libraries"))

import websocket  # noqa: E402  (websocket-client)
from locust import User, between, task  # noqa: E402

from agentkit import dialect as dialects  # noqa: E402
from agentkit.event import Event  # noqa: E402
from agentkit.rules import RunRecord, check_isolation, check_run  # noqa: E402
from agentkit.spec import ConnectionSpec  # noqa: E402
from agentkit.tokens import make_token  # noqa: E402

_user_numbers = itertools.count()
_process_tag = uuid.uuid4().hex[:6]  # workers are separate processes: keep user ids distinct
_VARIABLE = re.compile(r"\b\d+\.\d+s\b|#\d+|[0-9a-f]{12,}")  # ids and times out of failure names: Locust groups by text


def _ws_url(host: str | None) -> str:
    url = (host or os.environ.get("E2E_WS_URL") or "").strip()
    if not url:
        raise RuntimeError("No target: pass --host ws://host:port/ws or set E2E_WS_URL.")
    if url.startswith(("http://", "https://")):
        url = "ws" + url[4:]
        if url.count("/") < 3 or url.endswith("/"):
            url = url.rstrip("/") + "/ws"
    return url


class SessionFailed(Exception):
    """One session's failure as Locust shows it."""


class AgentChatUser(User):
    """One simulated chat user: connect, one message, its whole agent run, close; repeat."""

    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        secret = os.environ.get("E2E_JWT_SECRET")
        auth = os.environ.get("E2E_AUTH_MODE", "subprotocol")
        if auth != "none" and not secret:
            raise RuntimeError("E2E_JWT_SECRET is not set: it signs one test token per simulated user.")
        self.user_id = f"locust-{_process_tag}-{next(_user_numbers)}"
        self.dialect = (dialects.Dialect.load(os.environ["E2E_DIALECT"]) if os.environ.get("E2E_DIALECT")
                        else dialects.current())
        self.session_timeout = float(os.environ.get("E2E_SESSION_TIMEOUT", "30"))
        self.first_event_budget = float(os.environ.get("E2E_FIRST_EVENT_TIMEOUT", "2"))
        self.run_budget = float(os.environ.get("E2E_RUN_TIMEOUT", "30"))
        self.spec = ConnectionSpec(
            url=_ws_url(self.host), token=make_token(secret, self.user_id) if auth != "none" else None,
            auth=auth, token_prefix=os.environ.get("E2E_TOKEN_PREFIX", "jwt."),
            token_encoding=os.environ.get("E2E_TOKEN_ENCODING", "raw"),
            verify_tls=os.environ.get("E2E_VERIFY_TLS", "true").lower() not in ("0", "false", "no"),
            ca_file=os.environ.get("E2E_CA_FILE") or None, open_timeout=min(10.0, self.session_timeout))
        ctx = self.spec.ssl_context()
        self.sslopt = {"context": ctx} if ctx is not None else None
        self.headers = [f"{k}: {v}" for k, v in self.spec.request_headers().items()]
        self.pong = json.dumps({"type": self.dialect.pong[0] if self.dialect.pong else "pong"})

    def _fire(self, name: str, started: float, length: int, exception: Exception | None) -> None:
        self.environment.events.request.fire(request_type="WS", name=name,
                                             response_time=(time.perf_counter() - started) * 1000.0,
                                             response_length=length, exception=exception, context={})

    def _recv(self, ws, seq: list[int], frames: list[Event], deadline: float) -> Event:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise SessionFailed(f"timed out after {self.session_timeout:g}s")
        ws.settimeout(remaining)
        try:
            data = ws.recv()
        except websocket.WebSocketTimeoutException:
            raise SessionFailed(f"timed out after {self.session_timeout:g}s") from None
        seq[0] += 1
        event = Event.from_text(seq[0], time.perf_counter(), self.user_id, data, self.dialect)
        frames.append(event)
        if event.type in self.dialect.server_ping:
            ws.send(self.pong)
        return event

    @task
    def chat_session(self) -> None:
        spec = self.spec
        started = time.perf_counter()
        deadline = started + self.session_timeout
        frames: list[Event] = []
        seq = [0]
        ws = None
        try:
            # --- connect: handshake + welcome ------------------------------------
            try:
                ws = websocket.create_connection(spec.request_url(), timeout=spec.open_timeout,
                                                 subprotocols=spec.subprotocols() or None, header=self.headers,
                                                 sslopt=self.sslopt, suppress_origin=True,
                                                 skip_utf8_validation=True)
                while True:
                    event = self._recv(ws, seq, frames, deadline)
                    if event.is_welcome or event.is_agent_event:
                        break
            except websocket.WebSocketBadStatusException as err:
                self._fire("connect", started, 0, SessionFailed(f"handshake refused with HTTP {err.status_code}"))
                return
            except (SessionFailed, OSError, websocket.WebSocketException) as err:
                self._fire("connect", started, 0, err if isinstance(err, SessionFailed)
                           else SessionFailed(f"{type(err).__name__}: {err}"))
                return
            self._fire("connect", started, len(frames[-1].raw), None)
            welcome_user = frames[-1].user_id if frames[-1].is_welcome and frames[-1].user_id else self.user_id

            # --- chat run: one message to its terminal event ----------------------
            tag = uuid.uuid4().hex[:12]
            run_id, thread_id = f"locust-run-{tag}", f"locust-thread-{tag}"
            record = RunRecord(self.user_id, welcome_user, run_id, thread_id, time.perf_counter(),
                               dialect=self.dialect)
            ws.send(json.dumps(self.dialect.build_user_message("Load check: please answer briefly.",
                                                               thread_id, run_id)))
            length = 0
            problem: Exception | None = None
            try:
                while True:
                    event = self._recv(ws, seq, frames, deadline)
                    if event.run_id == run_id or event.thread_id == thread_id:
                        record.events.append(event)
                        length += len(event.raw)
                        if event.is_terminal:
                            break
            except SessionFailed as err:
                problem = err
            except (OSError, websocket.WebSocketException) as err:
                record.ended = "closed"
                record.close = Event.closed(seq[0] + 1, time.perf_counter(), self.user_id,
                                            getattr(ws, "close_code", None) or None, "", self.dialect)
            if problem is None:
                violations = (check_run(record, self.first_event_budget, self.run_budget)
                              + check_isolation(frames, welcome_user, self.user_id))
                if violations:
                    problem = SessionFailed(_VARIABLE.sub("#", str(violations[0])))
            self._fire("chat run", record.sent_at, length, problem)
        finally:
            if ws is not None:
                try:
                    ws.close(timeout=2)
                except (OSError, websocket.WebSocketException):
                    pass
