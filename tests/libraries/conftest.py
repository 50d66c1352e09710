"""Every library test starts and ends with no target resolved, the default dialect and
no open connection: the libraries keep these per Robot process, so tests must not leak them."""

import pytest

from AgentSessions import AgentSessions
from agentkit.wire import dialect as dialects
from agentkit import target as targets


@pytest.fixture(autouse=True)
def clean_library_state():
    targets.set_current(None)
    dialects.use("default")
    yield
    AgentSessions().close_all_connections()
    targets.set_current(None)
    dialects.use("default")


@pytest.fixture
def sessions():
    """A fresh AgentSessions library instance (connections live in the shared registry)."""
    return AgentSessions()
