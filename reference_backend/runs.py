"""Agent runs: play the run for a message, render it for the wire, apply the faults, send it.

What a run does comes from :mod:`reference_backend.scenarios` (the built-in default,
or a scripted scenario); how it looks on the socket from the wire; each frame waits
its delay, gets its timestamp and goes out, the first one at once. Under ``leak`` each
frame is also sent to another user's connection; under ``close-mid-run`` the socket is
closed (1011) after the second frame.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, NamedTuple

from . import faults as f
from .config import BackendConfig
from .connections import Connection, ConnectionRegistry

if TYPE_CHECKING:
    from .scenarios import Player
    from .wires.base import Wire

log = logging.getLogger("reference_backend.runs")


class RunRequest(NamedTuple):
    """What one client message asked for."""

    content: str
    thread_id: str
    run_id: str


def new_thread_id() -> str:
    return "thread_" + secrets.token_hex(8)


def new_run_id() -> str:
    return "run_" + secrets.token_hex(8)


class Runner:
    """Starts and streams the runs of every connection of one process."""

    def __init__(self, config: BackendConfig, registry: ConnectionRegistry, wire: Wire, player: Player) -> None:
        self.config = config
        self.registry = registry
        self.wire = wire
        self.player = player

    def start(self, conn: Connection, request: RunRequest) -> None:
        """Stream a run as a task of ``conn`` (cancelled when it closes)."""
        task = asyncio.create_task(self.stream(conn, request))
        conn.runs.add(task)
        task.add_done_callback(conn.runs.discard)

    async def stream(self, conn: Connection, request: RunRequest) -> None:
        """Send one run's frames to ``conn`` (and, under ``leak``, to another connection too)."""
        config = self.config
        stamp = self.wire.stamp
        leak = config.has(f.LEAK)
        close_mid_run = config.has(f.CLOSE_MID_RUN)
        scenario = "?"
        sent = 0
        outcome = "all sent"
        try:
            scenario, beats = self.player.play(request.content, conn.user_id, request.thread_id)
            frames = self.wire.renderer(request, conn.user_id).render(beats)
            frames = f.apply_sequence_faults(frames, config.faults)
            for index, frame in enumerate(frames):
                if index == 0:
                    if config.has(f.SLOW_FIRST_EVENT):
                        await asyncio.sleep(config.slow_first_delay)
                elif frame.delay > 0:
                    await asyncio.sleep(frame.delay)
                text = frame.head + stamp() + frame.tail
                if not await conn.send_text(text):
                    outcome = "connection closed"
                    break
                sent += 1
                if leak:
                    target = self.registry.leak_target(conn)
                    if target is not None:
                        await target.send_text(text)
                if close_mid_run and sent == 2:
                    outcome = "closed mid-run (fault)"
                    await conn.close(1011)
                    break
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception:  # a bug here must show in the log, not as an unretrieved task error
            outcome = "crashed"
            log.exception("run %s crashed", request.run_id)
        finally:
            log.info(
                "run %s thread %s conn %s user %s scenario %s: %d event(s) sent, %s%s",
                request.run_id,
                request.thread_id,
                conn.id,
                conn.user_id,
                scenario,
                sent,
                outcome,
                f" faults={','.join(sorted(config.faults))}" if config.faults else "",
            )
