"""The suites catch every fault of the reference backend on every wire, name the broken
rule, and do it within their time budgets.

For each wire (``default``, ``netra``, ``ag-ui``) and each fault mode, ``robot`` runs the
suites against the embedded backend speaking that wire (``E2E_REFERENCE_WIRE`` and
``E2E_DIALECT`` set to it) with ``E2E_REFERENCE_FAULTS=<fault>`` and short budgets, over
the tests that own the fault's rule and the tests of other rules that must keep passing.
From ``output.xml``: (a) the owning test fails with a message naming the rule; (b) tests of
unrelated rules still pass (a fault that breaks everything would hide a suite that detects
nothing); (c) the run ends well inside its time budget: a missing event fails by its
budget, never by a hang. A healthy run of every wire has no failure. A fault that means
nothing on a wire (no welcome frame on AG-UI) is reported as not applicable, with why.

The runs go two at a time in a thread pool (the machine has 2 cores); the matrix is
printed in pytest's terminal summary.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from suite_runs import STAGING_TESTS, RobotRun, clean_env, report, run_robot

pytestmark = pytest.mark.slow

WIRES = ("default", "netra", "ag-ui")
RUN_TIMEOUT = "3s"
SLACK = 2.5  # seconds a failed test may take beyond the budget it waits on (startup, teardown)

HEALTH = "Backend Health Endpoint Reports Healthy"
EXPIRED = "Expired Token Is Refused"
WELCOME = "Connection Is Established With A Welcome Frame"
PAIRED = "Every Tool Call Completes"
START_END = "Run Starts With Agent Started And Ends Once"
COMPLETED_ONCE = "Agent Completed Arrives Exactly Once With An Answer"


@dataclass(frozen=True)
class Fault:
    name: str
    # owning test -> texts its failure message must contain, per wire ("*" for every wire)
    owners: dict[str, dict[str, tuple[str, ...]]]
    must_pass: tuple[str, ...] = (HEALTH, EXPIRED, PAIRED)   # tests of other rules
    env: dict[str, str] = field(default_factory=dict)
    test_budget: float = 2.0          # max seconds of any failed test (fast faults: no waiting)
    run_budget: float = 30.0          # max wall seconds of the whole robot run
    not_on: dict[str, str] = field(default_factory=dict)   # wire -> why the fault means nothing there

    def texts(self, test: str, wire: str) -> tuple[str, ...]:
        per_wire = self.owners[test]
        return per_wire.get(wire, per_wire.get("*", ()))


def _all(*texts: str) -> dict[str, tuple[str, ...]]:
    return {"*": texts}


FAULTS = [
    Fault("drop-tool-completed",
          {PAIRED: {"*": ("Rule 3", "expected tool_completed for 'search_docs'"),
                    "ag-ui": ("Rule 3", "RUN_FINISHED", "tool calls are still open")}},
          must_pass=(HEALTH, EXPIRED)),
    Fault("reorder",
          {PAIRED: {"*": ("Rule 3", "has no tool_executing before it"),
                    "ag-ui": ("Rule 3", "TOOL_CALL_END", "which is not open")}},
          must_pass=(HEALTH, EXPIRED)),
    Fault("completed-first",
          {START_END: {"*": ("Rule 1", "expected agent_started as the first event"),
                       "ag-ui": ("Rule 1", "the first event must be RUN_STARTED")}},
          must_pass=(HEALTH, EXPIRED)),
    Fault("drop-agent-completed",
          {START_END: _all("Rule 1", f"no terminal event within {RUN_TIMEOUT}"),
           COMPLETED_ONCE: _all("Rule 1", f"no terminal event within {RUN_TIMEOUT}")},
          must_pass=(HEALTH, EXPIRED), test_budget=3.0 + SLACK, run_budget=60.0),
    Fault("close-mid-run",
          {START_END: _all("Rule 1", "closed by the server", "1011"),
           COMPLETED_ONCE: _all("Rule 1", "closed by the server")},
          must_pass=(HEALTH, EXPIRED)),
    Fault("leak",
          {"Two Users Chatting At Once See Only Their Own Events": _all("Rule 5", "never started"),
           "Ten Users Chatting At Once See Only Their Own Events": _all("Rule 5",)}),
    Fault("wrong-run-id",
          {"Every Event Carries The Run Thread And User Ids": {"*": ("Rule 4", "run_id"),
                                                               "ag-ui": ("Rule 4", "runId", "must agree")}}),
    # First event 1s late against a 0.5s budget; the run budget (3s) leaves room for the run
    # to end, so the timing rule (not "no end") is what fails.
    Fault("slow-first-event",
          {"Run Meets Its Time Budgets": _all("Rule 6", "budget 0.5s"),
           "Agent Started Arrives Within The First Event Budget": _all("Rule 6",)},
          env={"REFERENCE_BACKEND_SLOW_FIRST_DELAY": "1", "E2E_FIRST_EVENT_TIMEOUT": "0.5s"},
          test_budget=3.0 + SLACK, run_budget=45.0),
    Fault("accept-expired", {EXPIRED: _all("ACCEPTED", "security failure")},
          must_pass=(HEALTH, "Malformed Token Is Refused", "Token With A Wrong Signature Is Refused", PAIRED)),
    Fault("health-500",
          {HEALTH: _all("500",), "Backend API Health Endpoint Reports Healthy": _all("500", "/api/health")},
          must_pass=(EXPIRED, "Auth Service Reports Healthy", PAIRED)),
    # A short connect budget (E2E_CONNECT_TIMEOUT) so each connecting test waits 2 s, not 10.
    Fault("no-connection-established",
          {WELCOME: _all("welcome frame", "no frame arrived within 2s")},
          must_pass=(HEALTH, "Service Discovery Names Backend WebSocket And Auth", EXPIRED),
          env={"E2E_CONNECT_TIMEOUT": "2s"}, test_budget=2.0 + SLACK,
          not_on={"ag-ui": "the ag-ui wire has no welcome frame, so there is none to drop"}),
]
FAULT_NAMES = [f.name for f in FAULTS]
CASES = [(wire, f) for wire in WIRES for f in FAULTS]
CASE_IDS = [f"{wire}:{f.name}" for wire, f in CASES]

# Failure messages that are not a diagnosis (a Robot or Python internal surfacing).
NOT_A_DIAGNOSIS = re.compile(r"has no item in index|Variable '.+' not found|KeyError|TypeError|AttributeError|"
                             r"NoneType|Traceback")


def _env(wire: str, fault: Fault | None, **extra: str) -> dict[str, str]:
    env = clean_env(E2E_RUN_TIMEOUT=RUN_TIMEOUT, E2E_CONCURRENT_USERS="3", E2E_REFERENCE_WIRE=wire,
                    E2E_DIALECT=wire, **extra)
    if fault is not None:
        env["E2E_REFERENCE_FAULTS"] = fault.name
        env.update(fault.env)
    return env


def _selection(fault: Fault) -> list[str]:
    """Only the tests the verdict is about: the owners and the tests that must pass."""
    args: list[str] = []
    for name in [*fault.owners, *fault.must_pass]:
        args += ["--test", name]
    return args


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict[str, RobotRun | BaseException]:
    """Every applicable (wire, fault) run plus a healthy run per wire, two at a time, longest first."""
    jobs: dict[str, tuple] = {}
    for wire, fault in sorted(CASES, key=lambda c: -c[1].run_budget):
        if wire in fault.not_on:
            continue
        out = tmp_path_factory.mktemp(f"{wire}-{fault.name}")
        jobs[f"{wire}:{fault.name}"] = (out, _env(wire, fault), _selection(fault), fault.run_budget * 2)
    for wire in WIRES:
        jobs[f"{wire}:healthy"] = (tmp_path_factory.mktemp(f"{wire}-healthy"), _env(wire, None), [], 90.0)
    # Regression runs for gaps found earlier (concurrency run budget, rule 6 named on timeout).
    jobs["gap:concurrency-budget"] = (tmp_path_factory.mktemp("gap-concurrency"),
                                      _env("default", FAULTS[FAULT_NAMES.index("drop-agent-completed")]),
                                      ["--include", "concurrency"], 120.0)
    jobs["gap:slow-first-event-short-run-budget"] = (
        tmp_path_factory.mktemp("gap-slow"),
        clean_env(E2E_REFERENCE_FAULTS="slow-first-event", REFERENCE_BACKEND_SLOW_FIRST_DELAY="1",
                  E2E_FIRST_EVENT_TIMEOUT="0.5s", E2E_RUN_TIMEOUT="0.8s"),
        ["--suite", "Staging.05 Agent Event Flow"], 60.0)

    def one(item):
        name, (out, env, args, timeout) = item
        try:
            return name, run_robot(out, env, args, timeout=timeout)
        except BaseException as err:  # noqa: BLE001 - reported by the test of that case
            return name, err

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(pool.map(one, jobs.items()))
    _print_matrix(runs)
    return runs


def _print_matrix(runs: dict) -> None:
    section = "fault matrix (suites/staging vs. reference backend faults, per wire)"
    report(section, f"{'wire:fault':<36} {'failed/run':>10} {'wall':>7}  owning test -> texts found in its message")
    for wire in WIRES:
        for name in ["healthy", *FAULT_NAMES]:
            key = f"{wire}:{name}"
            fault = next((f for f in FAULTS if f.name == name), None)
            if fault is not None and wire in fault.not_on:
                report(section, f"{key:<36} not applicable: {fault.not_on[wire]}")
                continue
            run = runs.get(key)
            if not isinstance(run, RobotRun):
                report(section, f"{key:<36} ERROR: {run}")
                continue
            head = f"{key:<36} {len(run.failed):>4}/{len(run.tests):<5} {run.wall:>6.1f}s"
            if fault is None:
                report(section, f"{head}  {run.counts()}")
                continue
            for i, test in enumerate(fault.owners):
                info = run.tests.get(test)
                status = info.status if info else "NOT RUN"
                found = [t for t in fault.texts(test, wire) if info and t in info.message]
                report(section, f"{head if i == 0 else ' ' * len(head)}  {test} {status} -> "
                                f"{', '.join(repr(t) for t in found) or 'NOT NAMED'}")


def _run(matrix, name: str) -> RobotRun:
    run = matrix[name]
    if isinstance(run, BaseException):
        raise run
    return run


@pytest.mark.parametrize("wire", WIRES)
def test_healthy_run_has_no_failure(matrix, wire):
    run = _run(matrix, f"{wire}:healthy")
    assert len(run.tests) == STAGING_TESTS, f"expected the {STAGING_TESTS} staging tests, got {run.counts()}"
    assert not run.failed, f"healthy {wire} run failed:\n" + "\n".join(f"{t.name}: {t.message[:300]}"
                                                                       for t in run.failed)
    assert run.rc == 0


@pytest.mark.parametrize("wire,fault", CASES, ids=CASE_IDS)
def test_fault_fails_its_owning_test_naming_the_rule(matrix, wire, fault: Fault):
    if wire in fault.not_on:
        pytest.skip(f"{fault.name} on {wire}: {fault.not_on[wire]}")
    run = _run(matrix, f"{wire}:{fault.name}")
    # (a) the fault does not go unnoticed, and the owning test names the rule
    assert run.failed, f"{wire}:{fault.name}: no test failed ({run.counts()})"
    assert run.rc == len(run.failed), f"robot exit code {run.rc} != {len(run.failed)} failed tests"
    for test in fault.owners:
        info = run.test(test)
        assert info.status == "FAIL", f"{wire}:{fault.name}: owning test '{test}' did not fail ({info.status})"
        missing = [t for t in fault.texts(test, wire) if t not in info.message]
        assert not missing, f"{wire}:{fault.name}: '{test}' failed without naming {missing}:\n{info.message[:900]}"
    # (b) ... and only where the fault is: tests of other rules still pass
    for test in fault.must_pass:
        info = run.test(test)
        assert info.status == "PASS", f"{wire}:{fault.name}: unrelated test '{test}' did not pass " \
                                      f"({info.status}): {info.message[:400]}"


@pytest.mark.parametrize("wire,fault", CASES, ids=CASE_IDS)
def test_fault_run_finishes_within_its_budget(matrix, wire, fault: Fault):
    if wire in fault.not_on:
        pytest.skip(f"{fault.name} on {wire}: {fault.not_on[wire]}")
    run = _run(matrix, f"{wire}:{fault.name}")
    # (c) no hang: the whole run, and each failing test, within the budget it waits on
    assert run.wall < fault.run_budget, f"{wire}:{fault.name}: the run took {run.wall:.1f}s (budget {fault.run_budget:g}s)"
    slow = [f"{t.name} ({t.elapsed:.1f}s)" for t in run.failed if t.elapsed > fault.test_budget]
    assert not slow, f"{wire}:{fault.name}: failed tests took longer than {fault.test_budget:g}s: {slow}"
    bad = [f"{t.name}: {t.message[:200]!r}" for t in run.failed if NOT_A_DIAGNOSIS.search(t.message)]
    assert not bad, f"{wire}:{fault.name}: failures whose message is not a diagnosis:\n" + "\n".join(bad)


def test_concurrency_suite_honours_the_run_budget(matrix):
    run = _run(matrix, "gap:concurrency-budget")
    chat = run.test("Concurrent Users Chat Within Thresholds")
    assert chat.status == "FAIL", chat.message
    assert chat.elapsed < 3.0 + 10.0 + SLACK, (  # run budget + connect timeout + slack
        f"'Concurrent Users Chat Within Thresholds' waited {chat.elapsed:.1f}s with E2E_RUN_TIMEOUT={RUN_TIMEOUT}")
    assert f"{3000:g} ms" in chat.message or "timeouts" in chat.message, chat.message[:600]


def test_first_event_overdue_names_rule_6_even_when_the_run_budget_ends_first(matrix):
    run = _run(matrix, "gap:slow-first-event-short-run-budget")
    info = run.test("Run Meets Its Time Budgets")
    assert info.status == "FAIL"
    assert "Rule 6" in info.message, info.message[:600]
