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
