"""The ``/ws`` endpoint: the connection's life, the same on every wire.

A raw ASGI app (routed by the Starlette app) so that no per-frame framework
layer sits between uvicorn and the protocol. The wire (:mod:`reference_backend.wires`)
decides what is said; this module only sequences it:

- the wire checks the upgrade's token and accepts or refuses it;
- accepted -> the wire's welcome frame (unless ``no-connection-established``), and
  the server heartbeat when one is configured (netra wire);
- every client frame goes to the wire, which answers it or asks for a run;
- on close, the connection's run tasks and heartbeat are cancelled.
"""

from __future__ import annotations

import logging

from . import faults as f
from .config import BackendConfig
from .connections import Connection, ConnectionRegistry
from .heartbeat import Heartbeat
from .runs import Runner
from .wires.base import Wire, peer

log = logging.getLogger("reference_backend.ws")


class AgentWebSocket:
    """ASGI app for one path; one call per WebSocket connection."""

    def __init__(self, config: BackendConfig, registry: ConnectionRegistry, wire: Wire, runner: Runner) -> None:
        self.config = config
        self.registry = registry
        self.wire = wire
        self.runner = runner

    async def __call__(self, scope: dict, receive, send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        conn = await self.wire.open(scope, send)
        if conn is None:
            return
        self.registry.add(conn)
        log.info("connection %s opened: user %s from %s", conn.id, conn.user_id, peer(scope))
        try:
            await self._serve(conn, receive)
        finally:
            conn.closed = True
            self.registry.remove(conn)
            in_flight = len(conn.runs)
            conn.cancel_runs()
            if conn.heartbeat is not None:
                conn.heartbeat.stop()
            log.info("connection %s closed: user %s, %d run(s) cancelled", conn.id, conn.user_id, in_flight)

    async def _serve(self, conn: Connection, receive) -> None:
        if not self.config.has(f.NO_CONNECTION_ESTABLISHED):
            welcome = self.wire.welcome(conn)
            if welcome is not None:
                await conn.send_text(welcome)
        if self.config.heartbeat > 0:
            conn.heartbeat = Heartbeat(conn, self.config.heartbeat)
        wire, runner = self.wire, self.runner
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive":
                continue
            request = await wire.on_text(conn, message.get("text"))
            if request is not None:
                runner.start(conn, request)
