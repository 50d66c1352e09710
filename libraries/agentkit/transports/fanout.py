"""Fan-out engine: hundreds to thousands of WebSocket sessions from one keyword.

One asyncio event loop (the ``websockets`` package) runs in one background thread for
the duration of a call; an :class:`asyncio.Semaphore` bounds how many sessions are open
at once and another how many handshakes are in flight. Every handshake is built from
:class:`~agentkit.wire.spec.ConnectionSpec`, every frame goes to an
:class:`~agentkit.wire.session.AgentSession`, and every run is judged by
:func:`~agentkit.rules.check_run`: the same code the step-by-step keywords call, so a
server gets the same verdict from both.

Contract:

* :func:`run_sessions` blocks and returns the statistics dict (see :data:`STAT_KEYS`).
* :class:`SessionRun` is the non-blocking form: ``start()``, live ``done``/``failures``
  counters that another thread may read, ``result(timeout)``, ``cancel()``. Leaving its
  ``with`` block, or ``cancel()``, closes every socket and stops the loop thread, also
  when the caller is interrupted.
* Scenarios: ``connect`` (handshake, welcome or setup), ``ping`` (+ one ping round trip,
  where the dialect has a ping), ``chat`` (+ one user message and its whole agent run).
* A session fails as ``auth_rejected`` (a refusal as the dialect describes it),
  ``timeouts`` (the session budget or the connect budget ran out), ``errors`` (anything
  else that stopped it, a wrong subprotocol included), ``agent_errors`` (the run ended
  in a well-formed error: not a success), or by a violated rule (``rule_violations``,
  ``isolation_violations`` count the violations). Each session lands in exactly one of
  successful / failed.
* The generator watches itself: its event loop's lag is sampled during the batch, and
  ``generator_saturated`` (with a line in ``warnings``) says when the client, not the
  server, was the limit. ``ramp_up`` spreads session starts; ``max_handshakes`` caps
  handshakes in flight.
* No keepalive ping by default (as the step-by-step transport): a server busy in a long
  tool call is not closed by the kit. With ``keepalive`` its timeout never undercuts the
  session budget, and a close the client made is reported as the client's, with why.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import MethodType
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.headers import parse_subprotocol
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from .. import rules
from ..rules.schemas import SchemaCheckUnavailable
from ..stats import percentile
from ..tokens import make_token
from ..wire import dialect as dialect_module
from ..wire.dialect import Dialect
from ..wire.event import Event
from ..wire.masking import redact
from ..wire.session import DEFAULT_GRACE, AgentSession
from ..wire.paths import render
from ..wire.spec import AUTH_MODES, ConnectionSpec, SpecError, validate_ws_url, ws_base
from ..wire.tls import TLSConfig, diagnose
from .http import tls_cause
from .threaded import HandshakeFailed, HandshakeRefused, prepare, token_subject

SCENARIOS = ("connect", "ping", "chat")
USER_MODES = ("distinct", "single")

STAT_KEYS = (
    "scenario", "total", "concurrency", "successful", "failed", "success_rate", "auth_rejected", "timeouts",
    "errors", "agent_errors", "rule_violations", "isolation_violations", "isolation_sessions", "connect_p50_ms", "connect_p95_ms",
    "connect_max_ms", "run_p50_ms", "run_p95_ms", "run_max_ms", "sessions_per_second", "events_received",
    "binary_frames", "peak_open_connections", "duration_s", "users", "violated_rules", "first_errors",
    "generator_lag_p95_ms", "generator_lag_max_ms", "generator_saturated", "warnings", "ramp_up_s",
    "max_handshakes",
)
MAX_FIRST_ERRORS = 5
LAG_SAMPLE_S = 0.05          # the loop-lag probe's period
SATURATED_LAG_MS = 200.0     # loop lag p95 beyond which timings measure the client, not the server
MIN_LAG_COVERED_S = 0.5      # seconds the lag samples must cover for a verdict


def ensure_fd_limit(concurrency: int) -> None:
    """Raise this process's soft open-files limit toward the hard one when ``concurrency``
    sockets would not fit (common default: 1024). Never lowers it; no-op where unsupported."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = concurrency + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (ValueError, OSError):
                pass


class EngineError(ValueError):
    """An argument the engine cannot run with; the message names the value."""


@dataclass
class EngineSettings:
    """What to run, against what. Secrets are plain strings here and never logged.

    ``users``: ``distinct`` gives session *i* the user ``<user_prefix><i>`` with its own
    token; ``single`` runs every session as ``<user_prefix>0``. ``session_timeout`` bounds
    one session end to end (handshake, welcome, run), seconds. ``compression`` turns on
    permessage-deflate (off by default: it costs CPU on both ends). ``tokens``: optional
    ``{user_id: token}`` to use instead of signing with ``jwt_secret``. ``grace``: seconds
    a run keeps listening after its end. ``keepalive``: seconds between the client's own
    WebSocket pings (``None``: none). ``ramp_up``: seconds over which session starts are
    spread. ``max_handshakes``: handshakes in flight at once (``None``: as many as
    ``concurrency``). ``http_base``: the backend's HTTP URL, for dialects that prepare a
    connection over HTTP."""

    ws_url: str
    jwt_secret: str | None = None
    count: int = 1
    concurrency: int = 1
    scenario: str = "chat"
    users: str = "distinct"
    session_timeout: float = 30.0
    compression: bool = False
    auth_mode: str | None = None
    token_encoding: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tls: TLSConfig = field(default_factory=TLSConfig)
    open_timeout: float = 10.0
    close_timeout: float = 2.0
    first_event_timeout: float = 2.0
    run_timeout: float = 30.0
    dialect: Dialect | str | None = None
    user_prefix: str = "load-user-"
    message: str = "Concurrency check: please answer briefly."
    check_schemas: bool = True
    tokens: dict[str, str] | None = None
    token_lifetime: float = 3600.0
    grace: float = DEFAULT_GRACE
    keepalive: float | None = None
    ramp_up: float = 0.0
    max_handshakes: int | None = None
    http_base: str | None = None

    def validate(self) -> "EngineSettings":
        """Raise :class:`EngineError` naming every bad value (all at once)."""
        problems: list[str] = []
        try:
            validate_ws_url(self.ws_url)
        except SpecError as err:
            problems.append(str(err))
        for name in ("count", "concurrency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a whole number of at least 1, got {value!r}.")
        if self.max_handshakes is not None and (isinstance(self.max_handshakes, bool)
                                                or not isinstance(self.max_handshakes, int) or self.max_handshakes < 1):
            problems.append(f"max_handshakes must be a whole number of at least 1, got {self.max_handshakes!r}.")
        if self.scenario not in SCENARIOS:
            problems.append(f"scenario must be one of {', '.join(SCENARIOS)}, got {self.scenario!r}.")
        if self.users not in USER_MODES:
            problems.append(f"users must be one of {', '.join(USER_MODES)}, got {self.users!r}.")
        for name in ("session_timeout", "open_timeout", "close_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name} must be a positive number of seconds, got {value!r}.")
        for name in ("grace", "ramp_up"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                problems.append(f"{name} must be a number of seconds >= 0, got {value!r}.")
        if self.keepalive is not None and (not isinstance(self.keepalive, (int, float)) or self.keepalive <= 0):
            problems.append(f"keepalive must be a positive number of seconds or None, got {self.keepalive!r}.")
        if self.auth_mode is not None and self.auth_mode not in AUTH_MODES:
            problems.append(f"auth mode must be one of {', '.join(AUTH_MODES)}, got {self.auth_mode!r}.")
        elif self.auth_mode != "none" and not self.jwt_secret and not self.tokens:
            problems.append(f"auth mode '{self.auth_mode or 'of the dialect'}' needs a JWT secret to sign tokens, "
                            f"got none.")
        if problems:
            raise EngineError("Cannot run concurrent sessions: " + " ".join(problems))
        return self


_VARIABLE = re.compile(r"[0-9a-f]{8,}|\d+(\.\d+)?")


class _Outcome(Exception):
    """Ends a session early with a classified failure."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class _Tally:
    """Counters the loop thread writes and the caller's thread may read (ints only)."""

    def __init__(self) -> None:
        self.done = 0
        self.successful = 0
        self.failed = 0
        self.auth_rejected = 0
        self.timeouts = 0
        self.errors = 0
        self.agent_errors = 0
        self.rule_violations = 0
        self.isolation_violations = 0
        self.isolation_sessions = 0
        self.events_received = 0
        self.binary_frames = 0
        self.open = 0
        self.peak_open = 0
        self.violated_rules: Counter[int] = Counter()
        self.connect_ms: list[float] = []
        self.run_ms: list[float] = []
        self.lag_ms: list[float] = []
        self._error_keys: set[str] = set()
        self.first_errors: list[str] = []

    def note_error(self, message: str) -> None:
        if len(self.first_errors) >= MAX_FIRST_ERRORS:
            return
        key = _VARIABLE.sub("#", message.split(": ", 1)[-1])
        if key not in self._error_keys:
            self._error_keys.add(key)
            self.first_errors.append(message)


def _judged_connection(protocol, **kwargs) -> ClientConnection:
    """A ``websockets`` connection that records the server's selected subprotocol instead of
    judging it: the kit's session judges it, the same way in both transports."""

    def accept_any(self, headers):
        values = headers.get_all("Sec-WebSocket-Protocol")
        parsed = sum((parse_subprotocol(v) for v in values), []) if values else []
        return parsed[0] if parsed else None

    protocol.process_subprotocol = MethodType(accept_any, protocol)
    return ClientConnection(protocol, **kwargs)


class _Run:
    """One session of the batch: its user, its agent session, its socket."""

    __slots__ = ("index", "user_id", "name", "session", "seq", "ws", "phase", "agent_error", "token", "started")

    def __init__(self, index: int, user_id: str, dialect: Dialect, grace: float) -> None:
        self.index = index
        self.user_id = user_id
        self.name = f"session-{index}"
        self.session = AgentSession(dialect, self.name, user_id, grace)
        self.seq = 0
        self.ws = None
        self.phase = "during the handshake"  # then: before the welcome, before the run ended
        self.agent_error: Event | None = None
        self.token: str | None = None
        self.started = time.perf_counter()  # when the session began connecting


class SessionRun:
    """A batch of concurrent sessions running on one loop thread.

    >>> with SessionRun(EngineSettings(ws_url, secret, count=100, concurrency=20)).start() as run:
    ...     stats = run.result()
    """

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings.validate()
        d = settings.dialect
        self.dialect = d if isinstance(d, Dialect) else (dialect_module.load(d) if d else dialect_module.current())
        self.tally = _Tally()
        self._future: concurrent.futures.Future = concurrent.futures.Future()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_task: asyncio.Task | None = None
        self._ready = threading.Event()
        self._cancelled = False
        self._specs: dict[str, tuple[float, ConnectionSpec]] = {}
        self._tls_checked: str | None = None
        s = settings
        connect_section = self.dialect.connect
        self._auth = s.auth_mode or connect_section["auth"][0]
        self._encoding = s.token_encoding or connect_section.get("token_encoding", "raw")
        self._subprotocols = connect_section.get("subprotocols", ["jwt-auth", "jwt.{token}"])
        self._query_param = connect_section.get("query_param", "token")
        self._url_template = connect_section.get("url", "{ws_url}")
        self._needs_thread_url = "{thread_id}" in self._url_template
        for token in (s.tokens or {}).values():  # given tokens are checked once, not per session
            try:
                ConnectionSpec(url=s.ws_url, token=token, auth=self._auth, subprotocols_template=self._subprotocols,
                               token_encoding=self._encoding)
            except SpecError as err:
                raise EngineError(f"Cannot run concurrent sessions: {err}") from None
        # keepalive never undercuts the session budget: its timeout is at least that long
        ping_interval = s.keepalive
        ping_timeout = max(s.keepalive, s.session_timeout) if s.keepalive else None
        self._connect_options: dict[str, Any] = {
            # open_timeout None: the session's one timeout bounds handshake + welcome (see _session)
            "compression": "deflate" if s.compression else None, "open_timeout": None,
            "close_timeout": s.close_timeout, "ping_interval": ping_interval, "ping_timeout": ping_timeout,
            "max_size": None,  # keep every frame whatever its size, as the step-by-step transport does
            "create_connection": _judged_connection,
            # The system proxy setting, resolved once: websockets would read the environment per connection.
            "proxy": get_proxy(parse_uri(s.ws_url))}
        if s.ws_url.startswith("wss://"):
            self._connect_options["ssl"] = s.tls.ssl_context()  # built once: a context is costly to make

    # --- caller side (any thread) ------------------------------------------
    @property
    def total(self) -> int:
        return self.settings.count

    @property
    def done(self) -> int:
        return self.tally.done

    @property
    def failures(self) -> int:
        return self.tally.failed

    def start(self) -> "SessionRun":
        if self._thread is not None:
            return self
        ensure_fd_limit(self.settings.concurrency)
        self._thread = threading.Thread(target=self._thread_main, name="agentkit-engine", daemon=True)
        self._thread.start()
        return self

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """The statistics dict; raises ``concurrent.futures.TimeoutError`` if not done in ``timeout``."""
        self.start()
        stats = self._future.result(timeout)
        self._thread.join()
        return stats

    def cancel(self, wait: float = 15.0) -> None:
        """Stop every session (their sockets close) and the loop thread; idempotent."""
        self._cancelled = True
        if self._thread is None:
            return
        self._ready.wait(wait)
        loop, task = self._loop, self._main_task
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # loop closed in between
                pass
        self._thread.join(wait)

    def __enter__(self) -> "SessionRun":
        return self.start()

    def __exit__(self, *exc) -> None:
        if not self._future.done() or (self._thread is not None and self._thread.is_alive()):
            self.cancel()

    # --- loop thread ----------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            stats = asyncio.run(self._entry())
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            if not self._future.done():
                self._future.set_exception(err if isinstance(err, Exception)
                                           else RuntimeError(f"engine stopped: {err!r}"))
        else:
            self._future.set_result(stats)
        finally:
            self._ready.set()

    async def _entry(self) -> dict[str, Any]:
        self._loop = asyncio.get_running_loop()
        self._main_task = asyncio.current_task()
        self._ready.set()
        if self._cancelled:
            raise asyncio.CancelledError
        return await self._main()

    async def _lag_probe(self) -> None:
        """How late the loop wakes a sleeper: the generator's own saturation."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_SAMPLE_S)
            self.tally.lag_ms.append(max(0.0, (loop.time() - start - LAG_SAMPLE_S) * 1000.0))

    async def _main(self) -> dict[str, Any]:
        s = self.settings
        slots = asyncio.Semaphore(s.concurrency)  # the concurrency limit: sessions open at once
        handshakes = asyncio.Semaphore(s.max_handshakes or s.concurrency)
        # Tasks are created a little ahead and queue on `slots`, so a freed slot goes straight to
        # the next session (no round trip through this loop); the backlog bounds their memory.
        backlog = asyncio.Semaphore(s.concurrency + min(s.concurrency, 1000))
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        begin = loop.time()
        probe = asyncio.create_task(self._lag_probe())

        async def guarded(index: int) -> None:
            try:
                async with slots:
                    await self._session(index, handshakes)
            finally:
                backlog.release()

        try:
            async with asyncio.TaskGroup() as group:
                for index in range(s.count):
                    await backlog.acquire()
                    if s.ramp_up > 0 and s.count > 1:
                        at = begin + s.ramp_up * index / (s.count - 1)
                        if at > loop.time():
                            await asyncio.sleep(at - loop.time())
                    group.create_task(guarded(index))
        finally:
            probe.cancel()
        return self._stats(time.perf_counter() - started)

    def _user(self, index: int) -> str:
        return f"{self.settings.user_prefix}{index if self.settings.users == 'distinct' else 0}"

    def _spec(self, user_id: str) -> tuple[ConnectionSpec, str]:
        """The connection spec of one user and its thread id (a token is signed once per user
        and re-signed before it expires; a dialect with the thread in the URL gets a fresh one)."""
        s = self.settings
        cached = self._specs.get(user_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < s.token_lifetime / 2 and not self._needs_thread_url:
            return cached[1], ""
        token = None
        if self._auth != "none":
            token = (s.tokens or {}).get(user_id) or make_token(s.jwt_secret, user_id, s.token_lifetime)
        thread_id = self.dialect.new_id("thread") if self._needs_thread_url else ""
        values = self.dialect.template_values(ws_url=s.ws_url, ws_base=ws_base(s.ws_url), thread_id=thread_id)
        spec = ConnectionSpec(url=render(self._url_template, values), token=token, auth=self._auth,
                              subprotocols_template=self._subprotocols, token_encoding=self._encoding,
                              query_param=self._query_param, headers=s.headers, tls=s.tls,
                              open_timeout=s.open_timeout)
        if len(self._specs) < 100_000:
            self._specs[user_id] = (now, spec)
        return spec, thread_id

    async def _recv(self, run: _Run) -> Event:
        data = await run.ws.recv()
        run.seq += 1
        event = Event.from_text(run.seq, time.perf_counter(), run.name, data, self.dialect)
        self.tally.events_received += 1
        if event.binary:
            self.tally.binary_frames += 1
        for reply in run.session.receive(event):
            await run.ws.send(reply)
        return event

    def _closed(self, run: _Run, err: ConnectionClosed) -> Event:
        """The close a session saw, as an event; a close the client made is the client's."""
        client_first = err.sent is not None and (err.rcvd is None or err.rcvd_then_sent is False)
        frame = err.sent if client_first else err.rcvd
        code, reason = (frame.code, frame.reason) if frame is not None else (None, "")
        if client_first and reason == "keepalive ping timeout":
            reason = (f"keepalive ping timeout: the kit's own ping (every {self.settings.keepalive:g}s) got no "
                      f"pong within {self.settings.session_timeout:g}s")
        elif frame is None:
            reason = "connection lost without a close frame"
        run.seq += 1
        event = Event.closed(run.seq, time.perf_counter(), run.name, code, reason, self.dialect,
                             by="client" if client_first else "server")
        run.session.receive(event)
        return event

    async def _session(self, index: int, handshakes: asyncio.Semaphore) -> None:
        s = self.settings
        tally = self.tally
        run = _Run(index, self._user(index), self.dialect, s.grace)
        failure: _Outcome | None = None
        violations: list = []
        opened = False
        try:
            spec, thread_id = self._spec(run.user_id)
            run.token = spec.token
            # The connection's user is the token's subject (an auth service names its own users).
            run.session.user_id = token_subject(spec.token) or run.user_id
            # One timer per session: first the connect deadline (handshake + welcome frame),
            # moved to the session deadline once the welcome arrived. A timer is not free at
            # thousands of sessions per second.
            start = asyncio.get_running_loop().time()
            async with asyncio.timeout_at(start + min(s.open_timeout, s.session_timeout)) as deadline:
                t0 = run.started = time.perf_counter()
                async with handshakes:
                    if self.dialect.connect.get("prepare"):
                        values = self.dialect.template_values(thread_id=thread_id)
                        await asyncio.to_thread(prepare, self.dialect, spec, s.http_base, values)
                    ws = await connect(spec.request_url(), subprotocols=spec.subprotocols() or None,
                                       additional_headers=spec.request_headers() or None, **self._connect_options)
                async with ws:
                    opened = True
                    tally.open += 1
                    if tally.open > tally.peak_open:
                        tally.peak_open = tally.open
                    run.ws = ws
                    problem = run.session.check_subprotocol(spec.subprotocols(), ws.subprotocol)
                    if problem:
                        raise _Outcome("errors", f"handshake: {problem}")
                    run.phase = "before the welcome frame"
                    await self._welcome(run)
                    deadline.reschedule(start + s.session_timeout)
                    tally.connect_ms.append((time.perf_counter() - t0) * 1000.0)
                    run.phase = {"ping": "before the pong", "chat": "before the run ended"}.get(s.scenario, "while closing")
                    if s.scenario == "ping":
                        await self._ping(run)
                    elif s.scenario == "chat":
                        violations = await self._chat(run, start + s.session_timeout)
        except _Outcome as outcome:
            failure = outcome
        except (InvalidStatus, HandshakeRefused) as err:
            code = err.response.status_code if isinstance(err, InvalidStatus) else err.status
            if run.session.refusal_for_status(code):
                failure = _Outcome("auth_rejected", f"handshake refused with HTTP {code}")
            else:
                failure = _Outcome("errors", f"handshake refused with HTTP {code}")
        except TimeoutError:
            failure = _Outcome("timeouts", self._timeout_message(run))
        except ConnectionClosed as err:
            closed = self._closed(run, err)
            failure = _Outcome("errors", f"connection closed unexpectedly {run.phase}: {closed.summary(160)}")
        except HandshakeFailed as err:
            failure = _Outcome("errors", str(err))
        except OSError as err:
            if isinstance(err, ssl.SSLError):
                failure = _Outcome("errors", diagnose(err, s.ws_url, s.tls))
            else:
                failure = _Outcome("errors", await self._tls_diagnosis(err))
        except (InvalidHandshake, InvalidURI) as err:
            failure = _Outcome("errors", await self._tls_diagnosis(err))
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - one broken session must not stop the batch
            failure = _Outcome("errors", f"unexpected {type(err).__name__}: {redact(str(err))}")
        finally:
            run.ws = None
            if opened:
                tally.open -= 1
        if failure is None and run.agent_error is not None:
            failure = _Outcome("agent_errors", f"the run ended with {run.agent_error.type}: "
                                               f"{run.agent_error.field('error')!r}")
        isolation = rules.foreign_violations(run.session.foreign, run.session.user_id, run.name)
        tally.isolation_violations += len(isolation)
        tally.isolation_sessions += bool(isolation)
        tally.rule_violations += len(violations)
        for v in violations + isolation:
            tally.violated_rules[v.rule] += 1
        tally.done += 1
        if failure is not None:
            setattr(tally, failure.kind, getattr(tally, failure.kind) + 1)
            tally.note_error(redact(f"{run.name} ({run.user_id}): {failure.message}"))
        for v in (violations + isolation)[:2]:
            tally.note_error(redact(f"{run.name} ({run.user_id}): {v}"))
        if failure is None and not violations and not isolation:
            tally.successful += 1
        else:
            tally.failed += 1

    async def _tls_diagnosis(self, err: BaseException) -> str:
        """For a failure with no clearer cause, the TLS diagnosis of a wss:// server (checked
        once per batch: a server that wants a client certificate closes after the handshake,
        silently), else the error itself."""
        if self._tls_checked is None:
            self._tls_checked = await asyncio.to_thread(tls_cause, self.settings.ws_url, self.settings.tls,
                                                        self.settings.open_timeout) or ""
        return self._tls_checked or f"{type(err).__name__}: {redact(str(err))}"

    def _timeout_message(self, run: _Run) -> str:
        s = self.settings
        frames = [e for e in run.session.frames if e.kind != "close"]
        connecting = run.phase in ("during the handshake", "before the welcome frame")
        limit = (f"the connect timeout of {min(s.open_timeout, s.session_timeout):g}s" if connecting
                 else f"the session budget of {s.session_timeout:g}s")
        text = f"timed out after {limit} {run.phase} ({len(frames)} frame{'' if len(frames) == 1 else 's'} received"
        if frames:
            first, last = frames[0], frames[-1]
            text += f"; the first at +{first.received - run.started:.3f}s: {first.summary(100)}"
            if len(frames) > 1:
                text += f"; the last at +{last.received - run.started:.3f}s: {last.summary(100)}"
        return text + ")"

    async def _welcome(self, run: _Run) -> None:
        """Until the connection is usable: the welcome (where the dialect has one) or any
        agent event; then the dialect's setup commands and their replies. A refusal after
        the upgrade (an error frame, then a close with a refusal code) is ``auth_rejected``."""
        session = run.session
        presence = self.dialect.welcome_presence
        while presence == "required" and session.welcome is None and session.first_agent_event is None:
            try:
                event = await self._recv(run)
            except ConnectionClosed as err:
                closed = self._closed(run, err)
                refusal = session.refusal()
                if refusal is not None:
                    raise _Outcome("auth_rejected", refusal.describe()) from None
                raise _Outcome("errors", f"connection closed before the welcome frame: {closed.summary(160)}") from None
            if event.parse_error and session.welcome is None:
                continue  # kept in the log; a binary or non-JSON frame is not the welcome
        for text in session.setup_frames():
            await run.ws.send(text)
        while not session.setup_done:
            try:
                await self._recv(run)
            except ConnectionClosed as err:
                closed = self._closed(run, err)
                raise _Outcome("errors", f"connection closed before the setup commands were answered: "
                                         f"{closed.summary(160)}") from None
        if session.setup_failure is not None:
            raise _Outcome("errors", f"setup command refused: {session.setup_failure.summary(160)}")
        problem = session.welcome_problem()
        if problem:
            raise _Outcome("errors", problem)

    async def _ping(self, run: _Run) -> None:
        ping = self.dialect.frames.get("ping")
        if not ping:
            raise _Outcome("errors", f"dialect '{self.dialect.name}' has no ping (frames.ping): use scenario "
                                     f"connect or chat")
        sent = time.perf_counter()
        await run.ws.send(json.dumps(ping["send"]))
        while True:
            try:
                event = await self._recv(run)
            except ConnectionClosed as err:
                closed = self._closed(run, err)
                raise _Outcome("errors", f"connection closed before the pong: {closed.summary(160)}") from None
            if event.control == "pong":
                self.tally.run_ms.append((time.perf_counter() - sent) * 1000.0)
                return

    async def _chat(self, run: _Run, session_deadline: float) -> list:
        s = self.settings
        session = run.session
        loop = asyncio.get_running_loop()
        record, text = session.start_run(s.message)
        record.sent_at = time.perf_counter()
        await run.ws.send(text)
        first_deadline = loop.time() + s.first_event_timeout
        while not session.run_done(record, time.perf_counter()):
            now = loop.time()
            wake = session.run_wait_until(record)
            limit = session_deadline
            if wake is not None:
                limit = min(limit, now + max(0.0, wake - time.perf_counter()))
            if first_deadline is not None and not record.agent_events:
                limit = min(limit, first_deadline)
            try:
                async with asyncio.timeout_at(limit):
                    await self._recv(run)
            except TimeoutError:
                now = loop.time()
                if first_deadline is not None and now >= first_deadline and not record.agent_events:
                    why = session.unmatched_diagnosis(record)
                    if why:
                        raise _Outcome("errors", f"no agent event of the run within {s.first_event_timeout:g}s: "
                                                 f"{why}") from None
                    first_deadline = None
                if now >= session_deadline:
                    raise
            except ConnectionClosed as err:
                self._closed(run, err)
                break
        term = record.terminal
        if term is None and record.close is not None and record.close.closed_by == "client":
            raise _Outcome("errors", f"the client closed the connection before the run ended "
                                     f"({record.close.close_reason or 'no reason given'}): no verdict on the server")
        if term is not None:
            self.tally.run_ms.append((term.received - record.sent_at) * 1000.0)
            if term.role == "error":
                run.agent_error = term
        # Judged after collection: no rule work while frames are arriving.
        try:
            return rules.check_run(record, s.first_event_timeout, s.run_timeout, schemas=s.check_schemas)
        except SchemaCheckUnavailable as err:
            raise _Outcome("errors", str(err)) from None

    def _stats(self, duration: float) -> dict[str, Any]:
        t, s = self.tally, self.settings
        rnd = (lambda v: None if v is None else round(v, 1))
        lag_p95 = percentile(t.lag_ms, 95)
        # A verdict needs samples covering half a second (one sample of a short batch is noise;
        # a blocked loop gives few samples, but long ones).
        covered = sum(LAG_SAMPLE_S + lag / 1000.0 for lag in t.lag_ms)
        saturated = covered >= MIN_LAG_COVERED_S and lag_p95 is not None and lag_p95 > SATURATED_LAG_MS
        warnings = []
        if saturated:
            warnings.append(f"the load generator was the bottleneck: its event loop lagged {lag_p95:.0f} ms at p95 "
                            f"(max {max(t.lag_ms):.0f} ms), so connect and run times measure this client, not the "
                            f"server; lower concurrency, add ramp_up, cap max_handshakes, or spread the load "
                            f"over machines (load/README.md)")
        return {
            "scenario": s.scenario,
            "total": t.done,
            "concurrency": s.concurrency,
            "successful": t.successful,
            "failed": t.failed,
            "success_rate": round(100.0 * t.successful / t.done, 2) if t.done else 0.0,
            "auth_rejected": t.auth_rejected,
            "timeouts": t.timeouts,
            "errors": t.errors,
            "agent_errors": t.agent_errors,
            "rule_violations": t.rule_violations,
            "isolation_violations": t.isolation_violations,
            "isolation_sessions": t.isolation_sessions,
            "connect_p50_ms": rnd(percentile(t.connect_ms, 50)),
            "connect_p95_ms": rnd(percentile(t.connect_ms, 95)),
            "connect_max_ms": rnd(max(t.connect_ms) if t.connect_ms else None),
            "run_p50_ms": rnd(percentile(t.run_ms, 50)),
            "run_p95_ms": rnd(percentile(t.run_ms, 95)),
            "run_max_ms": rnd(max(t.run_ms) if t.run_ms else None),
            "sessions_per_second": round(t.done / duration, 1) if duration > 0 else 0.0,
            "events_received": t.events_received,
            "binary_frames": t.binary_frames,
            "peak_open_connections": t.peak_open,
            "duration_s": round(duration, 3),
            "users": s.users,
            "violated_rules": {f"rule {k}": v for k, v in sorted(t.violated_rules.items())},
            "first_errors": list(t.first_errors),
            "generator_lag_p95_ms": rnd(lag_p95),
            "generator_lag_max_ms": rnd(max(t.lag_ms) if t.lag_ms else None),
            "generator_saturated": saturated,
            "warnings": warnings,
            "ramp_up_s": s.ramp_up,
            "max_handshakes": s.max_handshakes or s.concurrency,
        }


def run_sessions(settings: EngineSettings | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run a batch to the end and return its statistics (blocking).

    ``run_sessions(ws_url=..., jwt_secret=..., count=200, concurrency=50)``; an interrupt
    (KeyboardInterrupt) stops every session and the loop thread before it propagates."""
    run = SessionRun(settings or EngineSettings(**kwargs))
    with run:
        return run.result()

