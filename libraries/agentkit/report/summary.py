"""The run summary: verdict, figures, root causes and evidence, from Robot's result model.

``build(result, records)`` reads a result (``robot.api.ExecutionResult(...)`` or the
top ``TestSuite`` of a running execution) and the metrics records the report listener
logged (read from the result when not given), and returns a :class:`Summary`;
``write(...)`` renders it to ``summary.html`` (inline SVG charts, no network) and
``summary.md``. Works on a merged pabot ``output.xml``: metrics of several processes are
added up, peak memory is the largest of them.

Honesty rules the verdict follows:

- green (``PASSED``) only when at least one test ran, every test passed and none was
  skipped but the checks the target's wire cannot support (no welcome frame on AG-UI,
  listed as not applicable); any other skip makes the run ``INCOMPLETE`` (amber);
- a run whose every failure is a configuration failure is ``NOT TESTED``: nothing
  reached the target, so no pass rate describes the backend;
- what the target was is stated next to the verdict (the embedded reference backend is
  not staging), and so are fault modes, tag filters, and passes that only prove a bad
  credential was refused.
"""

from __future__ import annotations

import html as _html
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import metrics
from ..wire.masking import mask
from ..stats import percentile
from .classify import CLASSES, RULE_NAMES, Cause, classify, classify_skip

LIFECYCLE = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed", "agent_error")
SECRET_WORDS = ("secret", "key", "password", "credential")


def _avg(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _secs(elapsed) -> float:
    return elapsed.total_seconds() if elapsed is not None else 0.0


def _rel_name(full: str, top: str) -> str:
    return full[len(top) + 1:] if full.startswith(top + ".") else full


@dataclass
class TestRow:
    suite: str
    name: str
    full_name: str
    status: str
    elapsed_s: float
    message: str
    cause: Cause | None = None
    skip_class: str | None = None
    setup_suite: str = ""  # the suite whose setup failed, for a 'Parent suite setup failed' test
    evidence: list[str] = field(default_factory=list)
    test_id: str = ""      # Robot's id (s1-s2-t3): log.html#<id> shows the test


@dataclass
class Summary:
    title: str
    source: str
    note: str
    generated: str
    verdict: dict
    totals: dict
    suites: list[dict]
    tests: list[TestRow]
    root_causes: list[dict]
    warnings: list[str]
    target: list[tuple[str, str]]
    durations: dict
    memory: dict
    connections: dict
    refusals: dict
    tokens: dict
    events: dict[str, int]
    runs: dict
    concurrency: list[dict]
    metrics_found: bool
    processes: list[str]
    build_ms: float = 0.0
    paths: list[Path] = field(default_factory=list)
    log: str | None = None            # log.html, relative to the summary, when it is written
    repeated: list[dict] = field(default_factory=list)
    suite_name: str = ""

    @property
    def failures(self) -> list[TestRow]:
        return [t for t in self.tests if t.status == "FAIL"]

    @property
    def skipped(self) -> list[TestRow]:
        return [t for t in self.tests if t.status == "SKIP"]


# --- target ---------------------------------------------------------------------------
def _looks_masked(value: str) -> bool:
    return "•" in value or value.startswith("(not set)") or value in ("", "<none>", "n/a")


def _target(metadata: dict[str, str], processes: dict[str, dict]) -> tuple[list[tuple[str, str]], list[str]]:
    rows: list[tuple[str, str]] = []
    warnings: list[str] = []
    for key, value in metadata.items():
        if not key.lower().startswith("target"):
            continue
        label = key[len("Target"):].strip() or "target"
        value = str(value)
        # a header's name (the simulation key's) is not a secret: its value is
        secret = (any(w in key.lower() for w in SECRET_WORDS) or key.lower().endswith("token")) \
            and not key.lower().endswith("header")
        if secret and not _looks_masked(value):
            value = mask(value, keep=0)
        rows.append((label, str(metrics.mask_url(value))))
    # Per process (pabot): each local process has its own embedded backend on its own port.
    urls = sorted({str(p["target"].get("backend_url")) for p in processes.values() if p.get("target")})
    if len(urls) > 1:
        rows.append(("backend url per process", ", ".join(urls)))
    meta = {k.lower(): str(v) for k, v in metadata.items()}
    profile = meta.get("target", "")
    if not profile:
        warnings.append("The output names no target (no 'Target' metadata): the suite setup did not resolve one.")
    elif "embedded" in profile or profile == "local":
        warnings.append("Target: the embedded reference backend on loopback, started by the run. "
                        "This result says nothing about a deployed environment such as staging.")
    else:
        for k in ("target backend url", "target ws url", "target auth url"):
            host = meta.get(k, "")
            if "://127." in host or "://localhost" in host or "://[::1]" in host:
                warnings.append(f"Remote profile '{profile}' points at loopback ({k[7:]}: {host}): "
                                "check this is really the environment you meant to test.")
                break
    tls = meta.get("target tls", "")
    if "verification off" in tls.lower():
        warnings.append("TLS certificate verification was OFF (E2E_VERIFY_TLS=false): the connections were "
                        "encrypted, but the server's identity was not checked. Acceptable on a test system only.")
    faults = meta.get("target faults", "none")
    if faults not in ("none", "n/a", ""):
        warnings.append(f"Fault modes were switched on in the reference backend: {faults} "
                        "(a deliberate failure check of the suites).")
    return rows, warnings


# --- metrics --------------------------------------------------------------------------
def _aggregate(records: list[dict]) -> dict[str, Any]:
    scopes = [r for r in records if r.get("kind") == "scope"]
    processes: dict[str, dict] = {}
    peaks: dict[str, float] = {}
    for r in records:
        proc = r.get("process") or str(r.get("pid"))
        if r.get("kind") == "process":
            processes[proc] = r
        if isinstance(r.get("rss_peak_mb"), (int, float)):
            peaks[proc] = max(peaks.get(proc, 0.0), float(r["rss_peak_mb"]))
        processes.setdefault(proc, {})
    opened = [c for s in scopes for c in s.get("connections", []) if c.get("opened") and c.get("established", True)]
    failures = [f for s in scopes for f in s.get("connect_failures", [])]
    connect = [float(c["connect_ms"]) for c in opened if isinstance(c.get("connect_ms"), (int, float))]
    handshake = [float(c["handshake_ms"]) for c in opened if isinstance(c.get("handshake_ms"), (int, float))]
    welcome = [float(c["welcome_ms"]) for c in opened if isinstance(c.get("welcome_ms"), (int, float))]
    attempts = len(opened) + len(failures)
    by_outcome: dict[str, int] = {}
    for f in failures:
        by_outcome[f.get("outcome", "error")] = by_outcome.get(f.get("outcome", "error"), 0) + 1
    events = metrics.merge_counts(c.get("events", {}) for s in scopes for c in s.get("connections", []))
    ordered = {k: events[k] for k in LIFECYCLE if k in events}
    ordered.update({k: v for k, v in events.items() if k not in ordered})
    checks = [c for s in scopes for c in s.get("refusal_checks", [])]
    by_check: dict[str, dict[str, int]] = {}
    for c in checks:
        outcome = c.get("outcome") or ("refused" if c.get("ok") else "failed")
        counts = by_check.setdefault(c.get("check", "?"), {})
        counts[outcome] = counts.get(outcome, 0) + 1
    tokens = metrics.merge_counts(s.get("tokens", {}) for s in scopes)
    runs = [dict(r, scope=s.get("name")) for s in scopes for r in s.get("runs", [])]
    durations = [float(r["duration_ms"]) for r in runs if isinstance(r.get("duration_ms"), (int, float))]
    firsts = [float(r["first_event_ms"]) for r in runs if isinstance(r.get("first_event_ms"), (int, float))]
    concurrency = [dict(stats=c, scope=s.get("name")) for s in scopes for c in s.get("concurrency", [])]
    repeated = [dict(r, scope=s.get("name")) for s in scopes for r in s.get("repeated", [])]
    binary = sum(int(c.get("binary") or 0) for s in scopes for c in s.get("connections", []))
    return {
        "repeated": repeated,
        "binary": binary,
        "scopes": scopes,
        "processes": processes,
        "peaks": peaks,
        "connections": {
            "attempts": attempts, "established": len(opened), "failed": len(failures), "by_outcome": by_outcome,
            "success_rate": round(100.0 * len(opened) / attempts, 1) if attempts else None,
            "avg_connect_ms": _avg(connect), "avg_handshake_ms": _avg(handshake), "avg_welcome_ms": _avg(welcome),
            "p50_connect_ms": percentile(connect, 50), "p95_connect_ms": percentile(connect, 95),
            "max_connect_ms": max(connect) if connect else None, "samples": connect,
            "list": [dict(c, scope=s.get("name")) for s in scopes for c in s.get("connections", [])
                     if c.get("opened") and c.get("established", True)],
            "failures": [dict(f, scope=s.get("name")) for s in scopes for f in s.get("connect_failures", [])],
        },
        "refusals": {"total": len(checks), "ok": sum(1 for c in checks if c.get("ok")),
                     "accepted": sum(1 for c in checks if c.get("outcome") == "accepted"),
                     "unchecked": sum(1 for c in checks if not c.get("ok") and c.get("outcome") != "accepted"),
                     "by_check": by_check},
        "tokens": tokens,
        "events": ordered,
        "runs": {"count": len(runs), "ended": sum(1 for r in runs if r.get("duration_ms") is not None),
                 "p50_ms": percentile(durations, 50), "p95_ms": percentile(durations, 95),
                 "max_ms": max(durations) if durations else None,
                 "first_p50_ms": percentile(firsts, 50), "first_p95_ms": percentile(firsts, 95),
                 "first_max_ms": max(firsts) if firsts else None, "all": runs},
        "concurrency": concurrency,
    }


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.1f} ms" if v < 1000 else f"{v / 1000:.2f} s")


def _evidence(scopes: list[dict]) -> list[str]:
    out: list[str] = []
    for s in scopes:
        for c in s.get("connections", []):
            if c.get("opened") and not c.get("established", True):
                out.append(f"{c.get('alias')}: handshake accepted (HTTP {c.get('status')}), no welcome frame; "
                           f"{c.get('frames', 0)} frames")
            elif c.get("opened"):
                cid = c.get("connection_id") or "no connection_id"
                out.append(f"{c.get('alias')}: {cid}, connect {_fmt_ms(c.get('connect_ms'))}, "
                           f"{c.get('frames', 0)} frames")
            elif c.get("frames"):
                out.append(f"{c.get('alias')}: {c.get('frames')} more frames")
        for f in s.get("connect_failures", []):
            out.append(f"connect {f.get('outcome')}" + (f" HTTP {f['status']}" if f.get("status") else "")
                       + (f" ({f['alias']})" if f.get("alias") else ""))
        for r in s.get("runs", []):
            n = r.get("count", len(r.get("events", [])))
            end = (f"{r.get('ended')} at {_fmt_ms(r.get('duration_ms'))}" if r.get("duration_ms") is not None
                   else "no terminal event")
            out.append(f"{r.get('run_id')}: {n} events, {end}")
        for c in s.get("refusal_checks", []):
            outcome = c.get("outcome") or ("refused" if c.get("ok") else "failed")
            out.append({"refused": "refused as required: ", "accepted": "ACCEPTED, not refused: ",
                        "unreachable": "could not be checked (unreachable): "}.get(outcome, "check failed: ")
                       + c.get("check", "?"))
        for r in s.get("repeated", []):
            out.append(f"{r.get('passed')}/{r.get('runs')} runs passed {r.get('judge')} ({r.get('pass_rate'):g}%, "
                       f"minimum {r.get('min_pass_rate'):g}%); failing runs: "
                       + (", ".join(str(f.get('run')) for f in r.get('failures', [])) or "none"))
        for c in s.get("concurrency", []):
            st = c
            out.append(f"{st.get('scenario')} x{st.get('total')}: {st.get('successful')}/{st.get('total')} ok, "
                       f"auth rejected {st.get('auth_rejected', 0)}, connect p95 {_fmt_ms(st.get('connect_p95_ms'))}, "
                       f"{st.get('events_received', 0)} events")
    return out


# --- the summary ----------------------------------------------------------------------
def build(result: Any, records: list[dict] | None = None, source: str = "", note: str = "",
          log: str | None = None) -> Summary:
    """A :class:`Summary` of an ``ExecutionResult`` or a result ``TestSuite``."""
    started = time.perf_counter()
    suite = getattr(result, "suite", result)
    if records is None:
        records = metrics.records_from_result(suite)
    agg = _aggregate(records)
    by_scope: dict[str, list[dict]] = {}
    for s in agg["scopes"]:
        by_scope.setdefault(s.get("name", ""), []).append(s)
    top = suite.full_name
    stats = suite.statistics
    total, passed, failed, skipped = stats.total, stats.passed, stats.failed, stats.skipped

    tests: list[TestRow] = []
    suites: list[dict] = []

    def failed_setup(s):
        """The suite whose own setup failed (a test says only 'Parent suite setup failed')."""
        while s is not None:
            if (s.message or "").startswith("Suite setup failed"):
                return s
            s = s.parent
        return None

    def visit(s) -> None:
        if s.tests:
            st = s.statistics
            suites.append({"name": _rel_name(s.full_name, top) if s is not suite else s.name, "total": st.total,
                           "passed": st.passed, "failed": st.failed, "skipped": st.skipped,
                           "pass_rate": round(100.0 * st.passed / st.total, 1) if st.total else None,
                           "elapsed_s": _secs(s.elapsed_time), "status": s.status})
            for t in s.tests:
                row = TestRow(_rel_name(s.full_name, top) if s is not suite else s.name, t.name, t.full_name,
                              t.status, _secs(t.elapsed_time), t.message or "", test_id=t.id)
                row.evidence = _evidence(by_scope.get(t.full_name, []))
                if t.status == "FAIL":
                    row.cause = classify(t.message)
                    where = failed_setup(s) if row.cause.via_setup else None
                    if where is not None:
                        row.setup_suite = where.name if where is suite else _rel_name(where.full_name, top)
                    if row.cause.via_setup or not row.evidence:  # the setup did the work the test checks
                        setup = [x for x in by_scope.get((where or s).full_name, []) if x.get("scope") == "suite setup"]
                        row.evidence = [f"suite setup: {e}" for e in _evidence(setup)] + row.evidence
                if t.status == "SKIP":
                    row.skip_class = classify_skip(t.message)
                tests.append(row)
        for child in s.suites:
            visit(child)

    visit(suite)

    # Root causes: failures grouped by class, rules and (for setup failures) the suite.
    groups: dict[tuple, dict] = {}
    for t in tests:
        if t.cause is None:
            continue
        key = (t.cause.cls, tuple(t.cause.rules), t.setup_suite)
        g = groups.setdefault(key, {"cls": t.cause.cls, "label": t.cause.label, "rules": t.cause.rule_text,
                                    "count": 0, "line": t.cause.line, "via_setup": t.setup_suite, "tests": []})
        g["count"] += 1
        g["tests"].append(t.name)
    order = {k: i for i, (k, _, _) in enumerate(CLASSES)}
    root_causes = sorted(groups.values(), key=lambda g: (order[g["cls"]], -g["count"]))

    processes = agg["processes"]
    target_rows, warnings = _target(dict(suite.metadata), processes)
    includes = sorted({t for p in processes.values() for t in p.get("include", []) or []})
    excludes = sorted({t for p in processes.values() for t in p.get("exclude", []) or []})
    if includes or excludes:
        warnings.append("Only a selection of the tests ran: "
                        + ", ".join(([f"--include {' '.join(includes)}"] if includes else [])
                                    + ([f"--exclude {' '.join(excludes)}"] if excludes else []))
                        + ". The figures describe that selection.")
    refusal_only = [t for t in tests if t.status == "PASS" and any(
        s.get("refusal_checks") and not any(c.get("opened") for c in s.get("connections", []))
        for s in by_scope.get(t.full_name, []))]
    if refusal_only:
        warnings.append(f"{len(refusal_only)} of the {passed} passed tests are refusal checks: they prove a bad or "
                        "missing credential was refused, not that an authenticated user can chat.")
    for c in agg["concurrency"]:
        st = c["stats"]
        for w in st.get("warnings") or []:
            warnings.append(f"Concurrent sessions in '{_rel_name(c['scope'] or '', top)}': {w}")
        if st.get("auth_rejected"):
            warnings.append(f"Concurrent sessions in '{_rel_name(c['scope'] or '', top)}': {st['auth_rejected']} of "
                            f"{st.get('total')} handshakes were refused by auth; they count as failed sessions, "
                            "not as successes.")
    metrics_found = bool(agg["scopes"])
    if not metrics_found and total:
        warnings.append("No E2E metrics in this output (AgentReport was not active, or the log level was above "
                        "INFO): connection, event and memory figures are unavailable.")

    # Verdict.
    fail_classes = [t.cause.cls for t in tests if t.cause is not None]
    config_skips = [t for t in tests if t.skip_class == "configuration"]
    na_skips = [t for t in tests if t.skip_class == "not applicable"]
    if total == 0:
        verdict = {"key": "not-tested", "label": "NO TESTS RAN", "line": "The output holds no test results."}
    elif failed and all(c == "configuration" for c in fail_classes):
        verdict = {"key": "not-tested", "label": "NOT TESTED: configuration invalid",
                   "line": f"All {failed} failures are configuration failures; nothing reached the target, so no "
                           "figure here describes the backend."}
    elif failed:
        parts = []
        for key, label, _ in CLASSES:
            n = fail_classes.count(key)
            if n:
                rules = sorted({r for t in tests if t.cause is not None and t.cause.cls == key for r in t.cause.rules})
                named = ", ".join(f"rule {r} {RULE_NAMES.get(r, '?')}" for r in rules)
                parts.append(f"{label} {n}" + (f" ({named})" if rules else ""))
        verdict = {"key": "fail", "label": "FAILED",
                   "line": f"{failed} of {total} tests failed: " + "; ".join(parts) + "."
                           + (f" {skipped} more skipped (not run)." if skipped else "")}
    elif skipped - len(na_skips):
        why = (f"{len(config_skips)} for missing configuration" if config_skips else "")
        verdict = {"key": "incomplete", "label": "INCOMPLETE",
                   "line": f"No test failed, but {skipped - len(na_skips)} of {total} were skipped"
                           + (f" ({why})" if why else "") + ": those checks did not run."
                           + (f" {len(na_skips)} more do not apply to this target." if na_skips else "")}
    elif na_skips:
        verdict = {"key": "pass", "label": "PASSED",
                   "line": f"All {passed} tests that apply to this target passed; {len(na_skips)} "
                           f"{'does' if len(na_skips) == 1 else 'do'} not apply to it (listed under Skipped, each with "
                           f"the reason)."}
    else:
        verdict = {"key": "pass", "label": "PASSED", "line": f"All {total} tests passed."}
    target_name = dict(target_rows).get("target")
    if not target_name:
        requested = next((m.group(1) for t in tests if t.cause is not None and t.cause.cls == "configuration"
                          for m in [re.search(r"target '([^']+)'", t.cause.line)] if m), None)
        target_name = (f"'{requested}' was requested but not resolved (configuration invalid)" if requested
                       else "unknown (no target was resolved)")
    verdict["target"] = target_name

    suite_elapsed = _secs(suite.elapsed_time)
    slowest = sorted(tests, key=lambda t: -t.elapsed_s)[:5]
    peaks = agg["peaks"]
    title = f"{suite.name} against {target_name}" if dict(target_rows).get("target") else suite.name
    summary = Summary(
        title=title, source=source, note=note, generated=datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        verdict=verdict,
        totals={"total": total, "passed": passed, "failed": failed, "skipped": skipped,
                "pass_rate": round(100.0 * passed / total, 1) if total else None},
        suites=suites, tests=tests, root_causes=root_causes, warnings=warnings, target=target_rows,
        durations={"wall_s": suite_elapsed, "tests_s": sum(t.elapsed_s for t in tests),
                   "slowest": [(t.suite, t.name, t.elapsed_s, t.status) for t in slowest],
                   "start": str(suite.start_time or ""), "end": str(suite.end_time or "")},
        memory={"peak_mb": max(peaks.values()) if peaks else None, "per_process": sorted(peaks.items())},
        connections=agg["connections"], refusals=agg["refusals"], tokens=agg["tokens"], events=agg["events"],
        runs=agg["runs"], concurrency=agg["concurrency"], metrics_found=metrics_found,
        processes=sorted(processes), log=log, repeated=agg["repeated"], suite_name=suite.name,
    )
    summary.connections["binary"] = agg["binary"]
    summary.build_ms = (time.perf_counter() - started) * 1000
    return summary


def timeline_run(summary: Summary) -> dict | None:
    """The run to draw: the first run of a failed test, else the first complete run."""
    runs = summary.runs.get("all", [])
    if not runs:
        return None
    failed = {t.full_name for t in summary.failures}
    failed_setups = {t.full_name.rsplit(".", 1)[0] for t in summary.failures if t.cause and t.cause.via_setup}
    drawable = [r for r in runs if r.get("events")]
    if not drawable:
        return None
    for r in drawable:
        if r.get("scope") in failed or r.get("scope") in failed_setups:
            return r
    return next((r for r in drawable if r.get("duration_ms") is not None), drawable[0])


def write(result: Any, records: list[dict] | None, out_dir: str | Path, source: str = "", note: str = "",
          name: str = "summary", log: str | None = None) -> Summary:
    """Builds the summary and writes ``<name>.html`` and ``<name>.md`` into ``out_dir``."""
    from .render import render_html, render_markdown

    summary = build(result, records, source=source, note=note, log=log)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out / f"{name}.html", out / f"{name}.md"
    html_path.write_text(render_html(summary), encoding="utf-8")
    md_path.write_text(render_markdown(summary), encoding="utf-8")
    summary.paths = [html_path, md_path]
    return summary


def verdict_line(summary: Summary) -> str:
    t = summary.totals
    rate = "-" if t["pass_rate"] is None else f"{t['pass_rate']:g}%"
    return (f"{summary.verdict['label']}: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped "
            f"of {t['total']} (pass rate {rate}); target {summary.verdict.get('target')}")


def esc(value: Any) -> str:
    return _html.escape(str(value), quote=True)
