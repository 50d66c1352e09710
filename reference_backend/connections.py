"""Open WebSocket connections: serialized sending and the registry of who is connected.

Several run tasks write to one connection at once; a per-connection lock keeps
each frame whole and in the order its task produced it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

AsgiSend = Callable[[dict], Awaitable[None]]

# How far back the leak fault looks for a connection of another user; bounded so
# the fault stays O(1) per event with thousands of connections open.
_LEAK_SEARCH_LIMIT = 64


class Connection:
    """One accepted WebSocket: its ids, its run tasks, and a send that never interleaves."""

    __slots__ = ("id", "user_id", "runs", "closed", "heartbeat", "_send", "_lock")

    def __init__(self, user_id: str, send: AsgiSend) -> None:
        self.id = "ws_" + secrets.token_hex(8)
        self.user_id = user_id
        self.runs: set[asyncio.Task] = set()
        self.closed = False
        self.heartbeat = None  # the wire's Heartbeat, on wires whose server pings
        self._send = send
        self._lock = asyncio.Lock()

    async def send_text(self, text: str) -> bool:
        """Send one text frame; False (and nothing raised) once the connection is gone."""
        if self.closed:
            return False
        async with self._lock:
            if self.closed:
                return False
            try:
                await self._send({"type": "websocket.send", "text": text})
            except Exception:  # the peer went away mid-send; the session loop cleans up
                self.closed = True
                return False
        return True

    async def close(self, code: int, reason: str = "") -> None:
        """Close from the server side (the close-mid-run fault, a heartbeat timeout)."""
        async with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
            except Exception:
                pass

    def cancel_runs(self) -> None:
        for task in self.runs:
            task.cancel()


class ConnectionRegistry:
    """Every open connection, oldest first."""

    def __init__(self) -> None:
        self._open: dict[str, Connection] = {}

    def __len__(self) -> int:
        return len(self._open)

    def add(self, conn: Connection) -> None:
        self._open[conn.id] = conn

    def remove(self, conn: Connection) -> None:
        self._open.pop(conn.id, None)

    def leak_target(self, source: Connection) -> Connection | None:
        """The most recently opened other connection, preferring one of a different user."""
        same_user = None
        for seen, conn in enumerate(reversed(self._open.values())):
            if seen > _LEAK_SEARCH_LIMIT:
                break
            if conn is source or conn.closed:
                continue
            if conn.user_id != source.user_id:
                return conn
            if same_user is None:
                same_user = conn
        return same_user
