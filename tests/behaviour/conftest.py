"""The AgentBehaviour tests: every keyword's pass and failure on runs built by hand, and the
README-style examples run in Robot against the embedded backend with scenario files
written here. ``libraries`` and the project root are on sys.path (pyproject's pytest
``pythonpath``)."""

from __future__ import annotations

import pytest

from agentkit.wire import dialect as dialects


@pytest.fixture(autouse=True)
def default_dialect():
    """Hand-made runs carry their own dialect; the process-wide one is left as it was found."""
    dialects.use("default")
    yield
    dialects.use("default")
