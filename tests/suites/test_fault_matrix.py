"""The suites catch every fault of the reference backend, name the broken rule, and do it
within their time budgets.

For each fault mode (PROTOCOL.md) ``robot`` runs ``suites/staging`` against the embedded
backend with ``E2E_REFERENCE_FAULTS=<fault>`` and short budgets. From ``output.xml``:
(a) at least one test fails; (b) the test that owns the broken rule fails with a message
naming it, and tests of unrelated rules still pass (a fault that breaks everything would
hide a suite that detects nothing); (c) the run ends well inside its time budget: a
missing event fails by its budget, never by a hang. A healthy run has no failure.

The runs go two at a time in a thread pool (the machine has 2 cores); the matrix is
printed in pytest's terminal summary.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from suite_runs import STAGING_TESTS, RobotRun, clean_env, report, run_robot

RUN_TIMEOUT = "3s"
SLACK = 2.5  # seconds a failed test may take beyond the budget it waits on (startup, teardown)

# Tests that only a specific fault may fail: health, auth and the basic connection.
BASELINE = ("Backend Health Endpoint Reports Healthy", "Expired Token Is Refused",
            "Connection Is Established With A Welcome Frame", "Every Tool Call Completes")


@dataclass(frozen=True)
class Fault:
    name: str
    owners: dict[str, tuple[str, ...]]     # owning test -> texts its failure message must contain
    must_pass: tuple[str, ...] = BASELINE   # tests of other rules: the fault must not break them
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    test_budget: float = 2.0                # max seconds of any failed test (fast faults: no waiting)
    run_budget: float = 30.0                # max wall seconds of the whole robot run


def _without(*names: str) -> tuple[str, ...]:
    return tuple(n for n in BASELINE if n not in names)


FAULTS = [
    Fault("drop-tool-completed", {"Every Tool Call Completes": ("Rule 3", "expected tool_completed for 'search_docs'")},
          must_pass=_without("Every Tool Call Completes")),
    Fault("reorder", {"Every Tool Call Completes": ("Rule 3", "has no tool_executing before it")},
          must_pass=_without("Every Tool Call Completes")),
    # Collect Agent Run snapshots the log when agent_completed (sent first here) arrives, so
    # whether the trailing tool events are in the record is a race: no tool test is pinned.
    Fault("completed-first", {"Run Starts With Agent Started And Ends Once": ("Rule 1", "expected agent_started as the first event")},
          must_pass=_without("Every Tool Call Completes")),
    # A missing terminal event fails by the run budget (3s), not by a hang. The concurrency
    # suite is left out: its sessions wait a fixed 30s whatever E2E_RUN_TIMEOUT says
    # (see test_concurrency_suite_honours_the_run_budget).
    Fault("drop-agent-completed",
          {"Run Starts With Agent Started And Ends Once": ("Rule 1", f"no terminal event within {RUN_TIMEOUT}"),
           "Agent Completed Arrives Exactly Once With A Result": ("Rule 1", f"no terminal event within {RUN_TIMEOUT}")},
          must_pass=_without("Every Tool Call Completes") + ("Ping Is Answered With Pong",),
          args=("--exclude", "concurrency"), test_budget=3.0 + SLACK, run_budget=75.0),
    Fault("close-mid-run", {"Run Starts With Agent Started And Ends Once": ("Rule 1", "connection closed", "1011"),
                            "Agent Completed Arrives Exactly Once With A Result": ("Rule 1", "connection closed")},
          must_pass=_without("Every Tool Call Completes") + ("Ping Is Answered With Pong",)),
    Fault("leak", {"Two Users Chatting At Once See Only Their Own Events": ("Rule 5", "of user 'iso-"),
                   "Ten Users Chatting At Once See Only Their Own Events": ("Rule 5",)}),
    Fault("wrong-run-id", {"Every Event Carries The Run Thread And User Ids": ("Rule 4", "run_id")}),
    # First event 1s late against a 0.5s budget; the run budget (3s) leaves room for the run
    # to end, so the timing rule (not "no end") is what fails.
    Fault("slow-first-event",
          {"Run Meets Its Time Budgets": ("Rule 6", "budget 0.5s"),
           "Agent Started Arrives Within The First Event Budget": ("Rule 6",)},
          env={"REFERENCE_BACKEND_SLOW_FIRST_DELAY": "1", "E2E_FIRST_EVENT_TIMEOUT": "0.5s"},
          test_budget=3.0 + SLACK, run_budget=60.0),
    Fault("accept-expired", {"Expired Token Is Refused": ("ACCEPTED", "security failure")},
          must_pass=_without("Expired Token Is Refused") + ("Malformed Token Is Refused", "Token With A Wrong Signature Is Refused")),
    Fault("health-500", {"Backend Health Endpoint Reports Healthy": ("500",),
                         "Backend API Health Endpoint Reports Healthy": ("500", "/api/health")},
          must_pass=_without("Backend Health Endpoint Reports Healthy") + ("Auth Service Reports Healthy",)),
    # Every connecting test waits the connect keyword's fixed 10s welcome timeout under
    # this fault (~25 tests, over 4 minutes for the whole tree), so only the connection
    # suite runs here.
    # The whole tree, with a short connect budget (E2E_CONNECT_TIMEOUT) so each test waits 2 s, not 10.
    Fault("no-connection-established",
          {"Connection Is Established With A Welcome Frame": ("connection_established", "no frame arrived within 2s")},
          must_pass=("Backend Health Endpoint Reports Healthy", "Service Discovery Names Backend WebSocket And Auth",
                     "Expired Token Is Refused"),
          env={"E2E_CONNECT_TIMEOUT": "2s"}, test_budget=2.0 + SLACK, run_budget=90.0),
]
FAULT_NAMES = [f.name for f in FAULTS]

# Failure messages that are not a diagnosis (a Robot or Python internal surfacing).
NOT_A_DIAGNOSIS = re.compile(r"has no item in index|Variable '.+' not found|KeyError|TypeError|AttributeError|"
                             r"NoneType|Traceback")


def _env(fault: Fault | None, **extra: str) -> dict[str, str]:
    env = clean_env(E2E_RUN_TIMEOUT=RUN_TIMEOUT, E2E_CONCURRENT_USERS="3", **extra)
    if fault is not None:
        env["E2E_REFERENCE_FAULTS"] = fault.name
        env.update(fault.env)
    return env


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict[str, RobotRun | BaseException]:
    """Every fault run plus a healthy one, two at a time, longest first."""
    jobs: dict[str, tuple] = {}
    for fault in sorted(FAULTS, key=lambda f: -f.run_budget):
        out = tmp_path_factory.mktemp(fault.name)
        jobs[fault.name] = (out, _env(fault), fault.args, fault.run_budget * 2)
    jobs["healthy"] = (tmp_path_factory.mktemp("healthy"), _env(None), (), 60.0)
    # Regression runs for gaps found earlier (concurrency run budget, rule 6 named on timeout).
    jobs["gap:concurrency-budget"] = (tmp_path_factory.mktemp("gap-concurrency"),
                                      _env(FAULTS[FAULT_NAMES.index("drop-agent-completed")]),
                                      ("--include", "concurrency"), 120.0)
    jobs["gap:slow-first-event-short-run-budget"] = (
        tmp_path_factory.mktemp("gap-slow"),
        clean_env(E2E_REFERENCE_FAULTS="slow-first-event", REFERENCE_BACKEND_SLOW_FIRST_DELAY="1",
                  E2E_FIRST_EVENT_TIMEOUT="0.5s", E2E_RUN_TIMEOUT="0.8s"),
        ("--suite", "Staging.05 Agent Event Flow"), 60.0)

    def one(item):
        name, (out, env, args, timeout) = item
        try:
            return name, run_robot(out, env, args, timeout=timeout)
        except BaseException as err:  # noqa: BLE001 - reported by the test of that fault
            return name, err

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(pool.map(one, jobs.items()))
    _print_matrix(runs)
    return runs


def _print_matrix(runs: dict) -> None:
    section = "fault matrix (suites/staging vs. reference backend faults)"
    report(section, f"{'fault':<28} {'failed/run':>10} {'wall':>7}  owning test -> rule named in its message")
    for name in ["healthy", *FAULT_NAMES]:
        run = runs.get(name)
        if not isinstance(run, RobotRun):
            report(section, f"{name:<28} ERROR: {run}")
            continue
        fault = next((f for f in FAULTS if f.name == name), None)
        rules = sorted(set(re.findall(r"Rule \d", " ".join(t.message for t in run.failed))))
        head = f"{name:<28} {len(run.failed):>4}/{len(run.tests):<5} {run.wall:>6.1f}s"
        if fault is None:
            report(section, f"{head}  -")
            continue
        for i, (test, texts) in enumerate(fault.owners.items()):
            info = run.tests.get(test)
            status = info.status if info else "NOT RUN"
            found = [t for t in texts if info and t in info.message]
            line = f"{test} {status} -> {', '.join(repr(t) for t in found) or 'NOT NAMED'}"
            report(section, f"{head if i == 0 else ' ' * len(head)}  {line}")
        per_suite: dict[str, int] = {}
        for t in run.failed:
            suite = t.longname.split(".")[-2].split(" ")[0]  # "Staging.05 Agent Event Flow.Test" -> "05"
            per_suite[suite] = per_suite.get(suite, 0) + 1
        where = " ".join(f"{k}:{v}" for k, v in sorted(per_suite.items()))
        report(section, f"{' ' * len(head)}  failed per suite {where}; rules named: {', '.join(rules) or '-'}")


def _run(matrix, name: str) -> RobotRun:
    run = matrix[name]
    if isinstance(run, BaseException):
        raise run
    return run


def test_healthy_run_has_no_failure(matrix):
    run = _run(matrix, "healthy")
    assert len(run.tests) == STAGING_TESTS, f"expected the {STAGING_TESTS} staging tests, got {run.counts()}"
    assert not run.failed, "healthy run failed:\n" + "\n".join(f"{t.name}: {t.message[:300]}" for t in run.failed)
    assert run.rc == 0
    assert run.wall < 30, f"healthy run took {run.wall:.1f}s"


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_NAMES)
def test_fault_fails_its_owning_test_naming_the_rule(matrix, fault: Fault):
    run = _run(matrix, fault.name)
    # (a) the fault does not go unnoticed
    assert run.failed, f"{fault.name}: no test failed ({run.counts()})"
    assert run.rc == len(run.failed), f"robot exit code {run.rc} != {len(run.failed)} failed tests"
    # (b) the owning test fails and its message names the rule
    for test, texts in fault.owners.items():
        info = run.test(test)
        assert info.status == "FAIL", f"{fault.name}: owning test '{test}' did not fail ({info.status})"
        missing = [t for t in texts if t not in info.message]
        assert not missing, f"{fault.name}: '{test}' failed without naming {missing}:\n{info.message[:800]}"
    # ... and only where the fault is: tests of other rules still pass
    for test in fault.must_pass:
        info = run.test(test)
        assert info.status == "PASS", f"{fault.name}: unrelated test '{test}' failed too: {info.message[:400]}"


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_NAMES)
def test_fault_run_finishes_within_its_budget(matrix, fault: Fault):
    run = _run(matrix, fault.name)
    # (c) no hang: the whole run, and each failing test, within the budget it waits on
    assert run.wall < fault.run_budget, f"{fault.name}: the run took {run.wall:.1f}s (budget {fault.run_budget:g}s)"
    slow = [f"{t.name} ({t.elapsed:.1f}s)" for t in run.failed if t.elapsed > fault.test_budget]
    assert not slow, f"{fault.name}: failed tests took longer than {fault.test_budget:g}s: {slow}"


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_NAMES)
def test_every_failure_message_is_a_diagnosis(matrix, fault: Fault):
    run = _run(matrix, fault.name)
    bad = [f"{t.name}: {t.message[:200]!r}" for t in run.failed if NOT_A_DIAGNOSIS.search(t.message)]
    assert not bad, f"{fault.name}: failures whose message is not a diagnosis:\n" + "\n".join(bad)


def test_concurrency_suite_honours_the_run_budget(matrix):
    run = _run(matrix, "gap:concurrency-budget")
    chat = run.test("Concurrent Users Chat Within Thresholds")
    assert chat.status == "FAIL", chat.message
    assert chat.elapsed < 3.0 + 10.0 + SLACK, (  # run budget + connect timeout + slack
        f"'Concurrent Users Chat Within Thresholds' waited {chat.elapsed:.1f}s with E2E_RUN_TIMEOUT={RUN_TIMEOUT}")


def test_first_event_overdue_names_rule_6_even_when_the_run_budget_ends_first(matrix):
    run = _run(matrix, "gap:slow-first-event-short-run-budget")
    info = run.test("Run Meets Its Time Budgets")
    assert info.status == "FAIL"
    assert "Rule 6" in info.message, info.message[:600]
