"""Field regressions: each test starts and ends with no target resolved, the default
dialect and no open connection (the libraries keep these per process)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from agentkit import target as targets
from agentkit.wire import dialect as dialects


# Threads a test may start: scripted servers, the engine's loop, the keywords' readers.
OURS = ("field-server", "agentkit-engine", "ws-reader-")


def _ours() -> list[str]:
    return [t.name for t in threading.enumerate() if t.is_alive() and t.name.startswith(OURS)]


@pytest.fixture(autouse=True)
def clean_kit_state():
    """No target, the default dialect and no connection before and after each test; and
    every server, engine and reader thread the test started has stopped when it ends."""
    targets.set_current(None)
    dialects.use("default")
    yield
    from AgentSessions import AgentSessions

    AgentSessions().close_all_connections()
    targets.set_current(None)
    dialects.use("default")
    deadline = time.monotonic() + 3
    while _ours() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _ours(), f"threads left running after the test: {_ours()}"


@pytest.fixture(scope="session")
def field_robot_run(tmp_path_factory, worker_id):
    """One real ``robot`` run against the scripted servers (see ``field_robot.py``), shared
    by every pytest-xdist worker of the session (their base temporary folder's parent)."""
    import field_robot

    base = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        base = base.parent
    return field_robot.shared_run(base / "field-shared")


@pytest.fixture
def binary_json_dialect(tmp_path):
    """The default wire, but agent events may come as JSON in binary frames."""
    path = tmp_path / "binary-json.json"
    path.write_text(json.dumps({"extends": "default", "name": "default-binary-json",
                                "events": {"binary_json": True}}), encoding="utf-8")
    return str(path)
