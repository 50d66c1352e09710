"""Field report (the dialect issue): a backend that refuses a bad token after the upgrade
(101, an ``error_message`` frame ``AUTH_FAILED``, a close 1008 "Authentication failed";
older builds close 1011) was not counted as refusing it.

What a refusal is comes from the dialect (``connect.refusal``): for ``netra`` an HTTP
401/403 at the upgrade, or a close with 1008, 1011 or 4xxx before any welcome or agent
event. ``Handshake Should Be Refused`` and the engine (``auth_rejected``) apply the same
table; acceptance (the welcome) followed by a close is no refusal, nor is a normal close."""

from __future__ import annotations

import asyncio
import time

import pytest

from field_servers import ScriptedServer, engine, step_by_step, step_by_step_refusal, use_target


def refuse_after_upgrade(code: int, reason: str = "", frame: bool = True, welcome_first: bool = False,
                         close_after: float = 0.0):
    async def script(peer) -> None:
        if welcome_first:
            await peer.welcome()
        if frame:
            await peer.send({"type": "error_message", "error_code": "AUTH_FAILED",
                             "error_message": "Token validation failed", "details": {}, "timestamp": time.time()})
        if close_after:
            await asyncio.sleep(close_after)  # the close a moment after the error frame, as over a network
        await peer.ws.close(code, reason)
    return script


# (server kwargs, dialect, expected outcome, phrases in both messages)
CASES = {
    "netra-auth-failed-frame-then-1008": (dict(script=refuse_after_upgrade(1008, "Authentication failed")), "netra",
                                          "refused", ["closed with code 1008", "before the welcome",
                                                      "Token validation failed"]),
    "netra-older-build-1011": (dict(script=refuse_after_upgrade(1011, frame=False)), "netra", "refused",
                               ["closed with code 1011", "before the welcome"]),
    "netra-policy-4001": (dict(script=refuse_after_upgrade(4001, "expired")), "netra", "refused",
                          ["closed with code 4001", "before the welcome"]),
    "netra-http-401": (dict(refuse=(401, "Unauthorized")), "netra", "refused", ["HTTP 401"]),
    "netra-http-403": (dict(refuse=(403, "Forbidden")), "netra", "refused", ["HTTP 403"]),
    "default-http-403": (dict(refuse=(403, "Forbidden")), "default", "refused", ["HTTP 403"]),
    # no refusals
    "netra-welcome-then-1008": (dict(script=refuse_after_upgrade(1008, "bye", frame=False, welcome_first=True)),
                                "netra", "fail", []),
    "netra-normal-close-1000": (dict(script=refuse_after_upgrade(1000, frame=False)), "netra", "fail",
                                ["code 1000"]),
    "default-http-401": (dict(refuse=(401, "Unauthorized")), "default", "fail", ["HTTP 401"]),
    "default-close-1008-no-close-codes": (dict(script=refuse_after_upgrade(1008, "Authentication failed")),
                                          "default", "fail", ["1008"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refusal_is_judged_by_the_dialects_table_in_both_transports(case):
    kwargs, dialect, expected, phrases = CASES[case]
    select = "token" if dialect == "netra" else "jwt-auth"
    with ScriptedServer(select=select, shape=dialect, **kwargs) as server:
        use_target(server, E2E_DIALECT=dialect)
        stepwise = step_by_step_refusal()
        fanout = engine(count=2)
    assert stepwise.outcome == expected, stepwise
    assert fanout.outcome == expected, fanout
    for verdict in (stepwise, fanout):
        for phrase in phrases:
            assert phrase in verdict.message, f"{phrase!r} not in {verdict}"
    if expected == "refused":
        assert fanout.stats["auth_rejected"] == 2 and fanout.stats["errors"] == 0, fanout.stats
    else:
        assert fanout.stats["auth_rejected"] == 0, fanout.stats
    if case == "netra-welcome-then-1008":
        assert "ACCEPTED" in stepwise.message, stepwise


@pytest.mark.parametrize("close_after", [0.0, 0.05], ids=["close-at-once", "close-50ms-later"])
def test_connecting_to_a_server_that_refuses_after_the_upgrade_says_it_refused(close_after):
    """``Connect To Agent WebSocket`` on the same server names the refusal, not a missing
    welcome, also when the close comes a moment after the error frame."""
    script = refuse_after_upgrade(1008, "Authentication failed", close_after=close_after)
    with ScriptedServer(script, select="token", shape="netra") as server:
        use_target(server, E2E_DIALECT="netra")
        verdict = step_by_step()
    assert verdict.outcome == "fail", verdict
    assert "refused the connection" in verdict.message and "after the upgrade" in verdict.message, verdict
    assert "closed with code 1008 (Authentication failed) before the welcome" in verdict.message, verdict
    assert "Token validation failed" in verdict.message, "the error frame is shown"
