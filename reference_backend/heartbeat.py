"""Server heartbeat (netra wire): a ``{"type": "ping"}`` every interval, ``{"type": "pong"}`` expected.

It runs beside the connection's runs, so pings also arrive in the middle of a run.
A client that leaves ``MAX_UNANSWERED`` pings in a row unanswered is closed with 1008
"heartbeat timeout": a client that never answers is visibly punished, not tolerated.
"""

from __future__ import annotations

import asyncio
import logging

from .connections import Connection

log = logging.getLogger("reference_backend.ws")

PING = '{"type":"ping"}'
MAX_UNANSWERED = 3
TIMEOUT_CODE = 1008
TIMEOUT_REASON = "heartbeat timeout"


class Heartbeat:
    """The pings of one connection; :meth:`answered` on every pong."""

    def __init__(self, conn: Connection, interval: float) -> None:
        self.conn = conn
        self.interval = interval
        self.unanswered = 0
        self._task = asyncio.create_task(self._run())

    def answered(self) -> None:
        self.unanswered = 0

    def stop(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.unanswered >= MAX_UNANSWERED:
                log.info("connection %s: %d pings unanswered, closing", self.conn.id, self.unanswered)
                await self.conn.close(TIMEOUT_CODE, TIMEOUT_REASON)
                return
            if not await self.conn.send_text(PING):
                return
            self.unanswered += 1
