"""The wires one backend process can speak on ``/ws`` (``--wire``), one module per family.

==========  =====================================================================
``default``  docs/protocol.md's main sections (:mod:`.default`)
``netra``    the variants table of docs/protocol.md: flat events, server heartbeat (:mod:`.netra`)
``ag-ui``    AG-UI events over the WebSocket, runs started by a RunAgentInput (:mod:`.agui`)
==========  =====================================================================

Each is a :class:`~.base.Wire`: the upgrade's token check, the welcome, the answer to a
client frame, and a renderer that turns a run's beats into frames.
"""

from __future__ import annotations

from ..config import BackendConfig
from .base import Wire


def create_wire(config: BackendConfig) -> Wire:
    """The wire ``config.wire`` names; its module is imported only when chosen."""
    if config.wire == "default":
        from .default import DefaultWire as cls
    elif config.wire == "netra":
        from .netra import NetraWire as cls
    elif config.wire == "ag-ui":
        from .agui import AgUiWire as cls  # imports the ag-ui-protocol models (~0.1 s)
    else:
        raise ValueError(f"unknown wire {config.wire!r}; valid wires: default, netra, ag-ui")
    return cls(config)
