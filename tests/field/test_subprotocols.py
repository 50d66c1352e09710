"""Field report: the concurrency engine passed a server that selects no subprotocol, where
the step-by-step keywords failed it.

Which subprotocol a server must select is the dialect's (``connect.subprotocol_selection``):
``jwt-auth`` for ``default``, one of the offered ones for ``netra``; RFC 6455 lets no
server select one that was not offered. One judgement serves both transports, so each
server below gets the same verdict from both, and the message says what was offered and
what was selected (never the token)."""

from __future__ import annotations

import pytest

from field_servers import ScriptedServer, both, use_target

# (select, dialect, expected outcome, phrases of the message)
CASES = {
    "default-none-selected": (None, "default", "fail",
                              ["selected no subprotocol", "expects 'jwt-auth'", "offered: jwt-auth, jwt."]),
    "default-not-offered": ("graphql-ws", "default", "fail",
                            ["selected subprotocol 'graphql-ws'", "did not offer", "offered: jwt-auth, jwt."]),
    "default-token-echoed": ("token", "default", "fail",
                             ["selected subprotocol 'jwt.", "expects 'jwt-auth'", "offered: jwt-auth, jwt."]),
    "netra-none-selected": (None, "netra", "fail",
                            ["selected no subprotocol", "expects one of the offered ones", "offered: jwt."]),
    "netra-not-offered": ("jwt-auth", "netra", "fail", ["selected subprotocol 'jwt-auth'", "did not offer"]),
    "default-jwt-auth-selected": ("jwt-auth", "default", "pass", []),
    "netra-token-echoed": ("token", "netra", "pass", []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_selected_subprotocol_gets_one_verdict_from_both_transports(case):
    select, dialect, expected, phrases = CASES[case]
    with ScriptedServer(select=select, shape=dialect) as server:
        use_target(server, E2E_DIALECT=dialect)
        stepwise, fanout = both()
    assert stepwise.outcome == expected, stepwise
    assert fanout.outcome == expected, fanout
    for verdict in (stepwise, fanout):
        for phrase in phrases:
            assert phrase in verdict.message, f"{phrase!r} not in {verdict}"
        assert "Invalid WebSocket Header" not in verdict.message, verdict
        for token in server.tokens:
            assert token not in verdict.message, f"the token is in the message: {verdict}"
    if expected == "fail":
        assert fanout.stats["errors"] == 1 and fanout.stats["auth_rejected"] == 0, fanout.stats
        assert "handshake:" in fanout.message, fanout
