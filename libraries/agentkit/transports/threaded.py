"""Step-by-step WebSocket connections on websocket-client.

One reader thread per connection hands every frame to the connection's
:class:`~agentkit.wire.session.AgentSession` the moment it arrives and sends what the
session answers (heartbeat replies). It never logs: Robot drops log calls from other
threads. Waits match against the session's frame log from a cursor under a condition
variable, so nothing is lost between keywords."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable

import jwt
import websocket
from robot.utils import ConnectionCache

from ..wire.dialect import Dialect, current
from ..wire.event import Event
from ..wire.masking import redact
from ..wire.paths import render
from ..wire.run import RunRecord
from ..wire.session import DEFAULT_GRACE, AgentSession
from ..wire.spec import ConnectionSpec
from ..wire.tls import diagnose
from . import http


class HandshakeRefused(ConnectionError):
    """The server answered the upgrade with a non-101 status."""

    def __init__(self, url: str, status: int | None, body: str = "") -> None:
        self.url, self.status, self.body = url, status, redact(body)
        super().__init__(f"Handshake to {url} refused with HTTP {status}" + (f": {self.body[:200]}" if body else ""))


class HandshakeFailed(ConnectionError):
    """The handshake did not complete: connection refused, DNS, TLS, timeout or an HTTP
    step the dialect makes before connecting."""


@dataclass
class Handshake:
    url: str
    description: str
    status: int | None
    subprotocol: str | None
    offered: list[str]
    duration: float
    headers: dict
    problem: str | None = None   # the selected subprotocol is not the one the dialect expects


def token_subject(token: str | None) -> str | None:
    """The token's ``sub`` (unverified: the server verifies, we only need the user id)."""
    if not token:
        return None
    try:
        sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
        return str(sub) if sub is not None else None
    except jwt.PyJWTError:
        return None


def connect_websocket(spec: ConnectionSpec,
                      multithread: bool = False) -> tuple[websocket.WebSocket, list[str], float]:
    """The WebSocket handshake of ``spec`` with websocket-client; returns the open socket, the
    subprotocols offered and when the handshake began (``perf_counter``, seconds). Raises
    :class:`HandshakeRefused` (a non-101 answer, with its status) or :class:`HandshakeFailed`
    (timeout, TLS, connection: a diagnosis naming the URL).
    The step-by-step keywords and the Locust user make their handshakes here."""
    sslopt = {"context": spec.tls.ssl_context()} if spec.is_tls else None
    ws = websocket.WebSocket(sslopt=sslopt, enable_multithread=multithread, skip_utf8_validation=True)
    headers = [f"{k}: {v}" for k, v in spec.request_headers().items()]
    offered = spec.subprotocols()
    if offered:
        # As a header, not websocket-client's ``subprotocols``: the kit judges the server's
        # choice itself (the same way in every transport), and websocket-client would log
        # the offered list, token included, when it disagrees.
        headers.append(f"Sec-WebSocket-Protocol: {', '.join(offered)}")
    started = time.perf_counter()
    try:
        ws.connect(spec.request_url(), header=headers, timeout=spec.open_timeout, suppress_origin=True)
    except websocket.WebSocketBadStatusException as err:
        body = err.resp_body.decode("utf-8", "replace") if isinstance(err.resp_body, bytes) else str(err.resp_body or "")
        raise HandshakeRefused(spec.url, err.status_code, body) from None
    except (websocket.WebSocketTimeoutException, socket.timeout, TimeoutError):
        raise HandshakeFailed(f"Handshake to {spec.url} did not complete within {spec.open_timeout:g}s "
                              f"(no HTTP 101 answer).") from None
    except ssl.SSLError as err:
        raise HandshakeFailed(diagnose(err, spec.url, spec.tls)) from None
    except (OSError, websocket.WebSocketException) as err:
        tls_problem = http.tls_cause(spec.url, spec.tls, spec.open_timeout)
        if tls_problem:
            raise HandshakeFailed(tls_problem) from None
        raise HandshakeFailed(f"Cannot connect to {spec.url} ({http.connection_reason(err)}; {redact(str(err))}). "
                              "Check that the service runs there and that the URL is right.") from None
    return ws, offered, started


def prepare(dialect: Dialect, spec: ConnectionSpec, http_base: str | None, values: dict) -> None:
    """The dialect's HTTP steps before connecting (``connect.prepare``), as the user."""
    steps = dialect.connect.get("prepare") or []
    if not steps:
        return
    if not http_base:
        raise HandshakeFailed(f"Dialect '{dialect.name}' creates resources over HTTP before connecting "
                              f"(connect.prepare), but no backend URL is known: resolve a target or pass base_url.")
    headers = {"Authorization": f"Bearer {spec.token}"} if spec.token else {}
    for step in steps:
        url = http_base.rstrip("/") + render(step["path"], values)
        what = f"{step['method']} {url} (dialect '{dialect.name}', connect.prepare)"
        try:
            answer = http.request(step["method"], url, tls=spec.tls, headers=headers,
                                  json=render(step.get("json"), values), timeout=spec.open_timeout, what=what)
        except http.HttpFailure as err:
            raise HandshakeFailed(str(err)) from None
        expected = step.get("expect_status") or [200]
        if answer.status not in expected:
            if answer.status in (401, 403):
                raise HandshakeRefused(url, answer.status, answer.text)
            raise HandshakeFailed(f"{what} answered HTTP {answer.status}, expected {'/'.join(map(str, expected))}: "
                                  f"{redact(answer.text[:300])}")


class Connection:
    """One open WebSocket, its agent session and the log of every frame it received."""

    def __init__(self, alias: str, spec: ConnectionSpec, dialect: Dialect | None = None,
                 grace: float = DEFAULT_GRACE, user_id: str | None = None, thread_id: str = "") -> None:
        self.alias = alias
        self.thread_id = thread_id  # the thread in the URL, for dialects that have one
        self.spec = spec
        self.dialect = dialect or current()
        self.session = AgentSession(self.dialect, alias, user_id or token_subject(spec.token), grace)
        self.cursor = 0
        self.handshake: Handshake | None = None
        self.opened_at: float | None = None
        self.sent: list[tuple[float, str]] = []
        self.close_why = ""
        self._cond = threading.Condition()
        self._ws: websocket.WebSocket | None = None
        self._reader: threading.Thread | None = None
        self._closing = False

    # the session holds the state; these read it
    @property
    def events(self) -> list[Event]:
        return self.session.frames

    @property
    def closed(self) -> Event | None:
        return self.session.closed

    @property
    def user_id(self) -> str | None:
        return self.session.user_id

    # --- lifecycle ------------------------------------------------------------
    def open(self) -> Handshake:
        spec = self.spec
        ws, offered, started = connect_websocket(spec, multithread=True)
        self.opened_at = time.perf_counter()
        self._ws = ws
        ws.settimeout(None)  # the reader blocks; close() unblocks it
        response = {k.lower(): v for k, v in (ws.getheaders() or {}).items()}
        selected = response.get("sec-websocket-protocol")
        self.handshake = Handshake(spec.url, spec.describe(), ws.getstatus(), selected, offered,
                                   self.opened_at - started, response,
                                   self.session.check_subprotocol(offered, selected))
        self._reader = threading.Thread(target=self._read, name=f"ws-reader-{self.alias}", daemon=True)
        self._reader.start()
        return self.handshake

    def _take(self, event: Event) -> None:
        with self._cond:
            replies = self.session.receive(event)
            self._cond.notify_all()
        for text in replies:
            self._send_quietly(text)

    def _read(self) -> None:
        ws = self._ws
        seq = 0
        while True:
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except (websocket.WebSocketConnectionClosedException, OSError, websocket.WebSocketException) as err:
                seq += 1
                if self._closing:
                    event = Event.closed(seq, time.perf_counter(), self.alias, None, self.close_why or "closed by the "
                                         "client", self.dialect, by="client")
                else:
                    event = Event.closed(seq, time.perf_counter(), self.alias, None,
                                         f"connection lost without a close frame: {redact(str(err)) or type(err).__name__}",
                                         self.dialect)
                self._take(event)
                return
            now = time.perf_counter()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
                seq += 1
                reason = data[2:].decode("utf-8", "replace")
                by = "client" if self._closing else "server"
                self._take(Event.closed(seq, now, self.alias, code, reason or (self.close_why if self._closing else ""),
                                        self.dialect, by=by))
                try:
                    ws.close(timeout=1)
                except Exception:  # noqa: BLE001 - the peer is gone already
                    pass
                return
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                seq += 1
                payload = data.decode("utf-8", "replace") if opcode == websocket.ABNF.OPCODE_TEXT else data
                self._take(Event.from_text(seq, now, self.alias, payload, self.dialect))

    def _send_quietly(self, text: str) -> None:
        try:
            self._ws.send(text)
        except (OSError, websocket.WebSocketException, AttributeError):
            pass

    @property
    def is_open(self) -> bool:
        return self._ws is not None and self.closed is None

    def close(self, timeout: float = 3.0, why: str = "") -> None:
        ws = self._ws
        if ws is None:
            return
        self._closing = True
        self.close_why = why or self.close_why
        if self.closed is None:
            try:
                ws.close(timeout=timeout)
            except Exception:  # noqa: BLE001 - best effort, then force the socket down
                pass
        try:
            ws.shutdown()
        except Exception:  # noqa: BLE001
            pass
        if self._reader is not None:
            self._reader.join(timeout)

    # --- sending -----------------------------------------------------------
    def send_text(self, text: str) -> float:
        if not self.is_open:
            raise ConnectionError(f"Connection '{self.alias}' is closed"
                                  + (f" ({self.closed.summary()})" if self.closed else "") + ".")
        sent_at = time.perf_counter()
        try:
            self._ws.send(text)
        except (OSError, websocket.WebSocketException) as err:
            raise ConnectionError(f"Sending on connection '{self.alias}' failed: {redact(str(err))}.") from None
        self.sent.append((sent_at, text))
        return sent_at

    def setup(self, timeout: float) -> Event | None:
        """Send the dialect's setup commands and wait for their replies; returns the error
        reply of a command that failed (``None`` when all succeeded)."""
        frames = self.session.setup_frames()
        for text in frames:
            self.send_text(text)
        if frames:
            self.wait_until(lambda: self.session.setup_done, timeout)
            if not self.session.setup_done:
                raise TimeoutError(f"no reply to the dialect's setup command(s) within {timeout:g}s")
        return self.session.setup_failure

    def start_run(self, content: str, thread_id: str | None = None, run_id: str | None = None) -> RunRecord:
        with self._cond:
            record, text = self.session.start_run(content, thread_id, run_id)
            record.sent_at = time.perf_counter()
        self.send_text(text)
        return record

    # --- waiting ---------------------------------------------------------------
    def snapshot(self) -> list[Event]:
        with self._cond:
            return list(self.events)

    def wait_until(self, condition: Callable[[], bool], timeout: float, stop_on_close: bool = True) -> bool:
        """Wait until ``condition()`` holds (checked under the lock each time frames arrive),
        the timeout passes or (with ``stop_on_close``) the connection has closed."""
        deadline = time.perf_counter() + timeout
        with self._cond:
            while True:
                if condition():
                    return True
                if stop_on_close and self.closed is not None:
                    return condition()
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float, start: int | None = None,
                 stop_on_close: bool = True) -> tuple[int, Event] | None:
        """First frame at or after ``start`` (default: the cursor) matching ``predicate``.

        Returns ``(index, event)`` or ``None`` on timeout or, with ``stop_on_close``, when the
        connection closed and no later frame can match."""
        index = self.cursor if start is None else start
        found: list = []

        def scan() -> bool:
            nonlocal index
            while index < len(self.events):  # each frame is looked at once
                event = self.events[index]
                if event.kind != "close" and predicate(event):
                    found.append((index, event))
                    return True
                index += 1
            return False

        self.wait_until(scan, timeout, stop_on_close)
        return found[0] if found else None

    def wait_for_run(self, run: RunRecord, deadline: float, first_event_deadline: float | None = None) -> str | None:
        """Wait until the run is done (:meth:`AgentSession.run_done`) or ``deadline``
        (``perf_counter`` time). At ``first_event_deadline``, with no agent event of the run
        but other frames arrived, return the session's diagnosis at once (fail fast)."""
        session = self.session
        with self._cond:
            while True:
                now = time.perf_counter()
                if session.run_done(run, now):
                    return None
                if first_event_deadline is not None and now >= first_event_deadline and not run.agent_events:
                    why = session.unmatched_diagnosis(run)
                    if why:
                        return why
                    first_event_deadline = None
                if now >= deadline:
                    if run.terminal is None and run.ended == "terminal":
                        run.ended = "timeout"
                    return None
                wake = [deadline, session.run_wait_until(run) or deadline]
                if first_event_deadline is not None:
                    wake.append(first_event_deadline)
                self._cond.wait(max(0.0, min(wake) - now))

    def wait_quiet(self, quiet: float, limit: float) -> None:
        """Wait until no frame arrived for ``quiet`` seconds (at most ``limit`` seconds)."""
        end = time.perf_counter() + limit
        with self._cond:
            while True:
                now = time.perf_counter()
                last = self.events[-1].received if self.events else (self.opened_at or now)
                if now >= end or now - last >= quiet or self.closed is not None:
                    return
                self._cond.wait(min(end, last + quiet) - now)


class Registry(ConnectionCache):
    """Alias registry shared by the kit's libraries in one Robot process."""

    def __init__(self) -> None:
        super().__init__(no_current_msg="No WebSocket connection is open. Open one with 'Connect To Agent WebSocket'.")

    def get(self, alias: str | None = None) -> Connection:
        try:
            return self.get_connection(alias)
        except (RuntimeError, ValueError):
            if alias is None:
                raise RuntimeError(self.current.message) from None
            known = ", ".join(f"'{a}'" for a in self._aliases) or "none"
            raise ValueError(f"No WebSocket connection with alias '{alias}'. Open connections: {known}.") from None


REGISTRY = Registry()

