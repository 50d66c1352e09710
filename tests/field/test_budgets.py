"""Field report: the engine's session budget and run-time threshold ignored E2E_RUN_TIMEOUT.

The target's run budget (``E2E_RUN_TIMEOUT``) bounds a run in both transports: the
step-by-step ``Collect Agent Run`` waits that long; the engine judges rule 6 by it, its
session budget is the run budget plus the connect budget (``E2E_CONNECT_TIMEOUT``), and
``Concurrent Sessions Should Meet Thresholds`` checks run p95 against it by default."""

from __future__ import annotations

import re


from field_servers import ScriptedServer, both, slow_run, use_target

RUN_S = 1.6


def thresholds(stats: dict) -> str:
    from AgentConcurrency import AgentConcurrency

    try:
        AgentConcurrency().concurrent_sessions_should_meet_thresholds(stats)
    except AssertionError as err:
        return str(err)
    return ""


def test_run_longer_than_E2E_RUN_TIMEOUT_fails_in_both_transports_and_the_threshold():
    # Session budget = run (1 s) + connect (5 s): the 1.6 s run ends well inside it even on a
    # busy machine, while a session budget of the run budget alone would cut it short.
    with ScriptedServer(slow_run(RUN_S)) as server:
        use_target(server, E2E_RUN_TIMEOUT="1s", E2E_CONNECT_TIMEOUT="5s")
        stepwise, fanout = both()
        breached = thresholds(fanout.stats)
    assert stepwise.outcome == fanout.outcome == "fail", (stepwise, fanout)
    assert "no terminal event within 1s" in stepwise.message, stepwise
    assert fanout.stats["timeouts"] == 0, f"the session budget is run + connect budget (6s): {fanout}"
    assert "Rule 6 (timing) violated" in fanout.message and "budget 1s" in fanout.message, fanout
    p95 = re.search(r"run p95 (\d+(?:\.\d)?) ms, expected at most 1000 ms", breached)
    assert p95 and float(p95.group(1)) >= RUN_S * 1000, breached


def test_run_that_never_ends_times_out_at_run_plus_connect_budget():
    with ScriptedServer(slow_run(None)) as server:
        use_target(server, E2E_RUN_TIMEOUT="1s", E2E_CONNECT_TIMEOUT="1s")
        stepwise, fanout = both()
    assert stepwise.outcome == fanout.outcome == "fail", (stepwise, fanout)
    assert "no terminal event within 1s" in stepwise.message, stepwise
    assert fanout.stats["timeouts"] == 1, fanout.stats
    assert "session budget of 2s before the run ended" in fanout.message, fanout
    assert fanout.elapsed < 15, f"the session budget (2s) ended it, not a default of 30s: {fanout}"


def test_run_within_E2E_RUN_TIMEOUT_passes_in_both_transports_and_the_threshold():
    """The control: the same 1.6 s run against a 5 s budget (room for a busy machine)."""
    with ScriptedServer(slow_run(RUN_S)) as server:
        use_target(server, E2E_RUN_TIMEOUT="5s", E2E_CONNECT_TIMEOUT="1s")
        stepwise, fanout = both()
        breached = thresholds(fanout.stats)
    assert stepwise.outcome == fanout.outcome == "pass", (stepwise, fanout)
    assert breached == "", breached
