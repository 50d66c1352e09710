"""The summary of real runs: verdict, root-cause classes, and figures that match output.xml."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

import pytest
import report_runs as rr
from robot.api import ExecutionResult

from agentkit.report import summary as summaries
from agentkit.report.classify import LABELS
from agentkit.report.metrics import records_from_result


def _load(run: rr.Run):
    assert run.output.is_file(), f"{run.name}: no output.xml\n{run.stdout[-3000:]}"
    result = ExecutionResult(str(run.output))
    return result, summaries.build(result, source=str(run.output))


def _figures_match_statistics(run: rr.Run, result, summary) -> None:
    """Counts and pass rate in the summary (object, Markdown and HTML) are output.xml's."""
    st = result.statistics.total
    rate = round(100.0 * st.passed / st.total, 1) if st.total else None
    assert summary.totals == {"total": st.total, "passed": st.passed, "failed": st.failed, "skipped": st.skipped,
                              "pass_rate": rate}
    md, page = run.md.read_text(encoding="utf-8"), run.html.read_text(encoding="utf-8")
    assert f"| Tests | {st.total} | {st.passed} passed, {st.failed} failed, {st.skipped} skipped |" in md
    assert f"| Pass rate | {rate:g}% |" in md
    assert f'<div class="v">{rate:g}%</div>' in page
    for suite in summary.suites:  # per suite, the same numbers as the suite's own statistics
        row = f"| {suite['name']} | {suite['total']} | {suite['passed']} | {suite['failed']} | {suite['skipped']} |"
        assert row in md
    assert sum(s["total"] for s in summary.suites) == st.total


# What the default wire cannot do, the suites skip, saying why (docs/protocol.md: a thread is not
# an address another connection could join); a skip is never a pass, so the summary of a run in
# which nothing failed says INCOMPLETE and names the skip.
CAPABILITY_SKIP = ("08 User Isolation", "A Thread Belongs To Its User",
                   "dialect 'default' has no thread another connection could join (threads are not addressable)")


def _only_the_capability_skip(run: rr.Run, s) -> None:
    suite, name, why = CAPABILITY_SKIP
    assert [(t.suite, t.name, t.skip_class, t.message) for t in s.skipped] == [(suite, name, "not applicable", why)]
    assert f"| {suite} | {name} | not applicable | {why} |" in run.md.read_text(encoding="utf-8")


def test_a_passing_run_is_green_with_its_figures(runs):
    run = runs["passing"]
    assert run.rc == 0, run.stdout[-3000:]
    assert run.html.is_file() and run.md.is_file(), "robot wrote no summary by itself"
    assert f"Summary: {run.html}" in run.stdout
    result, s = _load(run)
    _figures_match_statistics(run, result, s)
    total = result.statistics.total.total
    assert (s.totals["failed"], s.totals["skipped"], s.totals["passed"]) == (0, 1, total - 1)
    assert s.verdict["key"] == "pass" and s.verdict["label"] == "PASSED"
    assert (f"**Verdict: PASSED**: All {total - 1} tests that apply to this target passed; 1 does not apply to it "
            f"(listed under Skipped, each with the reason)." in run.md.read_text(encoding="utf-8"))
    _only_the_capability_skip(run, s)
    c = s.connections
    assert c["attempts"] >= 20 and c["established"] == c["attempts"] and c["success_rate"] == 100.0
    assert 0 < c["avg_connect_ms"] < 2000 and c["p95_connect_ms"] >= c["p50_connect_ms"]
    assert all(x["connection_id"].startswith("ws_") for x in c["list"]), "evidence: server-assigned ids"
    # Every run the tests collected ended, and the lifecycle events add up run by run.
    assert s.runs["count"] == s.runs["ended"] > 0
    assert s.events["agent_started"] == s.events["agent_completed"] == s.runs["count"]
    assert s.events["system_message"] == c["established"]  # one welcome per connection
    # Passes that are refusals are said to be refusals.
    assert s.refusals["total"] == s.refusals["ok"] >= 9
    assert any(re.search(rf"\d+ of the {total - 1} passed tests are refusal checks", w) for w in s.warnings)
    assert [x["stats"]["total"] for x in s.concurrency] == [5, 5]
    assert all(x["stats"]["successful"] == 5 for x in s.concurrency)
    assert 10 < s.memory["peak_mb"] < 4000
    assert s.durations["wall_s"] == pytest.approx(result.suite.elapsed_time.total_seconds())
    assert any("embedded reference backend" in w and "says nothing about" in w for w in s.warnings)
    assert "summary.html" in result.suite.metadata["E2E summary"]


def test_the_summary_is_rebuilt_from_output_xml_alone(runs, tmp_path):
    """The metrics are in output.xml: the CLI's page equals the one written at the end of the run."""
    run = runs["passing"]
    result = ExecutionResult(str(run.output))
    kinds = Counter(r["kind"] for r in records_from_result(result))
    assert kinds["scope"] >= 40 and kinds["process"] >= 1
    # each record is a collapsed readable line in log.html, not a raw JSON message
    assert "E2E-METRICS {" not in run.output.read_text(encoding="utf-8")
    proc = subprocess.run([sys.executable, str(rr.CLI), str(run.output), "--outdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    total = result.statistics.total.total
    rate = f"{100.0 * (total - 1) / total:.1f}".rstrip("0").rstrip(".")
    assert f"PASSED: {total - 1} passed, 0 failed, 1 skipped of {total} (pass rate {rate}%)" in proc.stdout

    # The summary links to log.html (and each test in it); written elsewhere, it links back to the
    # run's log.html, relative to where it is. Apart from that and its source line it is the same.
    link = os.path.relpath(run.outdir / "log.html", tmp_path)
    rebuilt = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert f"Full log: [{link}]({link})" in rebuilt

    def body(text: str) -> str:
        return re.sub(r"\n_Source: .*", "", text)

    assert body(rebuilt.replace(link, "log.html")) == body(run.md.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name, cls, rule, verdict", [
    ("protocol", "protocol", 3, "fail"),
    ("isolation", "isolation", 5, "fail"),
    ("timing", "timing", 6, "fail"),
    ("authentication", "authentication", None, "fail"),
    ("configuration", "configuration", None, "not-tested"),
    ("connectivity", "connectivity", None, "fail"),
    ("health", "health", None, "fail"),
])
def test_every_failure_is_classified_by_its_root_cause(runs, name, cls, rule, verdict):
    run = runs[name]
    assert run.rc != 0 and run.html.is_file() and run.md.is_file(), run.stdout[-3000:]
    result, s = _load(run)
    _figures_match_statistics(run, result, s)
    assert s.verdict["key"] == verdict
    assert s.failures, "a faulty run must fail"
    assert {t.cause.cls for t in s.failures} == {cls}, [(t.name, t.cause.cls, t.cause.line) for t in s.failures]
    md = run.md.read_text(encoding="utf-8")
    assert f"| {LABELS[cls]} |" in md
    if rule is not None:
        assert any(rule in t.cause.rules for t in s.failures)
        assert re.search(rf"Rule {rule} \(\w[^)]*\)", md)
    for t in s.failures:  # every failure is listed, linked to its place in log.html, with its first message line
        assert f"| [{t.name}](log.html#{t.test_id}) | {t.cause.label} |" in md
        assert t.cause.line and t.cause.line[:40].replace("|", "\\|") in md


def test_a_refusal_that_did_not_happen_is_a_security_failure(runs):
    result, s = _load(runs["authentication"])
    assert s.refusals["accepted"] == len(s.failures) >= 1
    assert "Expired Token Is Refused" in {t.name for t in s.failures}
    for failure in s.failures:  # each expired token that was accepted
        assert any(e.startswith("ACCEPTED, not refused") for e in failure.evidence), failure.evidence


def test_a_configuration_failure_is_not_called_a_test_result(runs):
    run = runs["configuration"]
    _, s = _load(run)
    assert s.verdict["label"].startswith("NOT TESTED")
    assert all(t.cause.via_setup for t in s.failures)
    [cause] = s.root_causes
    assert cause["line"].startswith("Configuration invalid for target 'staging'")
    assert "NOT TESTED: configuration invalid" in run.md.read_text(encoding="utf-8")


def test_an_unreachable_target_shows_failed_attempts_and_never_a_secret(runs):
    run = runs["connectivity"]
    _, s = _load(run)
    c = s.connections
    assert c["established"] == 0 and c["attempts"] > 0 and c["by_outcome"] == {"unreachable": c["attempts"]}
    assert s.refusals["ok"] == 0 and s.refusals["unchecked"] == s.refusals["total"] > 0
    # Skipped, each saying why: the test that needs the simulation key (not set: configuration), what
    # the default wire cannot do, and the behaviour tests (only the embedded backend plays the kit's
    # scenario file; they skip in their suite setup).
    skips = {t.name: t for t in s.skipped}
    assert skips.pop("Auth Service Issues A Working Token For The Right Key").skip_class == "configuration"
    assert skips.pop(CAPABILITY_SKIP[1]).skip_class == "not applicable"
    assert {t.suite for t in skips.values()} == {"10 Agent Behaviour"} and len(skips) >= 1, sorted(skips)
    assert s.totals["skipped"] == len(s.skipped) == len(skips) + 2
    md = run.md.read_text(encoding="utf-8")
    for t in skips.values():  # the reason shown is the setup's, not Robot's "Skipped in parent suite setup:"
        assert t.skip_class == "not applicable"
        row = next((line for line in md.splitlines() if line.startswith(f"| 10 Agent Behaviour | {t.name} |")), "")
        assert "does not play the kit's scenario file" in row, row
    assert any("points at loopback" in w for w in s.warnings)
    for path in (run.html, run.md, run.output):
        assert "a-secret-that-must-never-show-up" not in path.read_text(encoding="utf-8")
    assert "•••• (" in run.md.read_text(encoding="utf-8")


def test_an_accepted_handshake_without_welcome_is_not_a_connection(runs):
    run = runs["no-welcome"]
    _, s = _load(run)
    c = s.connections
    assert (c["attempts"], c["established"], c["by_outcome"]) == (1, 0, {"no welcome": 1})
    [failure] = s.failures
    assert failure.cause.cls == "protocol" and "connection_established" in failure.cause.line
    assert any("handshake accepted (HTTP 101), no welcome frame" in e for e in failure.evidence)


def test_a_timing_failure_draws_the_slow_run(runs):
    run = runs["timing"]
    _, s = _load(run)
    timeline = summaries.timeline_run(s)
    assert timeline is not None and timeline["first_event_ms"] > 2000
    page = run.html.read_text(encoding="utf-8")
    assert 'aria-label="Event timeline of one run"' in page and 'aria-label="Connect time distribution"' in page


def test_a_tag_selection_is_stated(runs):
    _, s = _load(runs["isolation"])
    assert any("Only a selection of the tests ran: --include isolation" in w for w in s.warnings)


def test_pabot_merged_summary_adds_up_every_process(runs):
    run = runs["pabot"]
    assert run.rc == 0, run.stdout[-3000:]
    assert run.html.is_file(), "the watcher wrote no summary of the merged output after pabot exited"
    result, s = _load(run)
    _figures_match_statistics(run, result, s)
    assert s.verdict["key"] == "pass" and s.totals["total"] == result.statistics.total.total > 30
    _only_the_capability_skip(run, s)
    outputs = sorted(run.outdir.glob("pabot_results/*/output.xml"))
    parts = [summaries.build(ExecutionResult(str(p))) for p in outputs]
    assert len(s.processes) == len(outputs) > 1
    assert s.connections["established"] == sum(p.connections["established"] for p in parts)
    assert s.connections["attempts"] == sum(p.connections["attempts"] for p in parts)
    assert s.runs["count"] == sum(p.runs["count"] for p in parts)
    assert s.events == dict(sum((Counter(p.events) for p in parts), Counter()))
    assert s.memory["peak_mb"] == max(p.memory["peak_mb"] for p in parts)
    assert len(s.memory["per_process"]) == len(outputs)
    assert len(s.concurrency) == 2
    assert "written after pabot merged the process outputs" in run.md.read_text(encoding="utf-8")
    assert not list(run.outdir.glob("pabot_results/*/summary.*")), "per-process summaries are noise"
