"""Fan-out engine: hundreds to thousands of WebSocket sessions from one keyword.

One asyncio event loop (the ``websockets`` package) runs in one background thread for
the duration of a call; an :class:`asyncio.Semaphore` bounds how many sessions are open
at once. Every handshake is built from :class:`~agentkit.spec.ConnectionSpec`, every
frame becomes an :class:`~agentkit.event.Event`, and every chat run is judged by
:func:`~agentkit.rules.check_run` and :func:`~agentkit.rules.check_isolation`, so a run
is judged the same way here as in the step-by-step keywords.

Contract:

* :func:`run_sessions` blocks and returns the statistics dict (see :data:`STAT_KEYS`).
* :class:`SessionRun` is the non-blocking form: ``start()``, live ``done``/``failures``
  counters that another thread may read, ``result(timeout)``, ``cancel()``. Leaving its
  ``with`` block, or ``cancel()``, closes every socket and stops the loop thread, also
  when the caller is interrupted.
* Scenarios: ``connect`` (handshake + welcome frame), ``ping`` (+ one ping/pong round
  trip), ``chat`` (+ one user message and its whole agent run).
* A session fails as ``auth_rejected`` (upgrade refused with HTTP 401/403, or closed with
  a policy code / auth error frame before the welcome), ``timeouts`` (the per-session
  budget or the open timeout ran out), ``errors`` (anything else that stopped it),
  ``agent_errors`` (the run ended with ``agent_error``: well-formed, but not a success), or
  by a violated protocol rule (``rule_violations``, ``isolation_violations`` count the
  violations). Each session lands in exactly one of successful / failed.
* ``concurrency`` sockets are open at once: the process's soft open-files limit is raised
  toward the hard limit when it would not fit (:func:`ensure_fd_limit`). The server
  side needs its own limit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import ssl
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from . import dialect as dialect_module
from .dialect import Dialect
from .event import Event
from .rules import RunRecord, check_isolation, check_run
from .spec import AUTH_MODES, ConnectionSpec, SpecError, validate_ws_url
from .stats import percentile
from .tokens import make_token

SCENARIOS = ("connect", "ping", "chat")
USER_MODES = ("distinct", "single")
POLICY_CLOSE_CODES = (1008,)
AUTH_ERROR_CODES = ("AUTH_FAILED", "auth_failed", "unauthorized", "UNAUTHORIZED", "forbidden", "FORBIDDEN")

STAT_KEYS = (
    "scenario", "total", "concurrency", "successful", "failed", "success_rate", "auth_rejected", "timeouts",
    "errors", "agent_errors", "rule_violations", "isolation_violations", "connect_p50_ms", "connect_p95_ms",
    "connect_max_ms", "run_p50_ms", "run_p95_ms", "run_max_ms", "sessions_per_second", "events_received",
    "peak_open_connections", "duration_s", "users", "violated_rules", "first_errors",
)
MAX_FIRST_ERRORS = 5


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
    one session end to end (handshake, welcome, run). ``compression`` turns on
    permessage-deflate (off by default: it costs CPU on both ends). ``tokens``: optional
    ``{user_id: token}`` to use instead of signing with ``jwt_secret``."""

    ws_url: str
    jwt_secret: str | None = None
    count: int = 1
    concurrency: int = 1
    scenario: str = "chat"
    users: str = "distinct"
    session_timeout: float = 30.0
    compression: bool = False
    auth_mode: str = "subprotocol"
    subprotocol: str = "jwt-auth"
    token_prefix: str = "jwt."
    token_encoding: str = "raw"
    headers: dict[str, str] = field(default_factory=dict)
    verify_tls: bool = True
    ca_file: str | None = None
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
        if self.scenario not in SCENARIOS:
            problems.append(f"scenario must be one of {', '.join(SCENARIOS)}, got {self.scenario!r}.")
        if self.users not in USER_MODES:
            problems.append(f"users must be one of {', '.join(USER_MODES)}, got {self.users!r}.")
        for name in ("session_timeout", "open_timeout", "close_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name} must be a positive number of seconds, got {value!r}.")
        if self.auth_mode not in AUTH_MODES:
            problems.append(f"auth mode must be one of {', '.join(AUTH_MODES)}, got {self.auth_mode!r}.")
        elif self.auth_mode != "none" and not self.jwt_secret and not self.tokens:
            problems.append(f"auth mode '{self.auth_mode}' needs a JWT secret to sign tokens, got none.")
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
        self.events_received = 0
        self.open = 0
        self.peak_open = 0
        self.violated_rules: Counter[int] = Counter()
        self.connect_ms: list[float] = []
        self.run_ms: list[float] = []
        self._error_keys: set[str] = set()
        self.first_errors: list[str] = []

    def note_error(self, message: str) -> None:
        if len(self.first_errors) >= MAX_FIRST_ERRORS:
            return
        key = _VARIABLE.sub("#", message.split(": ", 1)[-1])
        if key not in self._error_keys:
            self._error_keys.add(key)
            self.first_errors.append(message)


class _Session:
    """One connection's state: its frames (all of them, for the isolation check)."""

    __slots__ = ("index", "user_id", "name", "frames", "seq", "ws", "auth_error_frame", "phase", "welcome_user",
                 "agent_error")

    def __init__(self, index: int, user_id: str) -> None:
        self.index = index
        self.user_id = user_id
        self.name = f"session-{index}"
        self.frames: list[Event] = []
        self.seq = 0
        self.ws = None
        self.auth_error_frame: Event | None = None
        self.phase = "during the handshake"  # then: before the welcome, before the run ended
        self.welcome_user: Any = None  # the user id the welcome frame names, if any
        self.agent_error: Event | None = None  # the run's terminal event when it is an error


class SessionRun:
    """A batch of concurrent sessions running on one loop thread.

    >>> with SessionRun(EngineSettings(ws_url, secret, count=100, concurrency=20)).start() as run:
    ...     stats = run.result()
    """

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings.validate()
        d = settings.dialect
        self.dialect = d if isinstance(d, Dialect) else (Dialect.load(d) if d else dialect_module.current())
        self.tally = _Tally()
        self._future: concurrent.futures.Future = concurrent.futures.Future()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_task: asyncio.Task | None = None
        self._ready = threading.Event()
        self._cancelled = False
        self._specs: dict[str, tuple[float, tuple[str, list[str] | None, dict[str, str]]]] = {}
        s = settings
        # Options shared by every handshake, built once: an SSL context is costly to make.
        probe = ConnectionSpec(url=s.ws_url, token="-" if s.auth_mode != "none" else None, auth=s.auth_mode,
                               verify_tls=s.verify_tls, ca_file=s.ca_file)
        self._connect_options: dict[str, Any] = {
            # open_timeout None: the session's one timeout bounds handshake + welcome (see _session)
            "compression": "deflate" if s.compression else None, "open_timeout": None,
            "close_timeout": s.close_timeout,
            "max_size": None}  # keep every frame whatever its size, as the step-by-step transport does
        # The system proxy setting, resolved once: websockets would read the environment per connection.
        self._connect_options["proxy"] = get_proxy(parse_uri(probe.request_url()))
        context = probe.ssl_context()
        if context is not None:
            self._connect_options["ssl"] = context
        d = self.dialect
        self._server_ping = frozenset(d.server_ping)
        self._pong_names = frozenset(d.pong)
        self._pong_reply = json.dumps({"type": d.pong[0] if d.pong else "pong"})
        self._error_frames = frozenset(d.error_frames)

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

    async def _main(self) -> dict[str, Any]:
        s = self.settings
        slots = asyncio.Semaphore(s.concurrency)  # the concurrency limit: sessions open at once
        # Tasks are created a little ahead and queue on `slots`, so a freed slot goes straight to
        # the next session (no round trip through this loop); the backlog bounds their memory.
        backlog = asyncio.Semaphore(s.concurrency + min(s.concurrency, 1000))
        started = time.perf_counter()

        async def guarded(index: int) -> None:
            try:
                async with slots:
                    await self._session(index)
            finally:
                backlog.release()

        async with asyncio.TaskGroup() as group:
            for index in range(s.count):
                await backlog.acquire()
                group.create_task(guarded(index))
        return self._stats(time.perf_counter() - started)

    def _user(self, index: int) -> str:
        return f"{self.settings.user_prefix}{index if self.settings.users == 'distinct' else 0}"

    def _handshake(self, user_id: str) -> tuple[str, list[str] | None, dict[str, str]]:
        """URL, subprotocols, headers for one user, built once per user from ConnectionSpec."""
        s = self.settings
        cached = self._specs.get(user_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < s.token_lifetime / 2:  # re-sign before it expires
            return cached[1]
        token = None
        if s.auth_mode != "none":
            token = (s.tokens or {}).get(user_id) or make_token(s.jwt_secret, user_id, s.token_lifetime)
        spec = ConnectionSpec(url=s.ws_url, token=token, auth=s.auth_mode, subprotocol=s.subprotocol,
                              token_prefix=s.token_prefix, token_encoding=s.token_encoding,
                              headers=s.headers, verify_tls=s.verify_tls, ca_file=s.ca_file,
                              open_timeout=s.open_timeout)
        handshake = (spec.request_url(), spec.subprotocols() or None, spec.request_headers())
        if len(self._specs) < 100_000:
            self._specs[user_id] = (now, handshake)
        return handshake

    async def _recv(self, sess: _Session) -> Event:
        data = await sess.ws.recv()
        sess.seq += 1
        event = Event.from_text(sess.seq, time.perf_counter(), sess.name, data, self.dialect)
        sess.frames.append(event)
        self.tally.events_received += 1
        if event.type in self._server_ping:
            await sess.ws.send(self._pong_reply)
        return event

    async def _session(self, index: int) -> None:
        s = self.settings
        tally = self.tally
        sess = _Session(index, self._user(index))
        failure: _Outcome | None = None
        violations: list = []
        opened = False
        try:
            url, subprotocols, headers = self._handshake(sess.user_id)
            # One timer per session: first the connect deadline (handshake + welcome frame),
            # moved to the session deadline once the welcome arrived. A timer is not free at
            # thousands of sessions per second.
            start = asyncio.get_running_loop().time()
            async with asyncio.timeout_at(start + min(s.open_timeout, s.session_timeout)) as deadline:
                t0 = time.perf_counter()
                async with connect(url, subprotocols=subprotocols, additional_headers=headers or None,
                                   **self._connect_options) as ws:
                    opened = True
                    tally.open += 1
                    if tally.open > tally.peak_open:
                        tally.peak_open = tally.open
                    sess.ws = ws
                    sess.phase = "before the welcome frame"
                    await self._welcome(sess)
                    deadline.reschedule(start + s.session_timeout)
                    tally.connect_ms.append((time.perf_counter() - t0) * 1000.0)
                    sess.phase = {"ping": "before the pong", "chat": "before the run ended"}.get(s.scenario, "while closing")
                    if s.scenario == "ping":
                        await self._ping(sess)
                    elif s.scenario == "chat":
                        violations = await self._chat(sess)
        except _Outcome as outcome:
            failure = outcome
        except InvalidStatus as err:
            code = err.response.status_code
            if code in (401, 403):
                failure = _Outcome("auth_rejected", f"handshake refused with HTTP {code}")
            else:
                failure = _Outcome("errors", f"handshake refused with HTTP {code}")
        except TimeoutError:
            n = len(sess.frames)
            connecting = sess.phase in ("during the handshake", "before the welcome frame")
            limit = (f"the connect timeout of {min(s.open_timeout, s.session_timeout):g}s" if connecting
                     else f"{s.session_timeout:g}s")
            failure = _Outcome("timeouts", f"timed out after {limit} {sess.phase} "
                                           f"({n} frame{'' if n == 1 else 's'} received)")
        except ConnectionClosed as err:
            failure = _Outcome("errors", f"connection closed unexpectedly: {err}")
        except (InvalidHandshake, InvalidURI, OSError, ssl.SSLError) as err:
            failure = _Outcome("errors", f"{type(err).__name__}: {err}")
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - one broken session must not stop the batch
            failure = _Outcome("errors", f"unexpected {type(err).__name__}: {err}")
        finally:
            sess.ws = None
            if opened:
                tally.open -= 1
        if failure is None and sess.agent_error is not None:
            failure = _Outcome("agent_errors", f"the run ended with {sess.agent_error.type}: "
                                               f"{sess.agent_error.field('error')!r}")

        isolation = check_isolation(sess.frames, sess.welcome_user or sess.user_id, sess.name)
        tally.isolation_violations += len(isolation)
        tally.rule_violations += len(violations)
        for v in violations:
            tally.violated_rules[v.rule] += 1
        for v in isolation:
            tally.violated_rules[v.rule] += 1
        tally.done += 1
        if failure is not None:
            setattr(tally, failure.kind, getattr(tally, failure.kind) + 1)
            tally.note_error(f"{sess.name} ({sess.user_id}): {failure.message}")
        for v in (violations + isolation)[:2]:
            tally.note_error(f"{sess.name} ({sess.user_id}): {v}")
        if failure is None and not violations and not isolation:
            tally.successful += 1
        else:
            tally.failed += 1

    async def _welcome(self, sess: _Session) -> None:
        """Read until the welcome frame (or any agent event: the connection is accepted)."""
        while True:
            try:
                event = await self._recv(sess)
            except ConnectionClosed as err:
                code = err.rcvd.code if err.rcvd else None
                sess.seq += 1
                sess.frames.append(Event.closed(sess.seq, time.perf_counter(), sess.name, code,
                                                err.rcvd.reason if err.rcvd else "", self.dialect))
                if code in POLICY_CLOSE_CODES or sess.auth_error_frame is not None:
                    raise _Outcome("auth_rejected", f"connection closed with code {code} before the welcome frame"
                                   + (f" after {sess.auth_error_frame.summary(80)}" if sess.auth_error_frame else ""))
                raise _Outcome("errors", f"connection closed before the welcome frame: {err}") from None
            if event.is_welcome or event.is_agent_event:
                if event.is_welcome:
                    sess.welcome_user = event.user_id
                return
            if event.type in self._error_frames:
                code = str(event.field("error_code", ""))
                if code in AUTH_ERROR_CODES or "auth" in code.lower():
                    sess.auth_error_frame = event

    async def _ping(self, sess: _Session) -> None:
        sent = time.perf_counter()
        await sess.ws.send('{"type": "ping"}')
        while True:
            try:
                event = await self._recv(sess)
            except ConnectionClosed as err:
                raise _Outcome("errors", f"connection closed before the pong: {err}") from None
            if event.type in self._pong_names:
                self.tally.run_ms.append((time.perf_counter() - sent) * 1000.0)
                return

    async def _chat(self, sess: _Session) -> list:
        s = self.settings
        tag = uuid.uuid4().hex[:12]
        thread_id = f"load-thread-{sess.index}-{tag}"
        run_id = f"load-run-{sess.index}-{tag}"
        message = json.dumps(self.dialect.build_user_message(s.message, thread_id, run_id))
        record = RunRecord(sess.name, sess.welcome_user or sess.user_id, run_id, thread_id, 0.0,
                               dialect=self.dialect)
        record.sent_at = time.perf_counter()
        await sess.ws.send(message)
        events = record.events
        while True:
            try:
                event = await self._recv(sess)
            except ConnectionClosed as err:
                code = err.rcvd.code if err.rcvd else None
                sess.seq += 1
                record.close = Event.closed(sess.seq, time.perf_counter(), sess.name, code,
                                            err.rcvd.reason if err.rcvd else "", self.dialect)
                sess.frames.append(record.close)
                record.ended = "closed"
                break
            if event.kind != "frame" or not event.is_json_object:
                continue
            if event.run_id == run_id or event.thread_id == thread_id:
                events.append(event)
                if event.is_terminal:
                    self.tally.run_ms.append((event.received - record.sent_at) * 1000.0)
                    if event.role == "error":
                        sess.agent_error = event
                    break
        # Judged after collection: no rule work while frames are arriving.
        return check_run(record, s.first_event_timeout, s.run_timeout, schemas=s.check_schemas)

    def _stats(self, duration: float) -> dict[str, Any]:
        t, s = self.tally, self.settings
        rnd = (lambda v: None if v is None else round(v, 1))
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
            "connect_p50_ms": rnd(percentile(t.connect_ms, 50)),
            "connect_p95_ms": rnd(percentile(t.connect_ms, 95)),
            "connect_max_ms": rnd(max(t.connect_ms) if t.connect_ms else None),
            "run_p50_ms": rnd(percentile(t.run_ms, 50)),
            "run_p95_ms": rnd(percentile(t.run_ms, 95)),
            "run_max_ms": rnd(max(t.run_ms) if t.run_ms else None),
            "sessions_per_second": round(t.done / duration, 1) if duration > 0 else 0.0,
            "events_received": t.events_received,
            "peak_open_connections": t.peak_open,
            "duration_s": round(duration, 3),
            "users": s.users,
            "violated_rules": {f"rule {k}": v for k, v in sorted(t.violated_rules.items())},
            "first_errors": list(t.first_errors),
        }


def run_sessions(settings: EngineSettings | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run a batch to the end and return its statistics (blocking).

    ``run_sessions(ws_url=..., jwt_secret=..., count=200, concurrency=50)``; an interrupt
    (KeyboardInterrupt) stops every session and the loop thread before it propagates."""
    run = SessionRun(settings or EngineSettings(**kwargs))
    with run:
        return run.result()
