"""The fan-out engine (agentkit.transports.fanout) and its keyword library (AgentConcurrency).

Against the reference backend as a real child process (healthy and with faults), plus a
small in-test ``websockets`` server for the variants the reference backend does not
speak (server heartbeat pings, refusal by policy close, an event that breaks its schema).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import signal
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
import psutil
import pytest
from websockets.asyncio.server import serve

from AgentConcurrency import AgentConcurrency
from agentkit import target as targets
from agentkit.target import ConfigurationError
from agentkit.wire.dialect import current
from agentkit.rules.schemas import event_errors, schema_valid
from agentkit.stats import percentile
from agentkit.transports.fanout import EngineError, EngineSettings, SessionRun, run_sessions
from agentkit.transports.process import wait_until
from agentkit.wire.event import Event

ROOT = Path(__file__).resolve().parents[2]


def chat(ws_url: str, secret: str, **kwargs) -> dict:
    kwargs.setdefault("count", 20)
    kwargs.setdefault("concurrency", 10)
    kwargs.setdefault("session_timeout", 10)
    return run_sessions(ws_url=ws_url, jwt_secret=secret, **kwargs)


def open_connections_to(port: int) -> list:
    return [c for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED]


def engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "agentkit-engine" and t.is_alive()]


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


# --- against the reference backend -------------------------------------------------------
def test_200_chat_sessions_all_succeed(backend):
    stats = chat(backend.ws_url, backend.jwt_secret, count=200, concurrency=50)
    assert stats["total"] == 200 and stats["successful"] == 200 and stats["failed"] == 0, stats
    assert (stats["auth_rejected"], stats["timeouts"], stats["errors"], stats["agent_errors"]) == (0, 0, 0, 0)
    assert stats["rule_violations"] == 0 and stats["isolation_violations"] == 0
    assert stats["success_rate"] == 100.0 and stats["first_errors"] == []
    # welcome + started + thinking + tool_executing + tool_completed + thinking + completed
    assert stats["events_received"] == 200 * 7
    assert 1 < stats["peak_open_connections"] <= 50
    assert 0 < stats["connect_p50_ms"] <= stats["connect_p95_ms"] <= stats["connect_max_ms"]
    assert 0 < stats["run_p50_ms"] <= stats["run_p95_ms"] <= stats["run_max_ms"]
    assert stats["sessions_per_second"] > 0 and stats["duration_s"] > 0
    assert (stats["scenario"], stats["concurrency"], stats["users"]) == ("chat", 50, "distinct")


def test_single_user_sessions_succeed(backend):
    stats = chat(backend.ws_url, backend.jwt_secret, count=30, concurrency=30, users="single")
    assert stats["successful"] == 30 and stats["users"] == "single", stats


def test_compression_is_off_by_default_and_can_be_turned_on(backend):
    stats = chat(backend.ws_url, backend.jwt_secret, count=20, concurrency=10, compression=True)
    assert stats["successful"] == 20, stats
    with FakeServer("plain") as server:
        run_sessions(ws_url=server.url, jwt_secret="x" * 32, count=2, concurrency=1, session_timeout=60, first_event_timeout=30)
        run_sessions(ws_url=server.url, jwt_secret="x" * 32, count=1, concurrency=1, session_timeout=60, first_event_timeout=30,
                     compression=True)
    assert server.extensions[:2] == ["", ""]
    assert "permessage-deflate" in server.extensions[2]


def test_connect_scenario_reads_only_the_welcome(backend):
    stats = chat(backend.ws_url, backend.jwt_secret, count=50, concurrency=25, scenario="connect")
    assert stats["successful"] == 50 and stats["events_received"] == 50, stats
    assert stats["connect_p95_ms"] is not None and stats["run_p95_ms"] is None


def test_ping_scenario_measures_the_round_trip(backend):
    stats = chat(backend.ws_url, backend.jwt_secret, count=50, concurrency=25, scenario="ping")
    assert stats["successful"] == 50 and stats["events_received"] == 100, stats
    assert stats["run_p50_ms"] is not None and stats["run_p50_ms"] > 0


def test_wrong_secret_counts_as_auth_rejected_not_error(backend):
    stats = chat(backend.ws_url, "not-the-backend-secret-but-long-enough-to-sign", count=12, concurrency=6)
    assert stats["auth_rejected"] == 12 and stats["errors"] == 0 and stats["successful"] == 0, stats
    assert stats["connect_p95_ms"] is None
    assert any("HTTP 403" in e for e in stats["first_errors"])


def test_timeouts_are_counted_and_do_not_hang(backend_factory):
    proc = backend_factory(faults=["drop-agent-completed"])
    started = time.monotonic()
    stats = chat(proc.ws_url, proc.jwt_secret, count=10, concurrency=10, session_timeout=1.0)
    elapsed = time.monotonic() - started
    assert stats["timeouts"] == 10 and stats["failed"] == 10 and stats["errors"] == 0, stats
    assert elapsed < 15, f"10 sessions with a 1 s budget took {elapsed:.1f}s (the default budget is 30 s)"
    assert "timed out after the session budget of 1s before the run ended" in stats["first_errors"][0]


def test_leak_gives_isolation_violations_and_thresholds_fail_readably(backend_factory):
    proc = backend_factory(faults=["leak"])
    stats = chat(proc.ws_url, proc.jwt_secret, count=40, concurrency=40)
    assert stats["isolation_violations"] > 0 and stats["failed"] > 0, stats
    assert stats["violated_rules"].get("rule 5") == stats["isolation_violations"]
    with pytest.raises(AssertionError) as err:
        AgentConcurrency().concurrent_sessions_should_meet_thresholds(stats)
    message = str(err.value)
    assert f"isolation violations {stats['isolation_violations']}" in message
    assert "expected at most 0" in message and "success rate" in message
    assert "First errors:" in message and "Rule 5 (isolation) violated" in message


def test_dropped_tool_completed_gives_rule_violations(backend_factory):
    proc = backend_factory(faults=["drop-tool-completed"])
    stats = chat(proc.ws_url, proc.jwt_secret, count=20, concurrency=10)
    assert stats["rule_violations"] >= 20 and stats["successful"] == 0, stats
    assert "rule 3" in stats["violated_rules"]
    assert any("expected tool_completed for" in e for e in stats["first_errors"])


def test_close_mid_run_is_judged_not_hung(backend_factory):
    proc = backend_factory(faults=["close-mid-run"])
    stats = chat(proc.ws_url, proc.jwt_secret, count=10, concurrency=10)
    assert stats["failed"] == 10 and stats["timeouts"] == 0 and "rule 1" in stats["violated_rules"], stats


def test_keyword_reads_the_resolved_target(backend, backend_factory):
    from agentkit import target as targets

    other = backend_factory(faults=["drop-tool-completed"])
    resolved = targets.Target(profile="local", backend_url=backend.url, ws_url=backend.ws_url, auth_url=backend.url,
                              jwt_secret=backend.jwt_secret)
    previous = targets.current()
    targets.set_current(resolved)
    try:
        lib = AgentConcurrency()
        stats = lib.run_concurrent_sessions(10, concurrency=5)
        assert stats["successful"] == 10, stats
        # an explicit URL wins over the target's (here: a backend with a fault, same secret format)
        stats = lib.run_concurrent_sessions(5, concurrency=5, ws_url=other.ws_url, jwt_secret=other.jwt_secret)
        assert stats["rule_violations"] >= 5, stats
        # the target's timing budgets apply: an impossible first-event budget fails rule 6
        targets.set_current(targets.Target(profile="local", backend_url=backend.url, ws_url=backend.ws_url,
                                           auth_url=backend.url, jwt_secret=backend.jwt_secret,
                                           first_event_timeout=0.000001))
        stats = lib.run_concurrent_sessions(5, concurrency=5)
        assert "rule 6" in stats["violated_rules"] and stats["successful"] == 0, stats
    finally:
        targets.set_current(previous)


def test_1000_chat_sessions_at_once_succeed(backend):
    # What is checked is that none is lost, not how fast a shared 2-core machine serves them:
    # budgets (rule 6) wide enough for a busy machine, so only a lost or broken session fails.
    previous = targets.current()
    targets.set_current(targets.Target(profile="local", backend_url=backend.url, ws_url=backend.ws_url,
                                       auth_url=backend.url, jwt_secret=backend.jwt_secret,
                                       first_event_timeout=120.0, run_timeout=120.0, connect_timeout=120.0))
    try:
        stats = AgentConcurrency().run_concurrent_sessions(1000, concurrency=1000, scenario="chat")
    finally:
        targets.set_current(previous)
    assert stats["total"] == 1000 and stats["successful"] == 1000, {k: v for k, v in stats.items()}
    assert stats["events_received"] == 7000 and stats["isolation_violations"] == 0, stats
    assert stats["peak_open_connections"] > 100  # they really overlapped


# --- arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, expected", [
    ({"count": 0}, "count must be a whole number of at least 1, got 0"),
    ({"concurrency": -3}, "concurrency must be a whole number of at least 1, got -3"),
    ({"ws_url": "http://example.com/ws"}, "WebSocket URL 'http://example.com/ws' is not valid"),
    ({"ws_url": "ws://host:99999/ws"}, "invalid port"),
    ({"scenario": "dance"}, "scenario must be one of connect, ping, chat, got 'dance'"),
    ({"users": "many"}, "users must be one of distinct, single, got 'many'"),
    ({"session_timeout": 0}, "session_timeout must be a positive number of seconds, got 0"),
    ({"jwt_secret": None}, "needs a JWT secret"),
])
def test_bad_engine_arguments_are_named(kwargs, expected):
    settings = dict(ws_url="ws://127.0.0.1:9/ws", jwt_secret="s" * 32, count=1, concurrency=1)
    settings.update(kwargs)
    with pytest.raises(EngineError) as err:
        SessionRun(EngineSettings(**settings))
    assert expected in str(err.value)
    assert engine_threads() == []


def test_bad_keyword_arguments_are_named(monkeypatch):
    lib = AgentConcurrency()
    with pytest.raises(ValueError, match="WebSocket URL 'localhost:8000' is not valid"):
        lib.run_concurrent_sessions(5, ws_url="localhost:8000", jwt_secret="x" * 32)
    with pytest.raises(ValueError, match="concurrency must be a whole number of at least 1, got 0"):
        lib.run_concurrent_sessions(5, concurrency=0, ws_url="ws://127.0.0.1:9/ws", jwt_secret="x" * 32)
    # no ws_url: the target is resolved on first use, the configured one (never a localhost guess)
    monkeypatch.setenv("E2E_TARGET", "staging")
    for name in ("E2E_BACKEND_URL", "E2E_WS_URL", "E2E_AUTH_URL", "E2E_JWT_SECRET", "E2E_OAUTH_SIMULATION_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match=r"^Configuration invalid for target 'staging' \(2 problems\); nothing "
                                                 r"was connected:\n- E2E_BACKEND_URL is not set\n"):
        lib.run_concurrent_sessions(5)
    assert targets.current() is None and engine_threads() == []
    with pytest.raises(ValueError, match="needs a JWT secret"):
        lib.run_concurrent_sessions(5, ws_url="ws://127.0.0.1:9/ws")
    with pytest.raises(ValueError, match="Statistics lack"):
        lib.concurrent_sessions_should_meet_thresholds({"total": 3})


def test_unreachable_server_counts_errors():
    stats = run_sessions(ws_url="ws://127.0.0.1:9/ws", jwt_secret="x" * 32, count=3, concurrency=3)
    assert stats["errors"] == 3 and stats["failed"] == 3 and stats["auth_rejected"] == 0, stats
    assert stats["first_errors"] and "session-" in stats["first_errors"][0]


# --- thresholds ------------------------------------------------------------------------------
def _stats(**over) -> dict:
    base = {"scenario": "chat", "total": 100, "concurrency": 10, "successful": 100, "failed": 0,
            "auth_rejected": 0, "timeouts": 0, "errors": 0, "agent_errors": 0, "rule_violations": 0, "isolation_violations": 0,
            "connect_p95_ms": 120.0, "run_p95_ms": 900.0, "violated_rules": {}, "first_errors": []}
    base.update(over)
    return base


def test_thresholds_pass_and_list_every_breach():
    lib = AgentConcurrency()
    lib.concurrent_sessions_should_meet_thresholds(_stats())
    with pytest.raises(AssertionError) as err:
        lib.concurrent_sessions_should_meet_thresholds(
            _stats(successful=90, failed=10, timeouts=10, connect_p95_ms=2500.0, run_p95_ms=31000.0,
                   first_errors=["session-3 (load-user-3): timed out after 30s before the run ended"]),
            min_success_rate=99)
    message = str(err.value)
    assert message.startswith("Concurrent sessions breached 3 thresholds (chat, 100 sessions, concurrency 10):")
    assert "success rate 90.00% (90/100 sessions), expected at least 99%" in message
    assert "timeouts 10" in message
    assert "connect p95 2500 ms, expected at most 2000 ms" in message
    assert "run p95 31000 ms, expected at most 30000 ms" in message
    assert "session-3 (load-user-3): timed out" in message
    # a threshold set to None is skipped; a connect scenario has no run time to judge
    lib.concurrent_sessions_should_meet_thresholds(_stats(connect_p95_ms=2500.0), max_connect_p95=None)
    lib.concurrent_sessions_should_meet_thresholds(_stats(scenario="connect", run_p95_ms=None))
    with pytest.raises(AssertionError, match="connect p95 unknown"):
        lib.concurrent_sessions_should_meet_thresholds(_stats(connect_p95_ms=None))
    with pytest.raises(AssertionError, match=r"rule violations 4 \(rule 3: 4\), expected at most 0"):
        lib.concurrent_sessions_should_meet_thresholds(_stats(rule_violations=4, violated_rules={"rule 3": 4}),
                                                       max_rule_violations=0)


def test_percentile_is_nearest_rank():
    assert percentile([], 95) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile(list(range(1, 101)), 50) == 50


# --- interruption: every socket closed, the loop thread stopped --------------------------
def test_cancel_closes_every_socket_and_stops_the_loop(backend_factory):
    proc = backend_factory(faults=["drop-agent-completed"])
    # Budgets far beyond any busy machine: the sessions stay open until cancelled.
    run = SessionRun(EngineSettings(ws_url=proc.ws_url, jwt_secret=proc.jwt_secret, count=40, concurrency=20,
                                    session_timeout=300, open_timeout=120)).start()
    try:
        assert wait_until(lambda: run.tally.open == 20, 120), f"only {run.tally.open} sessions opened in 120 s"
        assert len(open_connections_to(port_of(proc.ws_url))) == 20
    finally:
        run.cancel()
    assert not run._thread.is_alive()
    assert open_connections_to(port_of(proc.ws_url)) == []
    assert run.done < 40


def test_keyboard_interrupt_in_keyword_wait_cleans_up(backend_factory):
    proc = backend_factory(faults=["drop-agent-completed"])
    # Budgets far beyond any busy machine: only the interrupt can end this wait.
    run = SessionRun(EngineSettings(ws_url=proc.ws_url, jwt_secret=proc.jwt_secret, count=10, concurrency=10,
                                    session_timeout=300, open_timeout=120))
    sent = threading.Event()
    interrupted = threading.Event()
    handler_at_send: list = []

    def interrupt_once_open() -> None:
        if wait_until(lambda: run.tally.open == 10, 120):
            handler_at_send.append(signal.getsignal(signal.SIGINT))
            sent.set()
            os.kill(os.getpid(), signal.SIGINT)
            if interrupted.wait(60):
                return
        run.cancel()  # ends the wait below, which then fails naming how far it got

    watcher = threading.Thread(target=interrupt_once_open, daemon=True)
    # What Ctrl-C does in a plain Python process; whatever an earlier test in this worker
    # left installed (a library's own handler) would swallow the signal.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    outcome = "returned"
    try:
        watcher.start()
        AgentConcurrency()._wait(run)
    except KeyboardInterrupt:
        outcome = "interrupted"
        interrupted.set()
    except Exception as err:  # noqa: BLE001 - named in the failure below
        outcome = repr(err)
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert outcome == "interrupted", \
        f"no KeyboardInterrupt ({outcome}): SIGINT sent={sent.is_set()} (SIGINT handler then: {handler_at_send}), " \
        f"{run.tally.open} of 10 sessions open"
    watcher.join(5)
    assert not run._thread.is_alive()
    assert open_connections_to(port_of(proc.ws_url)) == []


def test_progress_is_printed_for_long_runs(backend_factory, capfd):
    proc = backend_factory(faults=["drop-agent-completed"])
    stats = AgentConcurrency().run_concurrent_sessions(4, concurrency=4, session_timeout=timedelta(seconds=4.5),
                                                        ws_url=proc.ws_url, jwt_secret=proc.jwt_secret)
    assert stats["timeouts"] == 4
    out = capfd.readouterr().out
    assert "sessions done 0/4, failures 0" in out, out


# --- variants the reference backend does not speak: a small in-test server -------------------
class FakeServer:
    """A websockets server in its own loop thread. ``mode``: ``heartbeat`` (sends a server
    ping mid-run and continues only after the pong), ``policy-close`` (auth error frame,
    then close 1008), ``bad-schema`` (agent_started without its agent name), ``agent-error``
    (the run ends with agent_error). ``wire``: ``default`` (docs/protocol.md) or ``netra``
    (base64url token in ``jwt.<t>``, a welcome with a truncated user id, flat events with ISO
    timestamps): the server heartbeat and the refusal by policy close are that wire's."""

    def __init__(self, mode: str, wire: str = "default") -> None:
        self.mode = mode
        self.wire = wire
        self.pongs = 0
        self.extensions: list[str] = []  # what each client offered in Sec-WebSocket-Extensions
        self.port: int | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = self._loop.create_future()

        def select(connection, offered):  # jwt-auth on the default wire; netra echoes its jwt.<t>
            return offered[0] if offered else None

        async with serve(self._handler, "127.0.0.1", 0, select_subprotocol=select) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def _user(self, ws) -> str:
        offered = ws.request.headers.get("Sec-WebSocket-Protocol", "")
        token = next(p.strip()[4:] for p in offered.split(",") if p.strip().startswith("jwt."))
        if self.wire == "netra":
            token = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        return jwt.decode(token, options={"verify_signature": False})["sub"]

    def _welcome(self, user: str) -> str:
        if self.wire == "netra":
            return json.dumps({"type": "connection_established", "timestamp": time.time(),
                               "data": {"mode": "main", "user_id": user[:8] + "...", "connection_id": "ws_fake"}})
        return json.dumps({"type": "system_message", "data": {"event": "connection_established",
                                                              "connection_id": "ws_fake", "user_id": user}})

    async def _handler(self, ws) -> None:
        self.extensions.append(ws.request.headers.get("Sec-WebSocket-Extensions", ""))
        user = self._user(ws)
        if self.mode == "policy-close":
            await ws.send(json.dumps({"type": "error_message", "error_code": "AUTH_FAILED"}))
            await ws.close(1008, "auth failed")
            return
        await ws.send(self._welcome(user))
        msg = json.loads(await ws.recv())
        run_id, thread_id = msg["payload"]["run_id"], msg["payload"]["thread_id"]

        def ev(kind: str, **data) -> str:
            if self.wire == "netra":  # flat, ISO timestamps; the details under their netra names
                names = {"thought": "reasoning", "result": "final_response"}
                return json.dumps({"type": kind, "run_id": run_id, "thread_id": thread_id, "user_id": user,
                                   "timestamp": datetime.now(timezone.utc).isoformat(),
                                   **{names.get(k, k): v for k, v in data.items()}})
            return json.dumps({"type": kind, "run_id": run_id, "thread_id": thread_id, "user_id": user,
                               "timestamp": time.time(), "data": data})

        await ws.send(ev("agent_started") if self.mode == "bad-schema" else ev("agent_started", agent_name="a"))
        if self.mode == "heartbeat":
            await ws.send(json.dumps({"type": "ping"}))
            while json.loads(await ws.recv()).get("type") != "pong":
                pass
            self.pongs += 1
        await ws.send(ev("agent_thinking", thought="t"))
        if self.mode == "agent-error":
            await ws.send(ev("agent_error", error="model unavailable"))
        else:
            await ws.send(ev("agent_completed", result="done"))
        try:
            await ws.wait_closed()
        except Exception:  # noqa: BLE001
            pass


def test_server_heartbeat_is_answered_and_kept_out_of_the_run():
    # the heartbeat is the netra wire's (the default wire has none: docs/protocol.md, "Variants")
    with FakeServer("heartbeat", wire="netra") as server:
        stats = run_sessions(ws_url=server.url, jwt_secret="x" * 32, count=8, concurrency=8, session_timeout=60, first_event_timeout=30,
                             dialect="netra")
    assert stats["successful"] == 8 and stats["rule_violations"] == 0, stats
    assert server.pongs == 8
    assert stats["events_received"] == 8 * 5  # welcome, started, ping, thinking, completed


def test_policy_close_before_welcome_is_auth_rejected():
    # what a refusal looks like is the dialect's: the netra wire refuses by an AUTH_FAILED frame and a policy close
    with FakeServer("policy-close", wire="netra") as server:
        stats = run_sessions(ws_url=server.url, jwt_secret="x" * 32, count=5, concurrency=5, session_timeout=60, first_event_timeout=30,
                             dialect="netra")
    assert stats["auth_rejected"] == 5 and stats["errors"] == 0, stats
    assert ("closed with code 1008 (auth failed) before the welcome, after error='AUTH_FAILED'"
            in stats["first_errors"][0]), stats["first_errors"]


def test_policy_close_is_not_a_refusal_on_the_default_wire():
    # the default wire refuses with HTTP 403 only: a close before the welcome is an error, not a refusal
    with FakeServer("policy-close") as server:
        stats = run_sessions(ws_url=server.url, jwt_secret="x" * 32, count=3, concurrency=3, session_timeout=60, first_event_timeout=30)
    assert stats["errors"] == 3 and stats["auth_rejected"] == 0, stats
    assert "connection closed before the welcome frame: connection closed by the server, code 1008 (auth failed)" \
        in stats["first_errors"][0], stats["first_errors"]


def test_schema_violation_is_reported_with_jsonschema_message():
    with FakeServer("bad-schema") as server:
        stats = run_sessions(ws_url=server.url, jwt_secret="x" * 32, count=3, concurrency=3, session_timeout=60, first_event_timeout=30)
        unchecked = run_sessions(ws_url=server.url, jwt_secret="x" * 32, count=3, concurrency=3,
                                 session_timeout=60, first_event_timeout=30, check_schemas=False)
    assert stats["violated_rules"] == {"rule 7": 3} and stats["successful"] == 0, stats
    assert "'agent_name' is a required property" in stats["first_errors"][0]
    assert unchecked["successful"] == 3, unchecked


def test_run_ending_in_agent_error_is_a_failure_of_its_own():
    with FakeServer("agent-error") as server:
        stats = run_sessions(ws_url=server.url, jwt_secret="x" * 32, count=4, concurrency=4, session_timeout=60, first_event_timeout=30)
    assert stats["agent_errors"] == 4 and stats["failed"] == 4 and stats["rule_violations"] == 0, stats
    assert stats["errors"] == 0 and stats["run_p95_ms"] is not None
    assert "the run ended with agent_error: 'model unavailable'" in stats["first_errors"][0]


# --- the fast schema path never passes what jsonschema rejects ------------------------------
def _sample_events() -> list[dict]:
    base = {"run_id": "r", "thread_id": "t", "user_id": "u", "timestamp": 1700000000.5}
    return [
        dict(base, type="agent_started", data={"agent_name": "a"}),
        dict(base, type="agent_thinking", data={"thought": "x"}),
        dict(base, type="tool_executing", data={"tool_name": "search", "parameters": {"q": "x"}}),
        dict(base, type="tool_completed", data={"tool_name": "search", "result": [1], "duration_ms": 3}),
        dict(base, type="agent_completed", data={"result": "done"}),
        dict(base, type="agent_error", data={"error": "boom"}),
    ]


def _mutations(msg: dict):
    for key in list(msg):
        out = copy.deepcopy(msg)
        del out[key]
        yield out
        for bad in (None, True, 0, -1, "", "2024-01-01T00:00:00Z", 1.5, [], {}, "x"):
            out = copy.deepcopy(msg)
            out[key] = bad
            yield out
    for key in list(msg["data"]):
        out = copy.deepcopy(msg)
        del out["data"][key]
        yield out
        for bad in (None, False, 1, -2.5, "", "y", [], {}):
            out = copy.deepcopy(msg)
            out["data"][key] = bad
            yield out


def test_fast_schema_verdict_agrees_with_jsonschema():
    """rules.schemas decides with one verdict (schema_valid is "no event_errors"); it must agree
    with jsonschema itself (formats checked) on the schema file of each event, for valid events
    and for hundreds of broken variants of them."""
    from jsonschema import Draft202012Validator, FormatChecker

    dialect = current()
    by_type = dialect.schemas["by_type"]
    folder = ROOT / "resources" / "schemas" / dialect.schemas["dir"]
    plain = {name: Draft202012Validator(json.loads((folder / file).read_text(encoding="utf-8")),
                                        format_checker=FormatChecker()) for name, file in by_type.items()}
    checked = rejected = 0
    for msg in _sample_events():
        event = Event.from_text(1, 0.0, "c", json.dumps(msg), dialect)
        assert schema_valid(event) and event_errors(event) == [], msg
        for variant in _mutations(msg):
            if not isinstance(variant.get("type"), str) or variant["type"] not in by_type:
                continue
            event = Event.from_text(1, 0.0, "c", json.dumps(variant), dialect)
            errors = event_errors(event)
            assert schema_valid(event) == (not errors), (variant, errors)
            assert plain[variant["type"]].is_valid(variant) == (not errors), (variant, errors)
            checked += 1
            rejected += bool(errors)
    assert checked > 200 and rejected > 100


# --- the keyword in a real Robot run ---------------------------------------------------------
ROBOT_SUITE = """\
*** Settings ***
Library    AgentConcurrency

*** Variables ***
${SECRET: Secret}    %{CONCURRENCY_TEST_SECRET}

*** Test Cases ***
Chat Sessions Meet Thresholds
    ${stats}=    Run Concurrent Sessions    40    concurrency=20    scenario=chat
    ...    ws_url=${WS_URL}    jwt_secret=${SECRET}    session_timeout=10s
    Should Be Equal As Integers    ${stats}[successful]    40
    Concurrent Sessions Should Meet Thresholds    ${stats}    max_connect_p95=5s    max_run_p95=10s

Refused Sessions Fail The Thresholds Readably
    ${stats}=    Run Concurrent Sessions    5    concurrency=5    scenario=connect
    ...    ws_url=${WS_URL}    jwt_secret=not-the-backend-secret-but-long-enough-to-sign
    Should Be Equal As Integers    ${stats}[auth_rejected]    5
    Run Keyword And Expect Error    *success rate 0.00% (0/5 sessions), expected at least 100%*auth rejected 5*
    ...    Concurrent Sessions Should Meet Thresholds    ${stats}

Bad Arguments Are Named
    Run Keyword And Expect Error    *count must be a whole number of at least 1, got 0*
    ...    Run Concurrent Sessions    0    ws_url=${WS_URL}    jwt_secret=${SECRET}
    Run Keyword And Expect Error    *'scenario' got value 'dance'*
    ...    Run Concurrent Sessions    1    scenario=dance    ws_url=${WS_URL}    jwt_secret=${SECRET}
"""


def test_keywords_in_a_robot_run(backend, tmp_path, monkeypatch):
    import robot

    suite = tmp_path / "concurrency.robot"
    suite.write_text(textwrap.dedent(ROBOT_SUITE))
    monkeypatch.setenv("CONCURRENCY_TEST_SECRET", backend.jwt_secret)
    rc = robot.run(str(suite), outputdir=str(tmp_path), pythonpath=[str(ROOT / "libraries")],
                   variable=[f"WS_URL:{backend.ws_url}"], loglevel="DEBUG", console="none")
    output = (tmp_path / "output.xml").read_text(encoding="utf-8")
    assert rc == 0, output[-3000:]
    assert 'class="concurrency-stats"' in output and "Concurrent sessions: 40/40 successful" in output
    for name in ("output.xml", "log.html", "report.html"):
        assert backend.jwt_secret not in (tmp_path / name).read_text(encoding="utf-8"), f"secret in {name}"
