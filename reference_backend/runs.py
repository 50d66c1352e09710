"""Agent runs: the planned event sequence and the task that streams it to one connection.

A correct run is ``agent_started``, ``agent_thinking``, then per tool call
``tool_executing`` + ``tool_completed``, another ``agent_thinking``, and
``agent_completed``: ``4 + 2 * tools`` events, ``think_delay`` seconds apart,
the first one sent at once. Every event carries the request's ``run_id`` and
``thread_id`` and the connection's ``user_id``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass

from . import faults as f
from .config import TOOL_NAMES, BackendConfig
from .connections import Connection, ConnectionRegistry

log = logging.getLogger("reference_backend.runs")

AGENT_NAME = "reference_agent"


@dataclass(frozen=True)
class RunRequest:
    """What one ``user_message`` asked for."""

    content: str
    thread_id: str
    run_id: str


def new_thread_id() -> str:
    return "thread_" + secrets.token_hex(8)


def new_run_id() -> str:
    return "run_" + secrets.token_hex(8)


def plan_steps(content: str, tools: int, think_delay: float) -> list[f.Step]:
    """The ``(event_type, data)`` steps of a correct run."""
    preview = content[:80]
    steps: list[f.Step] = [
        ("agent_started", {"agent_name": AGENT_NAME}),
        ("agent_thinking", {"thought": f"Planning an answer to: {preview}"}),
    ]
    for i in range(tools):
        name = TOOL_NAMES[i % len(TOOL_NAMES)]
        steps.append(("tool_executing", {"tool_name": name, "parameters": {"query": preview, "call": i + 1}}))
        steps.append(
            (
                "tool_completed",
                {
                    "tool_name": name,
                    "result": {"summary": f"{name} result {i + 1} for: {preview}"},
                    # The think delay is the time between the two events, i.e. the call's duration.
                    "duration_ms": round(think_delay * 1000, 3),
                },
            )
        )
    steps.append(("agent_thinking", {"thought": f"Composing the answer from {tools} tool result(s)"}))
    steps.append(("agent_completed", {"result": f"Reference answer to: {preview}"}))
    return steps


async def stream_run(
    conn: Connection, request: RunRequest, config: BackendConfig, registry: ConnectionRegistry
) -> None:
    """Send one run's events to ``conn`` (and, under ``leak``, to another connection too)."""
    steps = f.apply_sequence_faults(plan_steps(request.content, config.tools, config.think_delay), config.faults)
    run_id = new_run_id() if config.has(f.WRONG_RUN_ID) else request.run_id
    # The envelope's fixed part, serialized once; each event adds type, timestamp and data.
    ids = json.dumps({"run_id": run_id, "thread_id": request.thread_id, "user_id": conn.user_id})[1:-1]
    leak = config.has(f.LEAK)
    close_mid_run = config.has(f.CLOSE_MID_RUN)
    delay = config.think_delay
    sent = 0
    outcome = "all sent"
    try:
        for index, (event_type, data) in enumerate(steps):
            if index == 0:
                if config.has(f.SLOW_FIRST_EVENT):
                    await asyncio.sleep(config.slow_first_delay)
            elif delay > 0:
                await asyncio.sleep(delay)
            text = f'{{"type":"{event_type}",{ids},"timestamp":{time.time()!r},"data":{json.dumps(data)}}}'
            if not await conn.send_text(text):
                outcome = "connection closed"
                break
            sent += 1
            if leak:
                target = registry.leak_target(conn)
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
            "run %s thread %s conn %s user %s: %d event(s) sent, %s%s",
            request.run_id,
            request.thread_id,
            conn.id,
            conn.user_id,
            sent,
            outcome,
            f" faults={','.join(sorted(config.faults))}" if config.faults else "",
        )
