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
def field_robot_run(tmp_path_factory):
    """One real ``robot`` run against the scripted servers (see ``field_robot.py``)."""
    import field_robot

    return field_robot.run(tmp_path_factory.mktemp("field-robot"))
