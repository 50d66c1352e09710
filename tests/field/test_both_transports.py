"""One judgement for both transports: the step-by-step keywords and ``Run Concurrent
Sessions`` reached different verdicts on the same server three times in the field
(a server that selects no subprotocol passed the engine; a server busy in a long tool call
failed the engine's keepalive; refusals after the upgrade counted in one and not the
other).

Every scripted server of this folder is run through both, and the verdicts compared:
a chat (``Connect To Agent WebSocket`` ... ``Connection Should Not Receive Foreign
Events`` against one ``chat`` session of the engine), or, for servers that refuse, the
refusal check (``Handshake Should Be Refused`` against the engine's ``auth_rejected``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from field_servers import ScriptedServer, both, engine, good_run, slow_run, step_by_step_refusal, use_target
from test_binary_frames import run_in_binary_frames
from test_diagnoses import binary_first_frame
from test_grace_window import second_terminal
from test_isolation import leaking
from test_keepalive import busy_tool_call
from test_refusals_after_upgrade import refuse_after_upgrade
from test_schema_formats import bad_timestamp
from test_unmatched_frames import agui_run, answering_with

NETRA = dict(shape="netra", select="token")

# name: (server arguments, target settings, engine arguments, what is compared, expected verdict)
CASES = {
    "correct-default": (dict(script=good_run), {}, {}, "chat", "pass"),
    "correct-netra": (dict(script=good_run, **NETRA), {"E2E_DIALECT": "netra"}, {}, "chat", "pass"),
    "selects-no-subprotocol": (dict(select=None), {}, {}, "chat", "fail"),
    "selects-a-subprotocol-not-offered": (dict(select="graphql-ws"), {}, {}, "chat", "fail"),
    "echoes-the-token-subprotocol-on-default": (dict(select="token"), {}, {}, "chat", "fail"),
    "busy-in-a-tool-call-with-keepalive": (dict(script=busy_tool_call(seconds=1.5)), {"E2E_RUN_TIMEOUT": "4s"},
                                           {"keepalive": timedelta(seconds=0.3)}, "chat", "pass"),
    "malformed-date-time": (dict(script=bad_timestamp("yesterday at noon"), **NETRA), {"E2E_DIALECT": "netra"}, {},
                            "chat", "fail"),
    "foreign-run-with-the-recipients-user-id": (dict(script=leaking("recipient", "during")), {}, {}, "chat", "fail"),
    "foreign-run-with-no-user-id": (dict(script=leaking("none", "during")), {}, {}, "chat", "fail"),
    "foreign-run-just-after-the-end": (dict(script=leaking("recipient", "after")), {}, {}, "chat", "fail"),
    "events-in-binary-frames": (dict(script=run_in_binary_frames), {}, {}, "chat", "fail"),
    "events-in-binary-frames-binary-json-dialect": (dict(script=run_in_binary_frames), {"E2E_DIALECT": "<binary>"},
                                                    {}, "chat", "pass"),
    "binary-first-frame": (dict(script=binary_first_frame), {"E2E_CONNECT_TIMEOUT": "1s"}, {}, "chat", "fail"),
    "run-longer-than-E2E_RUN_TIMEOUT": (dict(script=slow_run(1.6)), {"E2E_RUN_TIMEOUT": "1s",
                                                                     "E2E_CONNECT_TIMEOUT": "1s"}, {}, "chat", "fail"),
    "agent-completed-twice": (dict(script=second_terminal("agent_completed", 0.1)), {}, {}, "chat", "fail"),
    "another-wire": (dict(script=answering_with(agui_run)), {}, {}, "chat", "fail"),
    "netra-auth-failed-then-1008": (dict(script=refuse_after_upgrade(1008, "Authentication failed"), **NETRA),
                                    {"E2E_DIALECT": "netra"}, {}, "refusal", "refused"),
    "netra-1011": (dict(script=refuse_after_upgrade(1011, frame=False), **NETRA), {"E2E_DIALECT": "netra"}, {},
                   "refusal", "refused"),
    "netra-http-401": (dict(refuse=(401, "Unauthorized"), **NETRA), {"E2E_DIALECT": "netra"}, {}, "refusal",
                       "refused"),
    "default-http-401": (dict(refuse=(401, "Unauthorized")), {}, {}, "refusal", "fail"),
    "netra-welcome-then-1008": (dict(script=refuse_after_upgrade(1008, frame=False, welcome_first=True), **NETRA),
                                {"E2E_DIALECT": "netra"}, {}, "refusal", "fail"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_both_transports_reach_the_same_verdict(case, binary_json_dialect):
    server_kwargs, env, engine_kwargs, compared, expected = CASES[case]
    env = {k: (binary_json_dialect if v == "<binary>" else v) for k, v in env.items()}
    with ScriptedServer(**server_kwargs) as server:
        use_target(server, **env)
        if compared == "chat":
            stepwise, fanout = both(engine_kwargs=engine_kwargs)
        else:
            stepwise, fanout = step_by_step_refusal(), engine(**engine_kwargs)
    assert stepwise.outcome == fanout.outcome, f"the transports disagree:\n{stepwise}\n{fanout}"
    assert stepwise.outcome == expected, f"both say {stepwise.outcome}, expected {expected}:\n{stepwise}\n{fanout}"
    assert not server.errors, server.errors
