"""Field regressions: each test starts and ends with no target resolved, the default
dialect and no open connection (the libraries keep these per process)."""

from __future__ import annotations

import pytest

from agentkit import target as targets
from agentkit.wire import dialect as dialects


@pytest.fixture(autouse=True)
def clean_kit_state():
    targets.set_current(None)
    dialects.use("default")
    yield
    from AgentSessions import AgentSessions

    AgentSessions().close_all_connections()
    targets.set_current(None)
    dialects.use("default")


@pytest.fixture(scope="session")
def field_robot_run(tmp_path_factory, worker_id):
    """One real ``robot`` run against the scripted servers (see ``field_robot.py``), shared
    by every pytest-xdist worker of the session (their base temporary folder's parent)."""
    import field_robot

    base = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        base = base.parent
    return field_robot.shared_run(base / "field-shared")
