"""Fixtures for the reference backend's tests: real server processes on free ports.

The tests speak to the backend only over sockets, from docs/protocol.md; nothing is
imported from ``libraries/`` or ``reference_backend/``. Helpers live in
``backend_helpers.py`` (a unique name, so it can't clash with other conftest modules).
"""

from __future__ import annotations


import pytest

from backend_helpers import FAST_DELAY, BackendServer


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    """Factory: start a backend with the given CLI args (and env); all are stopped at session end."""
    started: list[BackendServer] = []

    def start(*args: str, env: dict | None = None, ready: bool = True, **kwargs) -> BackendServer:
        log = tmp_path_factory.mktemp("backend") / "stderr.log"
        server = BackendServer(["--port", "0", *args], log, env, **kwargs)
        started.append(server)
        return server.wait_ready() if ready else server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server) -> BackendServer:
    """The shared fault-free backend: 1 tool, small think delay."""
    return start_server("--think-delay", str(FAST_DELAY), "--tools", "1")


@pytest.fixture(scope="session")
def netra(start_server) -> BackendServer:
    """The shared fault-free backend on the netra wire (heartbeat at its default 25 s)."""
    return start_server("--wire", "netra", "--think-delay", str(FAST_DELAY), "--tools", "1")


@pytest.fixture(scope="session")
def agui(start_server) -> BackendServer:
    """The shared fault-free backend on the ag-ui wire."""
    return start_server("--wire", "ag-ui", "--think-delay", str(FAST_DELAY), "--tools", "1")
