"""Field reports of opaque diagnoses, each rebuilt as a server; the message must say what
happened, in both transports.

- "Invalid WebSocket Header" for a missing or not-offered subprotocol: say what was
  offered and what was selected.
- A token with characters a subprotocol may not hold (``+``, ``/``, ``=``) went on the wire
  and the server's 400 came back: check before connecting, and say to use base64url, a
  header or the query.
- In the engine, a first frame that is binary and not JSON became a "timeout" after the
  whole connect budget: say what arrived and when it arrived.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from field_servers import ScriptedServer, both, step_by_step, use_target
from agentkit.transports.fanout import EngineError, run_sessions

OPAQUE_TOKEN = "k3y+opaque/t0ken+from/an+auth/service=="  # base64, not base64url: '+', '/', '='


@pytest.mark.parametrize("select,selected", [(None, "selected no subprotocol"),
                                             ("graphql-ws", "selected subprotocol 'graphql-ws'")])
def test_wrong_subprotocol_names_what_was_offered_and_what_was_selected(select, selected):
    with ScriptedServer(select=select) as server:
        use_target(server)
        stepwise, fanout = both()
    for verdict in (stepwise, fanout):
        assert verdict.outcome == "fail", verdict
        assert "Invalid WebSocket Header" not in verdict.message, verdict
        assert selected in verdict.message, verdict
        assert re.search(r"offered: jwt-auth, jwt\.eyJ[\w-]{0,4}…[\w-]{4} \(\d+ chars\)", verdict.message), verdict


def test_token_that_cannot_travel_in_a_subprotocol_is_refused_before_connecting():
    with ScriptedServer() as server:
        use_target(server)
        stepwise = step_by_step(token=OPAQUE_TOKEN)
        # The engine refuses the token once, when the batch is set up, before any session.
        with pytest.raises(EngineError) as refused:
            run_sessions(ws_url=server.ws_url, tokens={"load-user-0": OPAQUE_TOKEN}, count=1, concurrency=1,
                         session_timeout=2, open_timeout=2)
        handshakes = server.handshakes
    assert handshakes == 0, "the token went on the wire: the kit must check it before connecting"
    assert stepwise.outcome == "fail", stepwise
    for message in (stepwise.message, str(refused.value)):
        assert "cannot travel in a subprotocol" in message, message
        assert "'+'" in message and "'/'" in message and "'='" in message, message
        assert "base64url" in message and "header" in message and "query" in message, message
        assert OPAQUE_TOKEN not in message, message


async def binary_first_frame(peer) -> None:
    await asyncio.sleep(0.3)
    await peer.send(b"\x00\x01\x02 not json, not a welcome")


def test_binary_first_frame_is_named_with_its_arrival_time():
    """The step-by-step keywords fail at once (the first frame is not the welcome); the
    engine waits for its connect budget, then says what arrived and when (about 0.3 s after
    the connection opened, not ``+0.000s``)."""
    with ScriptedServer(binary_first_frame) as server:
        use_target(server, E2E_CONNECT_TIMEOUT="6s")  # far from the frame's 0.3 s, on a busy machine too
        stepwise, fanout = both()
    assert stepwise.outcome == fanout.outcome == "fail", (stepwise, fanout)
    assert "binary" in stepwise.message and "welcome" in stepwise.message, stepwise
    assert stepwise.elapsed < 4.5, f"the first frame already shows the welcome is missing (budget 6s): {stepwise}"
    assert fanout.stats["timeouts"] == 1, fanout.stats
    assert "binary" in fanout.message and "welcome" in fanout.message, fanout
    arrived = [float(t) for t in re.findall(r"\+(\d+\.\d+)s", fanout.message)]
    assert arrived and any(0.25 <= t < 2.5 for t in arrived), \
        f"the message must say when the binary frame arrived (about +0.3s): {fanout}"
