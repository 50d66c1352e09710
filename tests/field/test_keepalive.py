"""Field report: the engine's own keepalive ping (20 s interval, 20 s timeout) closed a
session whose server was busy inside a 45 s tool call, and the kit blamed the server under
rules 1 and 3; the step-by-step keywords passed the same server.

Scaled down: a server that stops reading (so answers no WebSocket ping) while a tool call
lasts 3 s, and the engine's keepalive at 0.5 s. Keepalive must never undercut the run
budget; a close the client made is reported as the client's, with why."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

from websockets.frames import Opcode

from field_servers import ScriptedServer, both, token_for, use_target

TOOL_CALL_S = 3.0


def busy_tool_call(read_while_busy: bool = False, seconds: float = TOOL_CALL_S):
    """A correct run whose tool call takes ``seconds``; unless ``read_while_busy``, the
    server reads nothing meanwhile (a busy event loop): pings wait, unanswered."""

    async def script(peer) -> None:
        pings = peer.server.pings = getattr(peer.server, "pings", [])
        protocol = peer.ws.protocol
        original = protocol.recv_frame

        def recv_frame(frame):  # count the client's WebSocket pings as the server reads them
            if frame.opcode is Opcode.PING:
                pings.append(frame)
            return original(frame)

        protocol.recv_frame = recv_frame
        await peer.welcome()
        run_id, thread_id = await peer.next_start()
        events = peer.run_events(run_id, thread_id)
        await peer.play(events[:3])          # started, thinking, tool_executing
        if not read_while_busy:
            peer.ws.transport.pause_reading()
        await asyncio.sleep(seconds)
        if not read_while_busy:
            peer.ws.transport.resume_reading()
        await peer.play(events[3:])          # tool_completed, completed
    return script


def test_keepalive_does_not_close_a_session_busy_in_a_long_tool_call():
    with ScriptedServer(busy_tool_call()) as server:
        use_target(server, E2E_RUN_TIMEOUT="6s")
        stepwise, fanout = both(engine_kwargs={"keepalive": timedelta(seconds=0.5)})
        pings = list(getattr(server, "pings", []))
    assert stepwise.outcome == fanout.outcome == "pass", (stepwise, fanout)
    assert fanout.stats["run_p50_ms"] >= TOOL_CALL_S * 1000, fanout.stats
    # websockets keeps one ping in flight: the one sent 0.5 s in waited, unanswered, for the tool call to end
    assert len(pings) >= 1, "the engine's keepalive (every 0.5s) sent no ping: this test would prove nothing"


def test_session_over_its_budget_is_a_timeout_not_a_keepalive_close_or_a_broken_rule():
    """Budget 0.6 s (+0.6 s to connect) and a 2 s tool call, keepalive at 0.2 s: the session
    budget ends the session, the client's doing; keepalive plays no part and no rule is
    blamed on the server."""
    with ScriptedServer(busy_tool_call(seconds=2.0)) as server:
        use_target(server, E2E_RUN_TIMEOUT="0.6s", E2E_CONNECT_TIMEOUT="0.6s", E2E_FIRST_EVENT_TIMEOUT="0.5s")
        stepwise, fanout = both(engine_kwargs={"keepalive": timedelta(seconds=0.2)})
    assert stepwise.outcome == fanout.outcome == "fail", (stepwise, fanout)
    assert "no terminal event within 0.6s" in stepwise.message, stepwise
    assert fanout.stats["timeouts"] == 1 and fanout.stats["rule_violations"] == 0, fanout.stats
    assert "session budget of 1.2s before the run ended" in fanout.message, fanout
    for verdict in (stepwise, fanout):
        assert "keepalive" not in verdict.message, verdict
        assert "Rule 3" not in verdict.message, verdict


def test_close_the_client_made_mid_run_is_reported_as_the_clients_with_why():
    """``Close Connection`` from another thread while ``Collect Agent Run`` waits on a busy
    server: the run was cut by the client, which is no rule the server broke."""
    from AgentSessions import AgentSessions

    with ScriptedServer(busy_tool_call(read_while_busy=True)) as server:
        use_target(server, E2E_RUN_TIMEOUT="6s")
        sessions = AgentSessions()
        alias = sessions.connect_to_agent_websocket(token_for("field-carol"), alias="field-carol")
        run = sessions.send_user_message("Search the docs, please", alias=alias)
        closer = threading.Timer(0.5, sessions.close_connection, args=(alias,))
        closer.start()
        try:
            try:
                sessions.collect_agent_run(run)
            except AssertionError as err:
                message = str(err)
            else:
                message = ""
        finally:
            closer.cancel()
            closer.join(5)
            sessions.close_all_connections()
    assert "closed by the client" in message, message
    assert "Close Connection" in message, f"the message must say why the client closed: {message}"
    assert "violated" not in message, f"a close the client made is not a rule the server broke: {message}"
