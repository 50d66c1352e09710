"""Small scripted WebSocket servers for the field regressions, and the two ways the kit
is pointed at them.

A field report is rebuilt as a :class:`ScriptedServer`: a ``websockets`` asyncio server on
127.0.0.1 (port 0) in a thread of its own, whose handshake is a few arguments (which
subprotocol it selects, an HTTP refusal, a slow handshake) and whose frames are a short
coroutine, the *script*, that talks to one connection through a :class:`Peer`. Every
server is stopped on leaving its ``with`` block (handlers cancelled, sockets closed), also
when the test fails.

:func:`use_target` resolves a ``staging`` target at the server (short budgets), so both
transports read the same configuration, as a user's run would; :func:`step_by_step`
drives the step-by-step keyword libraries (``AgentSessions``/``AgentEvents``) and
:func:`engine` the concurrency engine (``AgentConcurrency``'s ``Run Concurrent
Sessions``); each returns a :class:`Verdict` (``pass``, ``fail`` or ``refused``, and the
message), so a test can assert the verdict, the gist and that both agree.

A unique module name (not ``helpers.py``): test folders share ``sys.path``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import jwt
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

SECRET = "field-jwt-secret-" + uuid.uuid4().hex  # the staging target's signing secret
AGENT = "field-agent"
TOOL = "search_docs"

Script = Callable[["Peer"], Awaitable[None]]


# --- the server -------------------------------------------------------------------------
def _b64url_decode(text: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _token_of(request, offered: list[str]) -> str | None:
    """The token a client sent: a ``jwt.``/``jwt-auth.``/``bearer.`` subprotocol (raw or
    base64url), ``Authorization: Bearer``, or ``?token=``."""
    for value in offered:
        prefix, _, rest = value.partition(".")
        if prefix in ("jwt", "jwt-auth", "bearer") and rest:
            if rest.startswith("eyJ"):
                return rest
            decoded = _b64url_decode(rest)
            return decoded if decoded and decoded.startswith("eyJ") else rest
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    query = parse_qs(urlsplit(request.path).query)
    return (query.get("token") or [None])[0]


def _subject(token: str | None) -> str | None:
    if not token:
        return None
    try:
        return str(jwt.decode(token, options={"verify_signature": False}).get("sub"))
    except jwt.PyJWTError:
        return None


class ScriptedServer:
    """One scripted server. ``script(peer)`` plays each accepted connection.

    ``select``: what the server answers in ``Sec-WebSocket-Protocol``: ``"jwt-auth"`` (the
    default dialect's), ``"token"`` (echo the offered token-bearing subprotocol, as the
    netra backend does), ``None`` (select nothing) or any other string (select it, offered
    or not). ``refuse``: ``(status, body)`` or a function ``(token) -> (status, body) | None``
    answering the upgrade with an HTTP status instead. ``handshake_delay``: seconds the
    server spends on each handshake (a slow or saturated server); handshakes in flight are
    counted (:attr:`peak_handshakes`, :attr:`handshake_times`). ``shape``: ``default`` or
    ``netra`` events and welcome."""

    def __init__(self, script: Script | None = None, *, select: str | None = "jwt-auth",
                 refuse: tuple[int, str] | Callable[[str | None], tuple[int, str] | None] | None = None,
                 handshake_delay: float = 0.0, shape: str = "default") -> None:
        self.script = script or good_run
        self.select = select
        self.refuse = refuse
        self.handshake_delay = handshake_delay
        self.shape = shape
        self.port: int | None = None
        self.tokens: list[str] = []          # every token a client sent (for the secrets scan)
        self.handshakes = 0                  # upgrade requests seen
        self.accepted = 0                    # connections that reached the script
        self.in_flight = 0
        self.peak_handshakes = 0
        self.handshake_times: list[float] = []   # perf_counter() at each upgrade request
        self.errors: list[str] = []          # script exceptions other than a closed connection
        self.peers: list[Peer] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None
        self._tasks: set[asyncio.Task] = set()
        self._startup_error: BaseException | None = None

    # -- lifecycle
    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ScriptedServer":
        self._thread = threading.Thread(target=self._main, name="field-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self.port is None:
            self.stop()
            raise RuntimeError(f"scripted server did not start: {self._startup_error!r}")
        return self

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(10)
            assert not self._thread.is_alive(), "the scripted server's thread did not stop"

    def __enter__(self) -> "ScriptedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the server's loop (from any thread)."""
        self._loop.call_soon_threadsafe(fn)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as err:  # noqa: BLE001 - reported by start()
            self._startup_error = err
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.get_running_loop().create_future()
        async with serve(self._handler, "127.0.0.1", 0, select_subprotocol=self._select,
                         process_request=self._process_request, process_response=self._process_response,
                         max_size=None, ping_interval=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop
            for task in list(self._tasks):
                task.cancel()
            server.close(close_connections=True)
            try:
                await asyncio.wait_for(server.wait_closed(), 5)
            except (TimeoutError, asyncio.TimeoutError):
                pass

    # -- handshake
    def _select(self, connection: ServerConnection, offered) -> str | None:
        if self.select is None:
            return None
        if self.select == "token":
            return next((o for o in offered if "." in o), None)
        return self.select

    async def _process_request(self, connection: ServerConnection, request) -> Response | None:
        self.handshakes += 1
        self.handshake_times.append(time.perf_counter())
        self.in_flight += 1
        self.peak_handshakes = max(self.peak_handshakes, self.in_flight)
        offered = [p.strip() for v in request.headers.get_all("Sec-WebSocket-Protocol") for p in v.split(",")]
        token = _token_of(request, offered)
        if token:
            self.tokens.append(token)
        if self.handshake_delay:
            await asyncio.sleep(self.handshake_delay)
        refusal = self.refuse(token) if callable(self.refuse) else self.refuse
        if refusal is not None:
            status, body = refusal
            return connection.respond(status, body)
        return None

    def _process_response(self, connection, request, response) -> None:
        self.in_flight -= 1  # called for every request that reached process_request, refused or not
        return None

    # -- connections
    async def _handler(self, ws: ServerConnection) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self.accepted += 1
        peer = Peer(self, ws)
        self.peers.append(peer)
        try:
            await self.script(peer)
            await peer.hold()
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            pass
        except Exception as err:  # noqa: BLE001 - reported to the test
            self.errors.append(f"{type(err).__name__}: {err}")
        finally:
            self._tasks.discard(task)


class Peer:
    """The server's side of one connection, for scripts."""

    def __init__(self, server: ScriptedServer, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        self.shape = server.shape
        request = ws.request
        self.offered = [p.strip() for v in request.headers.get_all("Sec-WebSocket-Protocol") for p in v.split(",")]
        self.token = _token_of(request, self.offered)
        self.user = _subject(self.token)
        self.sent: list[tuple[float, Any]] = []

    async def send(self, frame: Any) -> None:
        """A dict is sent as a JSON text frame, ``bytes`` as a binary frame, ``str`` as is."""
        data = json.dumps(frame) if isinstance(frame, (dict, list)) else frame
        self.sent.append((time.perf_counter(), frame))
        await self.ws.send(data)

    async def play(self, frames: list, gap: float = 0.0) -> None:
        for frame in frames:
            await self.send(frame)
            if gap:
                await asyncio.sleep(gap)

    async def welcome(self) -> None:
        if self.shape == "netra":
            user = (self.user or "")[:8] + "..."
            await self.send({"type": "connection_established", "data": {
                "mode": "main", "user_id": user, "connection_id": f"conn_{uuid.uuid4().hex[:8]}",
                "timestamp": iso()}, "timestamp": time.time()})
        else:
            await self.send({"type": "system_message", "data": {
                "event": "connection_established", "connection_id": f"ws_{uuid.uuid4().hex[:8]}",
                "user_id": self.user}})

    async def next_start(self) -> tuple[str, str]:
        """Reads until the client's ``user_message``; answers application pings on the way."""
        while True:
            data = await self.ws.recv()
            try:
                message = json.loads(data)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if message.get("type") == "ping":
                await self.send({"type": "pong", "timestamp": time.time()})
                continue
            if message.get("type") == "user_message":
                payload = message.get("payload") or {}
                return payload.get("run_id") or f"run_{uuid.uuid4().hex[:8]}", \
                    payload.get("thread_id") or f"thread_{uuid.uuid4().hex[:8]}"

    def event(self, kind: str, run_id: str | None, thread_id: str | None, user: Any = "<self>",
              timestamp: Any = None, **details: Any) -> dict:
        """One agent event in the server's shape; ``user=None`` leaves ``user_id`` out."""
        user = self.user if user == "<self>" else user
        ids = {"run_id": run_id, "thread_id": thread_id, "user_id": user}
        ids = {k: v for k, v in ids.items() if v is not None}
        if self.shape == "netra":
            return {"type": kind, **ids, "timestamp": iso() if timestamp is None else timestamp, **details}
        return {"type": kind, **ids, "timestamp": time.time() if timestamp is None else timestamp, "data": details}

    def run_events(self, run_id: str | None, thread_id: str | None, user: Any = "<self>",
                   timestamp: Any = None) -> list[dict]:
        """A correct run: started, thinking, one tool call, completed."""
        ev = lambda kind, **d: self.event(kind, run_id, thread_id, user, timestamp, **d)  # noqa: E731
        if self.shape == "netra":
            return [ev("agent_started", agent_name=AGENT), ev("agent_thinking", reasoning="Looking it up"),
                    ev("tool_executing", tool_name=TOOL, execution_id="exec-1", tool_args={"q": "retries"}),
                    ev("tool_completed", tool_name=TOOL, execution_id="exec-1", results=["doc"], execution_time=3),
                    ev("agent_completed", final_response="Retries back off exponentially.")]
        return [ev("agent_started", agent_name=AGENT), ev("agent_thinking", thought="Looking it up"),
                ev("tool_executing", tool_name=TOOL, parameters={"q": "retries"}),
                ev("tool_completed", tool_name=TOOL, result=["doc"], duration_ms=3),
                ev("agent_completed", result="Retries back off exponentially.")]

    async def hold(self) -> None:
        """Keep the connection open until the client closes it."""
        await self.ws.wait_closed()


def iso(when: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if when is None else when, timezone.utc).isoformat()


async def good_run(peer: Peer) -> None:
    """A correct server: welcome, then one correct run per user message."""
    await peer.welcome()
    while True:
        run_id, thread_id = await peer.next_start()
        await peer.play(peer.run_events(run_id, thread_id))


def slow_run(seconds: float | None):
    """A correct server whose one run takes ``seconds`` between its second event and the rest
    (``None``: the run never ends)."""

    async def script(peer: Peer) -> None:
        await peer.welcome()
        run_id, thread_id = await peer.next_start()
        events = peer.run_events(run_id, thread_id)
        await peer.play(events[:2])
        if seconds is None:
            await peer.hold()
            return
        await asyncio.sleep(seconds)
        await peer.play(events[2:])
    return script


# --- pointing the kit at it -------------------------------------------------------------
def use_target(server: ScriptedServer, **env: str):
    """Resolve a ``staging`` target at ``server`` (short budgets; ``env`` overrides, e.g.
    ``E2E_DIALECT="netra"``) and make it the current one, as a suite setup would."""
    from agentkit import target as targets

    environ = {"E2E_BACKEND_URL": server.http_url, "E2E_WS_URL": server.ws_url, "E2E_JWT_SECRET": SECRET,
               "E2E_RUN_TIMEOUT": "3s", "E2E_FIRST_EVENT_TIMEOUT": "1s", "E2E_CONNECT_TIMEOUT": "2s"}
    environ.update(env)
    target, _ = targets.resolve("staging", environ)
    return target


@dataclass
class Verdict:
    """What one transport concluded about one server."""

    transport: str
    outcome: str          # "pass", "fail" or "refused"
    message: str = ""
    elapsed: float = 0.0
    stats: dict | None = None
    detail: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.transport}: {self.outcome} after {self.elapsed:.2f}s: {self.message}"


def token_for(user: str) -> str:
    from agentkit.tokens import build_claims, encode

    return encode(build_claims(user), secret=SECRET)


def step_by_step(user: str = "field-alice", token: str | None = None, isolation: bool = True,
                 content: str = "What does the documentation say about retries?",
                 after: Callable[[Any, Any], None] | None = None) -> Verdict:
    """One user connects, chats once and the run is judged by the step-by-step keywords:
    ``Connect To Agent WebSocket``, ``Send User Message``, ``Collect Agent Run``, ``Agent Run
    Should Complete With All Required Events`` and (``isolation``) ``Connection Should Not
    Receive Foreign Events``. ``after(sessions, alias)`` runs before the connection closes."""
    from AgentEvents import AgentEvents
    from AgentSessions import AgentSessions

    sessions, events = AgentSessions(), AgentEvents()
    started = time.perf_counter()
    detail: dict = {}
    try:
        alias = sessions.connect_to_agent_websocket(token or token_for(user), alias=user)
        run = sessions.send_user_message(content, alias=alias)
        record = sessions.collect_agent_run(run)
        detail["record"] = record
        events.agent_run_should_complete_with_all_required_events(record)
        if isolation:
            events.connection_should_not_receive_foreign_events(alias)
        if after is not None:
            after(sessions, alias)
    except (AssertionError, ValueError) as err:  # Robot fails the keyword on either
        return Verdict("step-by-step", "fail", str(err), time.perf_counter() - started, detail=detail)
    finally:
        try:
            detail["frames"] = sessions.get_event_log(user)
            detail["received"] = sessions.get_received_events(user)
        except (RuntimeError, ValueError):
            pass
        sessions.close_all_connections()
    return Verdict("step-by-step", "pass", "", time.perf_counter() - started, detail=detail)


def step_by_step_refusal(token: str | None = None, user: str = "field-mallory") -> Verdict:
    """``Handshake Should Be Refused``: ``refused`` with the description it returns, or
    ``fail`` with its failure (the server accepted, or refused in a way that is no refusal)."""
    from AgentSessions import AgentSessions

    started = time.perf_counter()
    try:
        described = AgentSessions().handshake_should_be_refused(token or token_for(user))
    except AssertionError as err:
        return Verdict("step-by-step", "fail", str(err), time.perf_counter() - started)
    return Verdict("step-by-step", "refused", described, time.perf_counter() - started)


def engine(count: int = 1, concurrency: int | None = None, **kwargs: Any) -> Verdict:
    """``Run Concurrent Sessions`` (chat) against the current target; ``pass`` when every
    session succeeded, ``refused`` when every one was refused, else ``fail`` with the first
    errors (and any warnings) as the message."""
    from AgentConcurrency import AgentConcurrency

    started = time.perf_counter()
    stats = AgentConcurrency().run_concurrent_sessions(count, concurrency=concurrency or count, **kwargs)
    elapsed = time.perf_counter() - started
    return engine_verdict(stats, elapsed)


def engine_verdict(stats: dict, elapsed: float = 0.0) -> Verdict:
    total = stats["total"]
    if total and stats["successful"] == total:
        outcome = "pass"
    elif total and stats["auth_rejected"] == total:
        outcome = "refused"
    else:
        outcome = "fail"
    message = "\n".join(list(stats.get("first_errors") or []) + list(stats.get("warnings") or []))
    return Verdict("engine", outcome, message, elapsed, stats)


def both(engine_kwargs: dict | None = None, **step_kwargs: Any) -> tuple[Verdict, Verdict]:
    """The current target's server through the step-by-step keywords (:func:`step_by_step`)
    and the engine (:func:`engine`, one session by default), side by side: the engine runs
    in a thread of its own while the keywords run here, so a slow server costs its time once."""
    fanout = in_thread(lambda: engine(**(engine_kwargs or {})))
    try:
        stepwise = step_by_step(**step_kwargs)
    finally:
        result = fanout.result(60)
    return stepwise, result


def in_thread(fn: Callable[[], Any]) -> concurrent.futures.Future:
    """Run ``fn`` in a thread of its own (joined by the caller through the future)."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def main() -> None:
        try:
            future.set_result(fn())
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            future.set_exception(err)

    threading.Thread(target=main, daemon=True).start()
    return future


__all__ = ["AGENT", "SECRET", "TOOL", "Headers", "Peer", "ScriptedServer", "Verdict", "both", "engine",
           "engine_verdict", "good_run", "in_thread", "iso", "step_by_step", "step_by_step_refusal", "token_for",
           "use_target"]
