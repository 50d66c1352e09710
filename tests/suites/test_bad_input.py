"""Bad input gives one clear failure that names the value, within its time budget.

Configuration (through real ``robot`` runs and direct ``Resolve Target`` calls), a key
file that cannot be read, a server that sends binary or huge frames, one that accepts the
TCP connection and never answers the handshake, and one that is not there at all.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import jwt
import pytest

from suite_runs import STAGING_TESTS, clean_env, report, run_robot

from agentkit.transports.process import wait_until
import agentkit.target as targets  # libraries/ is on sys.path (pyproject's pythonpath)
from AgentAuth import AgentAuth
from AgentConcurrency import AgentConcurrency
from AgentSessions import AgentSessions
from TargetConfig import ConfigurationError, TargetConfig

SECRET = "bad-input-tests-secret-0123456789abcdef"
VALID_REMOTE = {"E2E_BACKEND_URL": "http://127.0.0.1:9", "E2E_AUTH_URL": "http://127.0.0.1:9",
                "E2E_JWT_SECRET": SECRET}


@pytest.fixture(autouse=True)
def no_target():
    """Library calls here run without a resolved target; whatever was set is restored."""
    saved = targets.current()
    targets.set_current(None)
    yield
    targets.set_current(saved)


# --- configuration, through robot ---------------------------------------------------
CONFIG_RUNS = {
    "staging-nothing-set": ({"E2E_TARGET": "staging"},
                            ["Configuration invalid for target 'staging' (2 problems)", "E2E_BACKEND_URL is not set",
                             "E2E_JWT_SECRET and/or E2E_OAUTH_SIMULATION_KEY is not set"]),
    "unknown-profile": ({"E2E_TARGET": "nope"}, ["E2E_TARGET 'nope' is not a known profile", "local", "staging"]),
    "run-timeout-soon": ({"E2E_RUN_TIMEOUT": "soon"}, ["E2E_RUN_TIMEOUT 'soon' is not a time"]),
    "malformed-backend-url": ({"E2E_TARGET": "staging", **VALID_REMOTE, "E2E_BACKEND_URL": "htp:/api.example.com"},
                              ["E2E_BACKEND_URL 'htp:/api.example.com' is malformed"]),
    "malformed-ws-url": ({"E2E_TARGET": "staging", **VALID_REMOTE, "E2E_WS_URL": "http://127.0.0.1:9/ws"},
                         ["E2E_WS_URL 'http://127.0.0.1:9/ws' is malformed"]),
    "three-problems-at-once": ({"E2E_TARGET": "staging", "E2E_BACKEND_URL": "api.example.com",
                                "E2E_RUN_TIMEOUT": "soon", "E2E_OAUTH_SIMULATION_KEY": "a-key-0123456789"},
                               ["(3 problems)", "E2E_AUTH_URL (tokens come from the auth service",
                                "E2E_BACKEND_URL 'api.example.com' is malformed", "E2E_RUN_TIMEOUT 'soon' is not a time"]),
}


@pytest.mark.parametrize("case", list(CONFIG_RUNS))
def test_bad_configuration_is_one_clear_failure_in_seconds(tmp_path, case):
    overrides, expected = CONFIG_RUNS[case]
    run = run_robot(tmp_path, clean_env(**overrides), timeout=60)
    report("bad input (robot runs: the one failure each gives)",
           f"{case:<24} {run.wall:4.1f}s  " + " | ".join(run.suite_setup_message.splitlines())[:300])
    assert run.wall < 10, f"{case}: took {run.wall:.1f}s"
    missing = [e for e in expected if e not in run.suite_setup_message]
    assert not missing, f"{case}: suite setup message lacks {missing}:\n{run.suite_setup_message}"
    # One failure: every test fails with that same setup message, nothing else went on.
    assert len(run.tests) == STAGING_TESTS and len(run.failed) == STAGING_TESTS, run.counts()
    others = {t.message for t in run.failed} - {"Parent suite setup failed:\n" + run.suite_setup_message}
    assert not others, f"{case}: other failures besides the configuration: {others}"
    assert "Target:" not in run.stdout, f"{case}: a target was resolved and published despite the error"
    assert all(e in run.stdout for e in expected), f"{case}: the console does not show the problem:\n{run.stdout[-2000:]}"


def test_nothing_listening_fails_every_test_fast_naming_the_address(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on (bound and released)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = clean_env(E2E_TARGET="staging", E2E_BACKEND_URL=url, E2E_AUTH_URL=url, E2E_JWT_SECRET=SECRET,
                    E2E_OAUTH_SIMULATION_KEY="bad-input-simulation-key", E2E_CONCURRENT_USERS="2")
    run = run_robot(tmp_path, env, timeout=60)
    assert run.wall < 20, f"took {run.wall:.1f}s"
    # Every test that applies to the target fails; the rest skip saying why they do not apply.
    skipped = [t for t in run.tests.values() if t.status == "SKIP"]
    assert len(run.failed) + len(skipped) == STAGING_TESTS and len(run.failed) >= STAGING_TESTS - 8, run.counts()
    assert all("does not play the kit's scenario file" in t.message or "has no thread" in t.message
               for t in skipped), [(t.name, t.message) for t in skipped]
    unnamed = [t.name for t in run.failed if str(port) not in t.message]
    assert not unnamed, f"failures that do not name port {port}: {unnamed}"


# --- configuration, direct calls ----------------------------------------------------
@pytest.mark.parametrize("variable,value", [
    ("E2E_BACKEND_URL", "htp://api.example.com"),
    ("E2E_BACKEND_URL", "api.example.com:8000"),
    ("E2E_BACKEND_URL", "http://"),
    ("E2E_BACKEND_URL", "http://api.example.com:99999"),
    ("E2E_BACKEND_URL", "http://api.example.com:port"),
    ("E2E_AUTH_URL", "ftp://auth.example.com"),
    ("E2E_WS_URL", "http://api.example.com/ws"),
    ("E2E_WS_URL", "ws//api.example.com/ws"),
    ("E2E_WS_URL", "ws://:8000/ws"),
    ("E2E_WS_URL", "wss://api.example.com:0/ws"),
    ("E2E_FIRST_EVENT_TIMEOUT", "-2s"),
    ("E2E_RUN_TIMEOUT", "soon"),
    ("E2E_CONCURRENT_USERS", "many"),
    ("E2E_AUTH_MODE", "cookie"),
])
def test_resolve_target_names_the_bad_value(variable, value):
    env = {**VALID_REMOTE, variable: value}
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as err:
        TargetConfig().resolve_target("staging", env=env)
    # Well under the 10 s connect budget: the bad value is named before anything is dialled.
    assert time.monotonic() - started < 8.0
    message = str(err.value)
    assert f"{variable} '{value}'" in message, message
    assert message.count("\n- ") == 1, f"expected exactly one problem named:\n{message}"
    assert targets.current() is None, "a target was set despite the error"


# --- key files ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["missing", "directory", "not-a-key"])
def test_unreadable_key_file_names_the_file(tmp_path, kind):
    path = {"missing": tmp_path / "no-such-key.pem", "directory": tmp_path,
            "not-a-key": tmp_path / "garbage.pem"}[kind]
    if kind == "not-a-key":
        path.write_text("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
    started = time.monotonic()
    with pytest.raises(ValueError) as err:
        AgentAuth().create_test_token("key-user", algorithm="RS256", key_file=str(path))
    assert time.monotonic() - started < 5.0  # a hang bound: reading a key file is instant
    assert f"'{path}'" in str(err.value), str(err.value)
    assert ("cannot be read" in str(err.value)) == (kind != "not-a-key"), str(err.value)


# --- servers that misbehave -----------------------------------------------------------
HUGE = 5 * 1024 * 1024
BINARY = b"\x00\xff binary frame \x80"


class OddServer:
    """A tiny ``websockets`` server: welcome, then a binary frame and a 5 MB text frame;
    answers ``ping`` with ``pong`` so the session can be shown to survive."""

    def __init__(self) -> None:
        from websockets.asyncio.server import serve

        self._serve = serve
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "test server did not start"

    async def _handler(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        # The welcome names the token's user, as a correct server does (the kit checks it).
        offered = ws.request.headers.get("Sec-WebSocket-Protocol", "")
        token = next((p.strip()[4:] for p in offered.split(",") if p.strip().startswith("jwt.")), "")
        user = jwt.decode(token, options={"verify_signature": False}).get("sub") if token else "odd-user"
        try:
            await ws.send(json.dumps({"type": "system_message", "data": {
                "event": "connection_established", "connection_id": "ws_odd", "user_id": user}}))
            await ws.send(BINARY)
            await ws.send(json.dumps({"type": "huge", "data": {"blob": "x" * HUGE}}))
            async for message in ws:
                if json.loads(message).get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "timestamp": time.time()}))
        except ConnectionClosed:  # a client that gave up on the huge frame
            pass

    async def _main(self) -> None:
        self._stop = asyncio.get_running_loop().create_future()
        self._loop = asyncio.get_running_loop()
        async with self._serve(self._handler, "127.0.0.1", 0, subprotocols=["jwt-auth"], max_size=None) as server:
            self.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
            self._ready.set()
            await self._stop

    def close(self) -> None:
        self._loop.call_soon_threadsafe(lambda: self._stop.done() or self._stop.set_result(None))
        self._thread.join(10)


@pytest.fixture
def odd_server():
    server = OddServer()
    yield server
    server.close()


def _token(user: str = "odd-user") -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 600, "type": "access"}, SECRET, algorithm="HS256")


def test_binary_and_huge_frames_are_kept_and_reported(odd_server):
    sessions = AgentSessions()
    alias = sessions.connect_to_agent_websocket(_token(), url=odd_server.url, alias="odd-frames", timeout=5)
    try:
        # A wait that fails reports what came instead, the binary frame named as such,
        # without pasting 5 MB into the failure message. First both frames must be in (a
        # 5 MB frame can take over a second on a busy machine): a condition, not a sleep.
        assert wait_until(lambda: sessions.get_received_events(alias, "huge"), 60), "the huge frame never arrived"
        started = time.monotonic()
        with pytest.raises(AssertionError) as err:
            sessions.wait_for_event("never_sent", timeout=1, alias=alias)
        assert time.monotonic() - started < 5  # its 1 s, not the default 10 s
        assert "binary frame" in str(err.value) and "huge" in str(err.value), str(err.value)[:1000]
        assert len(str(err.value)) < 20_000, f"failure message is {len(str(err.value))} characters"
        huge = sessions.wait_for_event("huge", timeout=10, alias=alias)
        assert len(huge["data"]["blob"]) == HUGE, "the 5 MB frame was not kept whole"
        frames = sessions.get_received_events(alias)
        binary = [f for f in frames if f.get("parse_error")]
        assert len(binary) == 1 and "binary frame" in binary[0]["raw"], frames[:3]
        assert [e.binary for e in sessions.get_event_log(alias)].count(True) == 1
        sessions.send_ping(alias)  # the session survived both
        sessions.wait_for_event("pong", timeout=5, alias=alias)
    finally:
        sessions.close_connection(alias)


def test_concurrency_engine_reports_huge_frames_without_crashing(odd_server):
    started = time.monotonic()
    stats = AgentConcurrency().run_concurrent_sessions(2, concurrency=2, scenario="ping", ws_url=odd_server.url,
                                                       jwt_secret=SECRET, session_timeout=5)
    assert time.monotonic() - started < 8
    assert stats["total"] == 2 and stats["successful"] + stats["failed"] == 2, stats


def test_concurrency_engine_keeps_huge_frames(odd_server):
    stats = AgentConcurrency().run_concurrent_sessions(2, concurrency=2, scenario="ping", ws_url=odd_server.url,
                                                       jwt_secret=SECRET, session_timeout=5)
    assert stats["successful"] == 2, stats["first_errors"]


@pytest.fixture
def silent_server():
    """Accepts TCP connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{listener.getsockname()[1]}/ws", accepted
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    listener.close()


def test_silent_server_fails_the_connect_within_its_timeout_naming_the_url(silent_server):
    url, accepted = silent_server
    sessions = AgentSessions()
    started = time.monotonic()
    with pytest.raises(AssertionError) as err:
        sessions.connect_to_agent_websocket(_token(), url=url, alias="silent", timeout=2)
    took = time.monotonic() - started
    assert accepted, "the client never reached the silent server (the test proves nothing)"
    assert 1.5 < took < 8.0, f"connect failed after {took:.1f}s with timeout=2s (the default is 10s)"
    assert url in str(err.value) and "2s" in str(err.value), str(err.value)


def test_silent_server_fails_the_refusal_check_naming_the_url(silent_server):
    url, _ = silent_server
    started = time.monotonic()
    with pytest.raises(AssertionError) as err:
        AgentSessions().handshake_should_be_refused(_token(), url=url, timeout=2)
    assert time.monotonic() - started < 8.0  # its 2 s, not the default 10 s
    assert url in str(err.value), str(err.value)


def test_silent_server_counts_as_timeouts_in_fan_out(silent_server):
    url, _ = silent_server
    started = time.monotonic()
    stats = AgentConcurrency().run_concurrent_sessions(3, concurrency=3, scenario="connect", ws_url=url,
                                                       jwt_secret=SECRET, session_timeout=2)
    assert time.monotonic() - started < 10.0  # its 2 s, not the default 30 s
    assert stats["timeouts"] == 3 and stats["successful"] == 0, stats
