"""Locust load profile: the kit's chat session as a Locust user (optional dependency).

Each simulated user repeatedly opens a WebSocket with its own token, waits until the
connection is usable (the welcome frame, or the dialect's setup commands), sends one
user message, reads the agent run to its end, judges it with the dialect's rules
(``agentkit.rules``) and closes. The handshake is built from the same
``agentkit.wire.spec.ConnectionSpec`` as the keyword libraries build it, and every frame
goes to the same sans-I/O ``agentkit.wire.session.AgentSession`` both of the kit's
transports feed, so a server gets the same verdict here as in the suites: which selected
subprotocol is right, what a refusal is, server heartbeats answered and kept out of the
run, which frames belong to the run, the grace window after its end. Two request types
are reported to Locust: ``WS connect`` (handshake + welcome/setup) and ``WS chat run``
(message to the run's terminal event; a broken rule or an event of a run the connection
did not start is a failure naming the rule).

websocket-client is used because it is plain blocking sockets, which Locust's gevent
monkey-patching turns cooperative: thousands of users per worker process. Each user
reads its own socket in its own greenlet, and never calls websocket-client's ``close()``
(it swallows the greenlet kill Locust stops a user with).

Target: ``--host`` (``ws://host:port/ws``; an ``http(s)://`` base gets ``/ws`` appended)
or ``E2E_WS_URL``; tokens are signed with ``E2E_JWT_SECRET``. Optional: ``E2E_DIALECT``
(a built-in name or a JSON file; default ``default``), ``E2E_AUTH_MODE`` (subprotocol |
bearer | query | none; default the dialect's), ``E2E_TOKEN_ENCODING`` (raw | base64url;
default the dialect's), ``E2E_SESSION_TIMEOUT`` (seconds, default 30),
``E2E_FIRST_EVENT_TIMEOUT`` and ``E2E_RUN_TIMEOUT`` (rule 6 budgets, default 2 and 30 s),
``E2E_RUN_GRACE`` (seconds a run keeps listening after its end, default 0.3),
``E2E_VERIFY_TLS`` (``false`` for test systems only), ``E2E_CA_FILE``, ``E2E_CLIENT_CERT``
and ``E2E_CLIENT_KEY`` (mutual TLS), ``E2E_BACKEND_URL`` (for dialects that prepare a
connection over HTTP). ``E2E_LOCUST_ITERATIONS``: each user runs that many sessions, then
stops; the test ends when every user has (a run that does not depend on how fast the
machine is; keep ``-t`` as a cap).

    locust -f load/locustfile.py --headless -u 100 -r 20 -t 1m --host ws://127.0.0.1:8000/ws
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "libraries"))

import websocket  # noqa: E402  (websocket-client)
from locust import User, between, task  # noqa: E402
from locust.exception import StopUser  # noqa: E402

from agentkit import rules  # noqa: E402
from agentkit.rules.schemas import SchemaCheckUnavailable  # noqa: E402
from agentkit.tokens import make_token  # noqa: E402
from agentkit.transports.threaded import HandshakeFailed, HandshakeRefused, connect_websocket, prepare  # noqa: E402
from agentkit.wire import dialect as dialects  # noqa: E402
from agentkit.wire.event import Event  # noqa: E402
from agentkit.wire.masking import redact  # noqa: E402
from agentkit.wire.paths import render  # noqa: E402
from agentkit.wire.run import RunRecord  # noqa: E402
from agentkit.wire.session import DEFAULT_GRACE, AgentSession  # noqa: E402
from agentkit.wire.spec import ConnectionSpec, ws_base  # noqa: E402
from agentkit.wire.tls import TLSConfig  # noqa: E402

_user_numbers = itertools.count()
_process_tag = uuid.uuid4().hex[:6]  # workers are separate processes: keep user ids distinct
_VARIABLE = re.compile(r"\b\d+\.\d+s\b|#\d+|[0-9a-f]{12,}")  # ids and times out of failure names: Locust groups by text
MESSAGE = "Load check: please answer briefly."


def _ws_url(host: str | None) -> str:
    url = (host or os.environ.get("E2E_WS_URL") or "").strip()
    if not url:
        raise RuntimeError("No target: pass --host ws://host:port/ws or set E2E_WS_URL.")
    if url.startswith(("http://", "https://")):
        url = "ws" + url[4:]
        if url.count("/") < 3 or url.endswith("/"):
            url = url.rstrip("/") + "/ws"
    return url


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


class SessionFailed(Exception):
    """One session's failure as Locust shows it."""


class _Socket:
    """One connection read in the calling greenlet: each frame goes to the agent session at
    once and its replies (heartbeat answers) are sent at once."""

    def __init__(self, ws: websocket.WebSocket, session: AgentSession, name: str) -> None:
        self.ws, self.session, self.name = ws, session, name
        self.seq = 0

    def send(self, text: str) -> float:
        sent_at = time.perf_counter()
        self.ws.send(text)
        return sent_at

    def read(self, until: float) -> Event | None:
        """The next frame (the close too), or ``None`` when ``until`` (perf_counter) passes first."""
        while self.session.closed is None:
            remaining = until - time.perf_counter()
            if remaining <= 0:
                return None
            self.ws.settimeout(remaining)
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except (websocket.WebSocketTimeoutException, socket.timeout, TimeoutError):
                return None
            except (OSError, websocket.WebSocketException) as err:
                return self._take(Event.closed(self.seq + 1, time.perf_counter(), self.name, None,
                                               f"connection lost without a close frame: {redact(str(err))}",
                                               self.session.dialect))
            now = time.perf_counter()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                return self._take(Event.closed(self.seq + 1, now, self.name, code,
                                               data[2:].decode("utf-8", "replace"), self.session.dialect))
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                payload = data.decode("utf-8", "replace") if opcode == websocket.ABNF.OPCODE_TEXT else data
                return self._take(Event.from_text(self.seq + 1, now, self.name, payload, self.session.dialect))
            # a WebSocket ping or pong: websocket-client answered the ping itself
        return None

    def _take(self, event: Event) -> Event:
        self.seq = event.seq
        for reply in self.session.receive(event):
            try:
                self.ws.send(reply)
            except (OSError, websocket.WebSocketException):
                pass
        return event

    def wait(self, condition, until: float) -> bool:
        """Read frames until ``condition()`` holds, the connection closes or ``until`` passes."""
        while not condition():
            if self.read(until) is None:
                return condition()
        return True

    def close(self) -> None:
        """The client's close: a close frame, the server's answer (at most a second), the socket
        down. Not websocket-client's ``close()``: its bare ``except`` swallows the greenlet kill
        Locust stops a user with, and that user would then never stop."""
        try:
            if self.session.closed is None:
                self.ws.send_close()
                self.wait(lambda: self.session.closed is not None, time.perf_counter() + 1.0)
        except (OSError, websocket.WebSocketException):
            pass  # the peer is gone already
        finally:
            self.ws.shutdown()


_finished_users: list = []


class AgentChatUser(User):
    """One simulated chat user: connect, one message, its whole agent run, close; repeat."""

    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.iterations = int(os.environ.get("E2E_LOCUST_ITERATIONS") or 0)
        self.done = 0
        self.dialect = dialects.load(os.environ["E2E_DIALECT"]) if os.environ.get("E2E_DIALECT") \
            else dialects.current()
        self.auth = os.environ.get("E2E_AUTH_MODE") or self.dialect.connect["auth"][0]
        secret = os.environ.get("E2E_JWT_SECRET")
        if self.auth != "none" and not secret:
            raise RuntimeError("E2E_JWT_SECRET is not set: it signs one test token per simulated user.")
        self.user_id = f"locust-{_process_tag}-{next(_user_numbers)}"
        self.token = make_token(secret, self.user_id) if self.auth != "none" else None
        self.url = _ws_url(self.host)
        self.http_base = os.environ.get("E2E_BACKEND_URL") or None
        self.session_timeout = _seconds("E2E_SESSION_TIMEOUT", 30.0)
        self.first_event_budget = _seconds("E2E_FIRST_EVENT_TIMEOUT", 2.0)
        self.run_budget = _seconds("E2E_RUN_TIMEOUT", 30.0)
        self.grace = _seconds("E2E_RUN_GRACE", DEFAULT_GRACE)
        self.tls = TLSConfig(verify=os.environ.get("E2E_VERIFY_TLS", "true").lower() not in ("0", "false", "no"),
                             ca=os.environ.get("E2E_CA_FILE") or None,
                             client_cert=os.environ.get("E2E_CLIENT_CERT") or None,
                             client_key=os.environ.get("E2E_CLIENT_KEY") or None)

    def _spec(self, thread_id: str) -> ConnectionSpec:
        connect = self.dialect.connect
        values = self.dialect.template_values(ws_url=self.url, ws_base=ws_base(self.url), thread_id=thread_id)
        return ConnectionSpec(url=render(connect.get("url", "{ws_url}"), values), token=self.token, auth=self.auth,
                              subprotocols_template=connect.get("subprotocols", ["jwt-auth", "jwt.{token}"]),
                              token_encoding=os.environ.get("E2E_TOKEN_ENCODING")
                              or connect.get("token_encoding", "raw"),
                              query_param=connect.get("query_param", "token"), headers=dict(connect.get("headers", {})),
                              tls=self.tls, open_timeout=min(10.0, self.session_timeout))

    def _fire(self, name: str, started: float, length: int, exception: Exception | None,
              ended: float | None = None) -> None:
        took = ((ended if ended is not None else time.perf_counter()) - started) * 1000.0
        self.environment.events.request.fire(request_type="WS", name=name, response_time=took,
                                             response_length=length, exception=exception, context={})

    def _open(self, spec: ConnectionSpec, session: AgentSession, thread_id: str) -> _Socket:
        """The handshake as the step-by-step transport makes it; the session judges the
        selected subprotocol."""
        try:
            prepare(self.dialect, spec, self.http_base, self.dialect.template_values(thread_id=thread_id))
            ws, offered, _ = connect_websocket(spec)
        except (HandshakeRefused, HandshakeFailed) as err:
            raise SessionFailed(str(err)) from None
        sock = _Socket(ws, session, self.user_id)
        selected = {k.lower(): v for k, v in (ws.getheaders() or {}).items()}.get("sec-websocket-protocol")
        problem = session.check_subprotocol(offered, selected)
        if problem:
            sock.close()
            raise SessionFailed(f"handshake: {problem}")
        return sock

    def _ready(self, sock: _Socket, deadline: float) -> None:
        """Until the connection is usable: the welcome (where the dialect has one) or any agent
        event, then the dialect's setup commands and their replies."""
        session = sock.session
        if self.dialect.welcome_presence == "required":
            sock.wait(lambda: session.accepted, deadline)
            if not session.accepted:
                refusal = session.refusal()
                if refusal is not None:
                    raise SessionFailed(f"refused: {refusal.describe()}")
                if session.closed is not None:
                    raise SessionFailed(f"connection closed before the welcome frame: {session.closed.summary(160)}")
                raise SessionFailed(f"no welcome frame within {self.session_timeout:g}s")
        for text in session.setup_frames():
            sock.send(text)
        if not sock.wait(lambda: session.setup_done, deadline):
            raise SessionFailed("no reply to the dialect's setup command(s)")
        if session.setup_failure is not None:
            raise SessionFailed(f"setup command refused: {session.setup_failure.summary(160)}")
        problem = session.welcome_problem()
        if problem:
            raise SessionFailed(problem)

    def _run(self, sock: _Socket, thread_id: str, deadline: float) -> tuple[RunRecord, Exception | None]:
        """One message, read to the end of its run (its grace window included), judged."""
        session = sock.session
        record, text = session.start_run(MESSAGE, thread_id)
        record.sent_at = sock.send(text)
        first_deadline: float | None = record.sent_at + self.first_event_budget
        while not session.run_done(record, time.perf_counter()):
            until = min(deadline, session.run_wait_until(record) or deadline)
            if first_deadline is not None and not record.agent_events:
                until = min(until, first_deadline)
            if sock.read(until) is not None:
                continue
            now = time.perf_counter()
            if first_deadline is not None and now >= first_deadline and not record.agent_events:
                why = session.unmatched_diagnosis(record)
                if why:
                    return record, SessionFailed(f"no agent event of the run within {self.first_event_budget:g}s: "
                                                 f"{why}")
                first_deadline = None
            if now >= deadline:
                return record, SessionFailed(f"timed out after {self.session_timeout:g}s before the run ended")
        try:
            violations = (rules.check_run(record, self.first_event_budget, self.run_budget)
                          + rules.foreign_violations(list(session.foreign), session.user_id, session.name))
        except SchemaCheckUnavailable as err:
            return record, SessionFailed(str(err))
        if violations:
            return record, SessionFailed(_VARIABLE.sub("#", str(violations[0])))
        if record.terminal is not None and not record.succeeded:
            return record, SessionFailed(_VARIABLE.sub("#", f"the run ended with {record.terminal.type}: "
                                                            f"{record.terminal.field('error')!r}"))
        return record, None

    @task
    def chat_session(self) -> None:
        started = time.perf_counter()
        deadline = started + self.session_timeout
        thread_id = f"thread_{uuid.uuid4().hex[:12]}"
        # the connection's user is the token's subject (none without a token), never read back from the server
        session = AgentSession(self.dialect, self.user_id, self.user_id if self.token else None, self.grace)
        sock = None
        try:
            # --- connect: handshake + welcome (or setup) ---------------------------
            try:
                sock = self._open(self._spec(thread_id), session, thread_id)
                self._ready(sock, deadline)
            except (SessionFailed, OSError, websocket.WebSocketException) as err:
                self._fire("connect", started, 0, err if isinstance(err, SessionFailed)
                           else SessionFailed(f"{type(err).__name__}: {redact(str(err))}"))
                return
            self._fire("connect", started, sum(len(e.raw) for e in session.frames), None)

            # --- chat run: one message to the end of its run -------------------------
            try:
                record, problem = self._run(sock, thread_id, deadline)
            except (OSError, websocket.WebSocketException) as err:
                self._fire("chat run", time.perf_counter(), 0, SessionFailed(f"{type(err).__name__}: {err}"))
                return
            # the run's time is message to terminal event (not the grace window it listened after it)
            ended = record.terminal.received if record.terminal is not None else None
            self._fire("chat run", record.sent_at, sum(len(e.raw) for e in record.events), problem, ended)
        finally:
            if sock is not None:
                sock.close()
            self._count_iteration()

    def _count_iteration(self) -> None:
        """With E2E_LOCUST_ITERATIONS: stop after that many sessions; the last user to stop
        ends the test (a worker ends its part; the master sees every worker stop)."""
        self.done += 1
        if not self.iterations or self.done < self.iterations:
            return
        _finished_users.append(self)
        runner = self.environment.runner
        if runner is not None and len(_finished_users) >= max(1, runner.target_user_count or 0):
            runner.quit()
        raise StopUser()
